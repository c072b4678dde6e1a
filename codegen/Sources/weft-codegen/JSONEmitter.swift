// Emits the proto3 JSON mapping (both directions) of every message and enum,
// one `<file>.json.swift` per .proto file, over the runtime in
// Sources/WeftWire/JSONMapping.swift. The rules are the canonical mapping's
// (https://protobuf.dev/programming-guides/json/); the generated code only
// names fields and picks the runtime reader and writer of each type.

struct JSONEmitter {
    let schema: Schema
    let swift: SwiftEmitter

    /// protoc's `ToJsonName`: drop each `_` and capitalize the letter after it
    /// (`stream_id` → `streamId`; note: not Swift's `streamID`).
    static func jsonName(_ protoName: String) -> String {
        var result = ""
        var capitalizeNext = false
        for character in protoName {
            if character == "_" {
                capitalizeNext = true
            } else if capitalizeNext {
                result += character.uppercased()
                capitalizeNext = false
            } else {
                result.append(character)
            }
        }
        return result
    }

    func emitFile(_ file: FileModel) -> String {
        var w = Writer()
        w.line(generatedHeader)
        w.line("// Source: \(file.name) (proto3 JSON mapping; runtime in Sources/WeftWire/JSONMapping.swift)")
        for name in schema.enumOrder where schema.enums[name]!.file == file.name {
            w.line()
            emitEnum(schema.enums[name]!, &w)
        }
        for name in schema.messageOrder where schema.messages[name]!.file == file.name {
            w.line()
            emitMessage(schema.messages[name]!, &w)
        }
        return w.text
    }

    func emitEnum(_ model: EnumModel, _ w: inout Writer) {
        w.block("extension \(swift.swiftTypeName(enum: model.fullName)): JSONEnum") { w in
            w.block("public init?(jsonName: String)") { w in
                w.block("switch jsonName") { w in
                    for value in model.values {
                        w.line("case \"\(value.name)\": self = .\(SwiftNames.escaped(swift.enumCaseName(value, model)))")
                    }
                    w.line("default: return nil")
                }
            }
            w.line()
            w.block("public var jsonName: String?") { w in
                w.block("switch self") { w in
                    for value in model.values {
                        w.line("case .\(SwiftNames.escaped(swift.enumCaseName(value, model))): return \"\(value.name)\"")
                    }
                    w.line("case .unrecognized: return nil")
                }
            }
        }
    }

    /// Swift expression of the JSON value of `source`, a value of `type`.
    func writeExpression(_ type: FieldType, _ source: String) -> String {
        switch type {
        case .double: return "JSONWrite.double(\(source))"
        case .float: return "JSONWrite.float(\(source))"
        case .int64, .sint64, .sfixed64: return "JSONWrite.int64(\(source))"
        case .uint64, .fixed64: return "JSONWrite.uint64(\(source))"
        case .int32, .sint32, .sfixed32: return "JSONWrite.int32(\(source))"
        case .uint32, .fixed32: return "JSONWrite.uint32(\(source))"
        case .bool: return "JSONWrite.bool(\(source))"
        case .string: return "JSONWrite.string(\(source))"
        case .bytes: return "JSONWrite.bytes(\(source))"
        case .enumeration: return "JSONWrite.enumeration(\(source))"
        case .message: return "\(source).jsonValue()"
        }
    }

    /// Swift expression reading a value of `type` from JSON `source` at `path`.
    func readExpression(_ type: FieldType, _ source: String, _ path: String) -> String {
        switch type {
        case .double: return "try JSONRead.double(\(source), \(path))"
        case .float: return "try JSONRead.float(\(source), \(path))"
        case .int64, .sint64, .sfixed64: return "try JSONRead.int64(\(source), \(path))"
        case .uint64, .fixed64: return "try JSONRead.uint64(\(source), \(path))"
        case .int32, .sint32, .sfixed32: return "try JSONRead.int32(\(source), \(path))"
        case .uint32, .fixed32: return "try JSONRead.uint32(\(source), \(path))"
        case .bool: return "try JSONRead.bool(\(source), \(path))"
        case .string: return "try JSONRead.string(\(source), \(path))"
        case .bytes: return "try JSONRead.bytes(\(source), \(path))"
        case .enumeration(let name):
            return "try JSONRead.enumeration(\(source), \(path), \"\(name)\") as \(swift.elementType(type))"
        case .message: return "try JSONRead.message(\(source), \(path)) as \(swift.elementType(type))"
        }
    }

    /// The condition under which a singular non-oneof field is written.
    func isSetCondition(_ field: FieldModel, _ property: String) -> String {
        if field.isRepeated { return "!\(property).isEmpty" }
        switch field.type {
        case .message: return "let __v = \(property)"
        case .bool: return property
        case .string, .bytes: return "!\(property).isEmpty"
        case .enumeration: return "\(property).rawValue != 0"
        default: return "\(property) != 0"
        }
    }

