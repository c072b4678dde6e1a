// Emits, for the test suite, a sample value of every message with a
// non-default value in every field. The rule is a pure function of the schema
// so that an independent implementation (clients/python/weft_interop.py)
// builds the very same values from the descriptor set alone:
//
//   sample(M, variant v, depth d): for each field f of M in declaration order,
//     skip f if it is in a oneof o and is not o's member number (v mod |o|);
//     k = f.number * 100 + d * 10 + v + 1
//     message fields: at depth >= 2 repeated ones stay empty and singular ones
//       are left unset, except a chosen oneof member, set to an empty message;
//       otherwise singular = sample(T, 0, d + 1), repeated =
//       [sample(T, 0, d + 1), sample(T, 1, d + 1)]
//     other fields: repeated = [value(k), value(k + 1)], singular = value(k)
//   value(k): int32, sint32, sfixed32: -k; int64, sint64, sfixed64:
//     -k * 1000000007; uint32, fixed32: k; uint64, fixed64: k * 10000000019;
//     float, double: k + 0.5; bool: true; string: "s<k>-é✓";
//     bytes: [k mod 256, (k div 256) mod 256, 0, 255]; enum: its value with
//     the largest number.
//   variants(M) = max(1, the largest oneof's member count).

struct SampleEmitter {
    let schema: Schema
    let swift: SwiftEmitter
    static let maxDepth = 2

    func variants(_ model: MessageModel) -> Int {
        max(1, model.oneofs.map(\.fieldIndexes.count).max() ?? 0)
    }

    func value(_ type: FieldType, _ k: String) -> String {
        switch type {
        case .int32, .sint32, .sfixed32: return "Int32(-(\(k)))"
        case .int64, .sint64, .sfixed64: return "Int64(-(\(k))) * 1_000_000_007"
        case .uint32, .fixed32: return "UInt32(\(k))"
        case .uint64, .fixed64: return "UInt64(\(k)) * 10_000_000_019"
        case .float: return "Float(\(k)) + 0.5"
        case .double: return "Double(\(k)) + 0.5"
        case .bool: return "true"
        case .string: return "\"s\\(\(k))-é✓\""
        case .bytes: return "[UInt8((\(k)) % 256), UInt8(((\(k)) / 256) % 256), 0, 255]"
        case .enumeration(let name):
            let model = schema.enums[name]!
            let largest = model.values.max { $0.number < $1.number }!
            return "." + SwiftNames.escaped(swift.enumCaseName(largest, model))
        case .message: fatalError("messages are handled by the caller")
        }
    }

    func emit() -> String {
        var w = Writer()
        w.line(generatedHeader)
        w.line("// The sampling rule is described in codegen/Sources/weft-codegen/SampleEmitter.swift.")
        w.line()
        w.line("import WeftWire")
        for name in schema.messageOrder {
            let model = schema.messages[name]!
            let swiftName = swift.swiftTypeName(message: name)
            w.line()
            w.block("extension \(swiftName)") { w in
                w.line("/// Number of distinct samples (one per member of the largest oneof).")
                w.line("static var sampleVariants: Int { \(variants(model)) }")
                w.line()
                w.line("/// A value with every field set to a non-default value.")
                w.block("static func sample(variant: Int, depth: Int) -> Self") { w in
                    if model.fields.isEmpty {
                        w.line("Self()")
                        return
                    }
                    w.line("var m = Self()")
                    w.line("let deep = depth >= \(Self.maxDepth)")
                    w.line("_ = deep")
                    for (oneofIndex, o) in model.oneofs.enumerated() {
                        _ = oneofIndex
                        let property = SwiftNames.escaped(SwiftNames.lowerCamel(o.name))
                        w.block("switch variant % \(o.fieldIndexes.count)") { w in
                            for (position, fieldIndex) in o.fieldIndexes.enumerated() {
                                let field = model.fields[fieldIndex]
                                let k = "\(field.number) * 100 + depth * 10 + variant + 1"
                                let caseName = SwiftNames.escaped(swift.propertyName(field))
                                let label = position == o.fieldIndexes.count - 1 ? "default" : "case \(position)"
                                if case .message(let child) = field.type {
                                    let t = swift.swiftTypeName(message: child)
                                    w.line("\(label): m.\(property) = .\(caseName)(deep ? \(t)() : \(t).sample(variant: 0, depth: depth + 1))")
                                } else {
                                    w.line("\(label): m.\(property) = .\(caseName)(\(value(field.type, k)))")
                                }
                            }
                        }
                    }
                    for field in model.fields where field.oneofIndex == nil {
                        let property = SwiftNames.escaped(swift.propertyName(field))
                        let k = "\(field.number) * 100 + depth * 10 + variant + 1"
                        if case .message(let child) = field.type {
                            let t = swift.swiftTypeName(message: child)
                            if field.isRepeated {
                                w.line("if !deep { m.\(property) = [\(t).sample(variant: 0, depth: depth + 1), \(t).sample(variant: 1, depth: depth + 1)] }")
                            } else {
                                w.line("if !deep { m.\(property) = \(t).sample(variant: 0, depth: depth + 1) }")
                            }
                        } else if field.isRepeated {
                            let k1 = "\(field.number) * 100 + depth * 10 + variant + 2"
                            w.line("m.\(property) = [\(value(field.type, k)), \(value(field.type, k1))]")
                        } else {
                            w.line("m.\(property) = \(value(field.type, k))")
                        }
                    }
                    w.line("return m")
                }
            }
        }
        w.line()
        w.line("/// Every message type with all its samples at depth 0.")
        w.line("let allSamples: [(name: String, samples: [any WireMessage])] = [")
        w.indent { w in
            for name in schema.messageOrder {
                let t = swift.swiftTypeName(message: name)
                w.line("(\"\(name)\", (0..<\(t).sampleVariants).map { \(t).sample(variant: $0, depth: 0) }),")
            }
        }
        w.line("]")
        return w.text
    }
}
