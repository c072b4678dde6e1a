// The schema model: the parts of a FileDescriptorSet the emitters need, copied
// out of protobuf-c's C structs into plain Swift values once, so that the
// emitters never touch C pointers.
import CDescriptor
import CProtobufC

/// A scalar or reference type of a field, as declared in the .proto file.
enum FieldType: Equatable {
    case double, float, int64, uint64, int32, fixed64, fixed32, bool, string, bytes
    case uint32, sfixed32, sfixed64, sint32, sint64
    case message(String)  // fully qualified name without the leading dot
    case enumeration(String)

    init(protoType: Int32, typeName: String) throws {
        switch protoType {
        case 1: self = .double
        case 2: self = .float
        case 3: self = .int64
        case 4: self = .uint64
        case 5: self = .int32
        case 6: self = .fixed64
        case 7: self = .fixed32
        case 8: self = .bool
        case 9: self = .string
        case 11: self = .message(String(typeName.dropFirst()))
        case 12: self = .bytes
        case 13: self = .uint32
        case 14: self = .enumeration(String(typeName.dropFirst()))
        case 15: self = .sfixed32
        case 16: self = .sfixed64
        case 17: self = .sint32
        case 18: self = .sint64
        default: throw CodegenError("unsupported field type \(protoType) (groups are not supported)")
        }
    }

    var isMessage: Bool { if case .message = self { return true } else { return false } }
}

struct FieldModel {
    var name: String
    var number: Int32
    var isRepeated: Bool
    var type: FieldType
    var oneofIndex: Int?
    var comment: String
}

struct OneofModel {
    var name: String
    var comment: String
    var fieldIndexes: [Int] = []
}

struct EnumValueModel {
    var name: String
    var number: Int32
    var comment: String
}

struct EnumModel {
    var fullName: String  // weft.v1.ServingStatus
    var scopeNames: [String]  // ["ServingStatus"] or ["Outer", "Inner"]
    var values: [EnumValueModel]
    var comment: String
    var file: String
}

struct MessageModel {
    var fullName: String  // weft.v1.Frame
    var scopeNames: [String]
    var fields: [FieldModel]
    var oneofs: [OneofModel]
    var nestedMessages: [String]  // full names
    var nestedEnums: [String]
    var comment: String
    var file: String
    var isMapEntry: Bool
}

struct MethodModel {
    var name: String
    var inputType: String
    var outputType: String
    var clientStreaming: Bool
    var serverStreaming: Bool
    var comment: String

    /// The `MethodKind` case name in Swift, and the words the docs use.
    var kind: (swift: String, docs: String) {
        switch (clientStreaming, serverStreaming) {
        case (false, false): return ("unary", "unary")
        case (false, true): return ("serverStreaming", "server-streaming")
        case (true, false): return ("clientStreaming", "client-streaming")
        case (true, true): return ("bidirectionalStreaming", "bidirectional")
        }
    }
}

struct ServiceModel {
    var fullName: String
    var name: String
    var methods: [MethodModel]
    var comment: String
    var file: String
}

struct FileModel {
    var name: String  // weft/v1/frame.proto
    var package: String
    var comment: String
    var topLevelMessages: [String]
    var topLevelEnums: [String]
    var services: [String]
}

struct CodegenError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Everything the emitters know about the schema.
struct Schema {
    var files: [FileModel] = []
    var messages: [String: MessageModel] = [:]
    var enums: [String: EnumModel] = [:]
    var services: [String: ServiceModel] = [:]
    /// Messages in declaration order (file by file), for stable output.
    var messageOrder: [String] = []
    var enumOrder: [String] = []

    /// Loads the serialized `FileDescriptorSet` that protoc wrote (with
    /// `--include_source_info`, so that comments reach the generated code).
    init(descriptorSet bytes: [UInt8], onlyPackage: String) throws {
        guard
            let set = bytes.withUnsafeBufferPointer({
                google__protobuf__file_descriptor_set__unpack(nil, $0.count, $0.baseAddress)
            })
        else { throw CodegenError("the descriptor set does not parse") }
        defer { google__protobuf__file_descriptor_set__free_unpacked(set, nil) }

        for f in 0..<set.pointee.n_file {
            let file = set.pointee.file[f]!
            let package = str(file.pointee.package)
            guard package == onlyPackage else { continue }
            let fileName = str(file.pointee.name)
            let comments = Comments(file.pointee.source_code_info)
            var model = FileModel(
                name: fileName, package: package,
                comment: comments[[12]],  // the `syntax` statement's leading comment
                topLevelMessages: [], topLevelEnums: [], services: [])
            for m in 0..<file.pointee.n_message_type {
                let name = try loadMessage(
                    file.pointee.message_type[m]!, scope: [], prefix: package, path: [4, Int32(m)],
                    comments: comments, file: fileName)
                model.topLevelMessages.append(name)
            }
            for e in 0..<file.pointee.n_enum_type {
                let name = loadEnum(
                    file.pointee.enum_type[e]!, scope: [], prefix: package, path: [5, Int32(e)],
                    comments: comments, file: fileName)
                model.topLevelEnums.append(name)
            }
            for s in 0..<file.pointee.n_service {
                let service = file.pointee.service[s]!.pointee
                let name = str(service.name)
                var methods: [MethodModel] = []
                for i in 0..<service.n_method {
                    let method = service.method[i]!.pointee
                    methods.append(
                        MethodModel(
                            name: str(method.name),
                            inputType: String(str(method.input_type).dropFirst()),
                            outputType: String(str(method.output_type).dropFirst()),
                            clientStreaming: method.client_streaming != 0,
                            serverStreaming: method.server_streaming != 0,
                            comment: comments[[6, Int32(s), 2, Int32(i)]]))
                }
                let full = "\(package).\(name)"
                services[full] = ServiceModel(
                    fullName: full, name: name, methods: methods, comment: comments[[6, Int32(s)]],
                    file: fileName)
                model.services.append(full)
            }
            files.append(model)
        }
    }