    func emitMessage(_ model: MessageModel, _ w: inout Writer) {
        let typeName = swift.swiftTypeName(message: model.fullName)
        w.block("extension \(typeName): JSONMessage") { w in
            w.block("public func jsonValue() -> JSONValue") { w in
                if model.fields.isEmpty {
                    w.line("var __o = JSONObjectBuilder()")
                    w.line("__o.appendUnknown(self.unknownFields)")
                    w.line("return __o.value")
                    return
                }
                w.line("var __o = JSONObjectBuilder()")
                var seen: Set<Int> = []
                for field in model.fields {
                    if let oneof = field.oneofIndex {
                        guard seen.insert(oneof).inserted else { continue }
                        let o = model.oneofs[oneof]
                        // A oneof member is written even at its default value: being set is the information.
                        w.block("switch self.\(SwiftNames.escaped(SwiftNames.lowerCamel(o.name)))") { w in
                            w.line("case nil: break")
                            for fieldIndex in o.fieldIndexes {
                                let member = model.fields[fieldIndex]
                                w.line(
                                    "case .\(SwiftNames.escaped(swift.propertyName(member)))(let __v)?: __o.append(\"\(Self.jsonName(member.name))\", \(writeExpression(member.type, "__v")))"
                                )
                            }
                        }
                        continue
                    }
                    let property = "self." + SwiftNames.escaped(swift.propertyName(field))
                    let key = "\"\(Self.jsonName(field.name))\""
                    if field.isRepeated {
                        w.line(
                            "if !\(property).isEmpty { __o.append(\(key), .array(\(property).map { \(writeExpression(field.type, "$0")) })) }")
                    } else if field.type.isMessage {
                        w.line("if let __v = \(property) { __o.append(\(key), __v.jsonValue()) }")
                    } else {
                        w.line("if \(isSetCondition(field, property)) { __o.append(\(key), \(writeExpression(field.type, property))) }")
                    }
                }
                w.line("__o.appendUnknown(self.unknownFields)")
                w.line("return __o.value")
            }
            w.line()
            w.block("public init(jsonValue: JSONValue, path: String) throws(JSONMappingError)") { w in
                w.line("self.init()")
                if !model.fields.isEmpty {
                    w.line("var __fields = JSONFieldSet(message: Self.protoMessageName, path: path)")
                }
                w.block("for __m in try JSONRead.members(jsonValue, message: Self.protoMessageName, path: path)") { w in
                    w.line("let __p = path + \".\" + __m.key")
                    w.block("switch __m.key") { w in
                        for field in model.fields {
                            let json = Self.jsonName(field.name)
                            let labels = json == field.name ? "\"\(json)\"" : "\"\(json)\", \"\(field.name)\""
                            w.line("case \(labels):")
                            w.indent { w in
                                if let oneof = field.oneofIndex {
                                    let o = model.oneofs[oneof]
                                    w.line(
                                        "try __fields.insert(\(field.number), __m.key, oneof: \(oneof), name: \"\(o.name)\", isNull: __m.value == .null)")
                                    let property = "self." + SwiftNames.escaped(SwiftNames.lowerCamel(o.name))
                                    let caseName = SwiftNames.escaped(swift.propertyName(field))
                                    w.line(
                                        "if __m.value != .null { \(property) = .\(caseName)(\(readExpression(field.type, "__m.value", "__p"))) }")
                                } else {
                                    w.line("try __fields.insert(\(field.number), __m.key)")
                                    let property = "self." + SwiftNames.escaped(swift.propertyName(field))
                                    if field.isRepeated {
                                        let element = readExpression(field.type, "__e", "__ep")
                                        w.line(
                                            "\(property) = try JSONRead.repeated(__m.value, __p) { (__e, __ep) throws(JSONMappingError) in \(element) }")
                                    } else if field.type.isMessage {
                                        w.line(
                                            "if __m.value != .null { \(property) = \(readExpression(field.type, "__m.value", "__p")) }")
                                    } else {
                                        w.line("\(property) = \(readExpression(field.type, "__m.value", "__p"))")
                                    }
                                }
                            }
                        }
                        let known = model.fields.map { String($0.number) }.joined(separator: ", ")
                        w.line("case JSONUnknownFields.key: self.unknownFields = try JSONUnknownFields.read(__m.value, __p, known: [\(known)])")
                        w.line("default:")
                        w.line(
                            "    throw JSONMappingError(.unknownField(field: __m.key, message: Self.protoMessageName), path: path)")
                    }
                }
            }
        }
    }
}
