// Emits Sources/WeftTransport/Generated/Services.swift: for every service, a
// typed client over `RPCClient`, the protocol a server implements, and the
// registration of that protocol's methods on an `RPCRouter`. The method
// descriptors themselves live in WeftWire (SwiftEmitter.emitService); these
// stubs only name them, so a path or a message type is written in one place.

struct StubEmitter {
    let schema: Schema
    let swift: SwiftEmitter

    /// Names the generated code declares in `Client` and on `RPCClient` besides
    /// the methods and services: a proto name that maps onto one would not compile.
    static let clientMembers: Set<String> = ["rpc", "init"]
    static let providerMembers: Set<String> = ["register"]
    static let rpcClientMembers: Set<String> = [
        "channel", "connect", "close", "unary", "serverStream", "clientStream", "single", "decode", "malformedResponse",
    ]

    /// `HealthService` → `health`, `DomainManagerAdministrationService` → `domainManagerAdministration`.
    static func clientProperty(_ service: ServiceModel) -> String {
        let base = service.name.hasSuffix("Service") && service.name != "Service"
            ? String(service.name.dropLast("Service".count)) : service.name
        return SwiftNames.escaped(SwiftNames.lowerCamel(CNames.camelToLower(base)))
    }

    /// The name of the method's `Method` static in WeftWire, reused for the
    /// client function and the provider requirement.
    static func methodName(_ method: MethodModel) -> String {
        SwiftNames.escaped(SwiftNames.lowerCamel(CNames.camelToLower(method.name)))
    }

    func emit() throws -> String {
        var services: [ServiceModel] = []
        for file in schema.files {
            for name in file.services { services.append(schema.services[name]!) }
        }
        try validate(services)

        var w = Writer()
        w.line(generatedHeader)
        w.line()
        w.line("public import WeftWire")
        for service in services {
            w.line()
            emitService(service, &w)
        }
        return w.text
    }

    private func validate(_ services: [ServiceModel]) throws {
        var properties: [String: String] = [:]
        for service in services {
            for method in service.methods where method.clientStreaming && method.serverStreaming {
                throw CodegenError(
                    "/\(service.fullName)/\(method.name) streams both ways: the stub generator has no bidirectional "
                        + "client or provider shape yet (RPCClient has no bidirectional call); add one before using it")
            }
            let property = Self.clientProperty(service)
            if Self.rpcClientMembers.contains(property) {
                throw CodegenError("\(service.fullName): client property `\(property)` collides with a member of RPCClient")
            }
            if let other = properties.updateValue(service.fullName, forKey: property) {
                throw CodegenError("\(service.fullName) and \(other) both map to the client property `\(property)`")
            }
            for method in service.methods {
                let name = Self.methodName(method)
                if Self.clientMembers.contains(name) || Self.providerMembers.contains(name) {
                    throw CodegenError("/\(service.fullName)/\(method.name): `\(name)` collides with a generated stub member")
                }
            }
        }
    }

    private func emitService(_ service: ServiceModel, _ w: inout Writer) {
        let enumName = "Weft.V1.\(service.name)"
        w.block("extension \(enumName)") { w in
            w.line("/// Typed client for `\(service.fullName)`.")
            if !service.comment.isEmpty {
                w.line("///")
                w.doc(service.comment)
            }
            w.block("public struct Client: Sendable") { w in
                w.line("/// The connection the calls go over.")
                w.line("public let rpc: RPCClient")
                w.line()
                w.line("public init(_ rpc: RPCClient) { self.rpc = rpc }")
                for method in service.methods {
                    w.line()
                    emitClientMethod(method, enumName, &w)
                }
            }
            w.line()
            w.line("/// What a server implements to serve `\(service.fullName)`.")
            w.line("/// `register(on:)` adds every method to an `RPCRouter`.")
            w.block("public protocol Provider: Sendable") { w in
                for (index, method) in service.methods.enumerated() {
                    if index > 0 { w.line() }
                    emitRequirement(method, &w)
                }
            }
        }
        w.line()
        w.block("extension \(enumName).Provider") { w in
            w.line("/// Registers every method of `\(service.fullName)` on `router`.")
            w.block("public func register(on router: inout RPCRouter)") { w in
                for method in service.methods {
                    let name = Self.methodName(method)
                    switch (method.clientStreaming, method.serverStreaming) {
                    case (false, false):
                        w.line("router.register(\(enumName).\(name)) { request, context in")
                        w.line("    try await self.\(name)(request, context: context)")
                        w.line("}")
                    case (false, true):
                        w.line("router.registerServerStream(\(enumName).\(name)) { request, writer, context in")
                        w.line("    try await self.\(name)(request, responses: writer, context: context)")
                        w.line("}")
                    case (true, false):
                        w.line("router.registerClientStream(\(enumName).\(name)) { requests, context in")
                        w.line("    try await self.\(name)(requests, context: context)")
                        w.line("}")
                    case (true, true):
                        preconditionFailure("rejected by validate")
                    }
                }
            }
        }
        w.line()
        w.block("extension RPCClient") { w in
            w.line("/// `\(service.fullName)` on this connection.")
            w.line("public var \(Self.clientProperty(service)): \(enumName).Client { .init(self) }")
        }
    }

