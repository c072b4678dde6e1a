/// How many messages each side of a call sends.
public enum MethodKind: String, Hashable, Sendable {
    /// One request, one response.
    case unary
    /// One request, a stream of responses.
    case serverStreaming
    /// A stream of requests, one response.
    case clientStreaming
    /// Streams both ways.
    case bidirectionalStreaming
}

/// A method of a Weft service, untyped: what the RPC layer routes on.
///
/// protobuf-c's service descriptors do not record whether a method streams;
/// codegen reads that from the `.proto` files and records it here.
public struct MethodDescriptor: Hashable, Sendable, CustomStringConvertible {
    /// `/weft.v1.<Service>/<Method>`.
    public var path: String
    /// Whether requests and responses stream.
    public var kind: MethodKind
    /// Fully qualified request message name.
    public var requestType: String
    /// Fully qualified response message name.
    public var responseType: String

    public init(path: String, kind: MethodKind, requestType: String, responseType: String) {
        self.path = path
        self.kind = kind
        self.requestType = requestType
        self.responseType = responseType
    }

    public var description: String { "\(path) (\(kind.rawValue))" }
}

/// A method with its request and response types, for typed clients and
/// servers.
public struct Method<Request: WireMessage, Response: WireMessage>: Hashable, Sendable {
    /// The untyped descriptor.
    public let descriptor: MethodDescriptor

    public init(path: String, kind: MethodKind) {
        descriptor = MethodDescriptor(
            path: path, kind: kind, requestType: Request.protoMessageName, responseType: Response.protoMessageName)
    }

    /// `/weft.v1.<Service>/<Method>`.
    public var path: String { descriptor.path }
    /// Whether requests and responses stream.
    public var kind: MethodKind { descriptor.kind }
}
