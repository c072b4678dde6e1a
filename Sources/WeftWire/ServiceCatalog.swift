/// The services and methods a `google.protobuf.FileDescriptorSet` declares,
/// with each method's streaming kind: what a generic client (`weft call`)
/// learns from a node's `weft.v1.ReflectionService` before calling it.
///
/// Only the few descriptor fields a client needs are read (by hand: Weft's
/// generated code covers `weft.v1`, not `descriptor.proto`); everything else is
/// skipped, so a newer protoc's additions do no harm.
public struct ServiceCatalog: Hashable, Sendable {
    public struct Service: Hashable, Sendable {
        /// Fully qualified, e.g. `weft.v1.HealthService`.
        public var name: String
        public var methods: [MethodDescriptor]
    }

    public var services: [Service]

    /// Every method of every service.
    public var methods: [MethodDescriptor] { services.flatMap(\.methods) }

    /// The method with `path` (`/weft.v1.HealthService/Check`), if declared.
    public func method(path: String) -> MethodDescriptor? { methods.first { $0.path == path } }

    /// Reads a serialized `FileDescriptorSet`.
    public init(descriptorSet bytes: [UInt8]) throws(WireError) {
        let name = "google.protobuf.FileDescriptorSet"
        var services: [Service] = []
        for file in try Self.fields(bytes, name) where file.number == 1 {
            var package = ""
            var declared: [[UInt8]] = []
            for field in try Self.fields(file.bytes, name) {
                if field.number == 2 { package = try Self.string(field.bytes, name) }
                if field.number == 6 { declared.append(field.bytes) }
            }
            for serviceBytes in declared {
                var serviceName = ""
                var methods: [(name: String, input: String, output: String, client: Bool, server: Bool)] = []
                for field in try Self.fields(serviceBytes, name) {
                    if field.number == 1 { serviceName = try Self.string(field.bytes, name) }
                    guard field.number == 2 else { continue }
                    var method = (name: "", input: "", output: "", client: false, server: false)
                    for part in try Self.fields(field.bytes, name) {
                        switch part.number {
                        case 1: method.name = try Self.string(part.bytes, name)
                        case 2: method.input = String(try Self.string(part.bytes, name).drop { $0 == "." })
                        case 3: method.output = String(try Self.string(part.bytes, name).drop { $0 == "." })
                        case 5: method.client = part.varint != 0
                        case 6: method.server = part.varint != 0
                        default: break
                        }
                    }
                    methods.append(method)
                }
                let fullName = package.isEmpty ? serviceName : "\(package).\(serviceName)"
                services.append(
                    Service(
                        name: fullName,
                        methods: methods.map { method in
                            let kind: MethodKind =
                                switch (method.client, method.server) {
                                case (false, false): .unary
                                case (false, true): .serverStreaming
                                case (true, false): .clientStreaming
                                case (true, true): .bidirectionalStreaming
                                }
                            return MethodDescriptor(
                                path: "/\(fullName)/\(method.name)", kind: kind, requestType: method.input,
                                responseType: method.output)
                        }))
            }
        }
        self.services = services
    }

    /// A field of a message: its number and, by wire type, its varint value or its bytes.
    private struct Field {
        var number: UInt64
        var varint: UInt64 = 0
        var bytes: [UInt8] = []
    }

    private static func fields(_ bytes: [UInt8], _ name: String) throws(WireError) -> [Field] {
        var result: [Field] = []
        var position = 0
        let malformed = WireError.malformed(message: name, byteCount: bytes.count)
        func varint() throws(WireError) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: UInt64(0), to: 70, by: 7) {
                guard position < bytes.count, shift < 64 else { throw malformed }
                let byte = bytes[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
            }
            throw malformed
        }
        while position < bytes.count {
            let tag = try varint()
            var field = Field(number: tag >> 3)
            switch tag & 7 {
            case 0: field.varint = try varint()
            case 1, 5:
                let width = tag & 7 == 1 ? 8 : 4
                guard bytes.count - position >= width else { throw malformed }
                position += width
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.count - position) else { throw malformed }
                field.bytes = Array(bytes[position..<position + Int(length)])
                position += Int(length)
            default: throw malformed
            }
            result.append(field)
        }
        return result
    }

    private static func string(_ bytes: [UInt8], _ name: String) throws(WireError) -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8(message: name) }
        return string
    }
}