    private func emitClientMethod(_ method: MethodModel, _ enumName: String, _ w: inout Writer) {
        let name = Self.methodName(method)
        let request = swift.swiftTypeName(message: method.inputType)
        let response = swift.swiftTypeName(message: method.outputType)
        let options = "metadata: [Weft.V1.MetadataEntry] = [], timeout: Duration? = nil"
        w.doc(method.comment)
        switch (method.clientStreaming, method.serverStreaming) {
        case (false, false):
            w.line("public func \(name)(")
            w.line("    _ request: \(request), \(options)")
            w.block(") async throws -> \(response)") { w in
                w.line("try await rpc.unary(\(enumName).\(name), request, metadata: metadata, timeout: timeout)")
            }
        case (false, true):
            w.note(method.comment, "The responses arrive as an `AsyncSequence`; stopping the iteration early cancels the call.")
            w.line("public func \(name)(")
            w.line("    _ request: \(request), \(options)")
            w.block(") throws -> RPCMessageStream<\(response)>") { w in
                w.line("try rpc.serverStream(\(enumName).\(name), request, metadata: metadata, timeout: timeout)")
            }
        case (true, false):
            w.note(
                method.comment,
                "`requests` sends the requests through the writer; when it returns, the call",
                "half-closes and the server's response is returned.")
            w.line("public func \(name)(")
            w.line("    \(options),")
            w.line("    requests: @Sendable (RPCMessageWriter<\(request)>) async throws -> Void")
            w.block(") async throws -> \(response)") { w in
                w.line("try await rpc.clientStream(\(enumName).\(name), metadata: metadata, timeout: timeout, requests: requests)")
            }
        case (true, true):
            preconditionFailure("rejected by validate")
        }
    }

    private func emitRequirement(_ method: MethodModel, _ w: inout Writer) {
        let name = Self.methodName(method)
        let request = swift.swiftTypeName(message: method.inputType)
        let response = swift.swiftTypeName(message: method.outputType)
        w.doc(method.comment)
        switch (method.clientStreaming, method.serverStreaming) {
        case (false, false):
            w.line("func \(name)(_ request: \(request), context: RPCCallContext) async throws -> \(response)")
        case (false, true):
            w.note(method.comment, "Sends the responses through `responses`; returning ends the call with OK.")
            w.line("func \(name)(")
            w.line("    _ request: \(request), responses: RPCMessageWriter<\(response)>, context: RPCCallContext")
            w.line(") async throws")
        case (true, false):
            w.note(method.comment, "Reads `requests` until the client half-closes, then returns the response.")
            w.line("func \(name)(_ requests: RPCMessageStream<\(request)>, context: RPCCallContext) async throws -> \(response)")
        case (true, true):
            preconditionFailure("rejected by validate")
        }
    }
}

extension Writer {
    /// A further paragraph of a doc comment, after `comment` (already written).
    mutating func note(_ comment: String, _ lines: String...) {
        if !comment.isEmpty { line("///") }
        for text in lines { line("/// " + text) }
    }
}