    private mutating func loadMessage(
        _ pointer: UnsafeMutablePointer<Google__Protobuf__DescriptorProto>, scope: [String], prefix: String,
        path: [Int32], comments: Comments, file: String
    ) throws -> String {
        let d = pointer.pointee
        let name = str(d.name)
        let fullName = "\(prefix).\(name)"
        let scopeNames = scope + [name]
        var oneofs: [OneofModel] = []
        for o in 0..<d.n_oneof_decl {
            oneofs.append(
                OneofModel(name: str(d.oneof_decl[o]!.pointee.name), comment: comments[path + [8, Int32(o)]]))
        }
        var fields: [FieldModel] = []
        for i in 0..<d.n_field {
            let f = d.field[i]!.pointee
            if f.proto3_optional != 0 {
                throw CodegenError("\(fullName).\(str(f.name)): proto3 `optional` is not supported by protobuf-c 1.4")
            }
            let type = try FieldType(protoType: Int32(truncatingIfNeeded: f.type.rawValue), typeName: str(f.type_name))
            let oneof: Int? = f.has_oneof_index != 0 ? Int(f.oneof_index) : nil
            if let oneof { oneofs[oneof].fieldIndexes.append(fields.count) }
            fields.append(
                FieldModel(
                    name: str(f.name), number: f.number,
                    isRepeated: f.label.rawValue == 3, type: type, oneofIndex: oneof,
                    comment: comments[path + [2, Int32(i)]]))
        }
        var nested: [String] = []
        for n in 0..<d.n_nested_type {
            nested.append(
                try loadMessage(
                    d.nested_type[n]!, scope: scopeNames, prefix: fullName, path: path + [3, Int32(n)],
                    comments: comments, file: file))
        }
        var nestedEnums: [String] = []
        for e in 0..<d.n_enum_type {
            nestedEnums.append(
                loadEnum(
                    d.enum_type[e]!, scope: scopeNames, prefix: fullName, path: path + [4, Int32(e)],
                    comments: comments, file: file))
        }
        let isMapEntry = d.options?.pointee.map_entry ?? 0 != 0
        if isMapEntry { throw CodegenError("\(fullName): map fields are not supported; use a repeated entry message") }
        messages[fullName] = MessageModel(
            fullName: fullName, scopeNames: scopeNames, fields: fields, oneofs: oneofs,
            nestedMessages: nested, nestedEnums: nestedEnums, comment: comments[path], file: file,
            isMapEntry: isMapEntry)
        messageOrder.append(fullName)
        return fullName
    }

    private mutating func loadEnum(
        _ pointer: UnsafeMutablePointer<Google__Protobuf__EnumDescriptorProto>, scope: [String], prefix: String,
        path: [Int32], comments: Comments, file: String
    ) -> String {
        let d = pointer.pointee
        let name = str(d.name)
        let fullName = "\(prefix).\(name)"
        var values: [EnumValueModel] = []
        for v in 0..<d.n_value {
            let value = d.value[v]!.pointee
            values.append(
                EnumValueModel(
                    name: str(value.name), number: value.number, comment: comments[path + [2, Int32(v)]]))
        }
        enums[fullName] = EnumModel(
            fullName: fullName, scopeNames: scope + [name], values: values, comment: comments[path], file: file)
        enumOrder.append(fullName)
        return fullName
    }

    /// Message types that can contain themselves (through any chain of
    /// message fields). protobuf-c unpacks them recursively, so decoding
    /// them checks the nesting depth first.
    func recursiveMessages() -> Set<String> {
        var result: Set<String> = []
        for start in messageOrder {
            var stack = [start]
            var seen: Set<String> = []
            search: while let current = stack.popLast() {
                for field in messages[current]!.fields {
                    guard case .message(let child) = field.type else { continue }
                    if child == start {
                        result.insert(start)
                        break search
                    }
                    if seen.insert(child).inserted { stack.append(child) }
                }
            }
        }
        // A type that reaches a recursive type is exposed to deep input too.
        var exposed = result
        for start in messageOrder where !exposed.contains(start) {
            var stack = [start]
            var seen: Set<String> = [start]
            while let current = stack.popLast() {
                if result.contains(current) {
                    exposed.insert(start)
                    break
                }
                for field in messages[current]!.fields {
                    if case .message(let child) = field.type, seen.insert(child).inserted { stack.append(child) }
                }
            }
        }
        return exposed
    }
}

/// Leading comments from `SourceCodeInfo`, keyed by their descriptor path.
struct Comments {
    private var byPath: [[Int32]: String] = [:]

    init(_ info: UnsafeMutablePointer<Google__Protobuf__SourceCodeInfo>?) {
        guard let info else { return }
        for i in 0..<info.pointee.n_location {
            let location = info.pointee.location[i]!.pointee
            guard let leading = location.leading_comments else { continue }
            let path = Array(UnsafeBufferPointer(start: location.path, count: location.n_path))
            byPath[path] = String(cString: leading)
        }
    }

    subscript(path: [Int32]) -> String { byPath[path] ?? "" }
}

func str(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}
