import ArgumentParser
import Foundation
import WeftTransport
import WeftWire

/// `weft call`: any method of a node with JSON in and out, in the spirit of
/// grpcurl. The node's reflection service says which services it serves and
/// each method's streaming kind and message types; the generated proto3 JSON
/// mapping turns the JSON into the request and the responses into JSON.
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call any method of a node with JSON (weft call ADDRESS /weft.v1.Service/Method --json '{…}').",
        discussion: """
            The request is proto3 JSON (field names as in docs/methods.md, lowerCamelCase or as in the \
            .proto file): --json TEXT, --json @FILE, or --json - for standard input; without --json, {}. \
            A unary response is printed as one JSON object; a server stream as JSON lines, one per \
            message as it arrives (--max-messages N stops after N). `weft call ADDRESS list` (or --list) \
            shows the services and methods the node serves. A call that fails prints its status code, \
            Weft error id and message on standard error and exits 1; JSON that does not parse or does \
            not fit the request type, or a method the node does not serve, exits 64.
            """)

    @Argument(help: ArgumentHelp("The node's API address.", valueName: "host:port"))
    var address: String

    @Argument(help: ArgumentHelp("The method's path, or `list`.", valueName: "/weft.v1.Service/Method"))
    var method: String?

    @Option(help: ArgumentHelp("The request as JSON, @FILE, or - (standard input).", valueName: "json"))
    var json: String?

    @Flag(help: "List the services and methods the node serves.")
    var list = false

    @Option(help: "Stop a server stream after this many messages.")
    var maxMessages: Int?

    @Option(help: "Seconds the node has for the call (a server stream: for the whole stream).")
    var timeout: Double?

    @Option(help: "json (one line per message) or text (indented JSON).")
    var output: OutputFormat = .json

    @OptionGroup var connection: ConnectionOptions

    var listing: Bool { list || method == "list" }

    func validate() throws {
        guard listing || method != nil else { throw ValidationError("give the method's path (/weft.v1.Service/Method), or `list`") }
        if let method, !listing, !method.hasPrefix("/") || method.split(separator: "/").count != 2 {
            throw ValidationError("\(method): expected a method path /package.Service/Method, e.g. /weft.v1.HealthService/Check")
        }
        if let maxMessages, maxMessages < 1 { throw ValidationError("--max-messages must be at least 1") }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        // The JSON is checked before the node is asked anything: a typo costs no connection.
        let request = listing ? nil : readRequest()
        let client: RPCClient
        do {
            client = try await connection.connect(to: address)
        } catch let error as ValidationError {
            throw error
        } catch let error as RPCError {
            fail(Self.statusLine(error))  // says where it could not connect, and what to check
        } catch {
            fail("cannot connect to \(address): \(error); check that the node runs and listens there (`weft health status`)")
        }
        defer { Task { await client.close() } }
        let served: Weft.V1.GetDescriptorSetResponse
        do {
            served = try await client.reflection.getDescriptorSet(.init(), timeout: .seconds(10))
        } catch let error as RPCError {
            fail("the node's reflection service did not answer: \(Self.statusLine(error))")
        }
        let catalog: ServiceCatalog
        do {
            catalog = try ServiceCatalog(descriptorSet: served.fileDescriptorSet)
        } catch {
            fail("the node's descriptor set does not parse: \(error)")
        }
        let services = catalog.services.filter { served.services.contains($0.name) }
        if listing {
            printList(services)
            return
        }
        guard let method, let descriptor = services.flatMap(\.methods).first(where: { $0.path == method }) else {
            let names = services.map(\.name).joined(separator: ", ")
            fail(
                "the node serves no method \(method ?? ""); its services: \(names) (`weft call \(address) list` shows their methods)",
                status: ExitCode.validationFailure.rawValue)
        }
        guard let requestType = Weft.V1.jsonMessageType(named: descriptor.requestType),
            let responseType = Weft.V1.jsonMessageType(named: descriptor.responseType)
        else {
            fail("\(descriptor.path) uses \(descriptor.requestType) → \(descriptor.responseType), which this weft does not know: use a weft of the node's version")
        }
        do {
            try await perform(requestType, responseType, client: client, descriptor: descriptor, request: request ?? .object([]))
        } catch let error as RPCError {
            fail(Self.statusLine(error))
        }
    }

    /// The request's JSON from --json (text, @file, or - for standard input); `{}` without it.
    func readRequest() -> JSONValue {
        guard let json else { return .object([]) }
        let text: String
        let source: String
        if json == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            source = "standard input"
        } else if json.hasPrefix("@") {
            let path = String(json.dropFirst())
            guard let data = FileManager.default.contents(atPath: path) else {
                fail("--json @\(path): cannot read the file", status: ExitCode.validationFailure.rawValue)
            }
            text = String(decoding: data, as: UTF8.self)
            source = path
        } else {
            text = json
            source = "--json"
        }
        do {
            return try JSONValue(parsing: text)
        } catch {
            fail("\(source): \(error)", status: ExitCode.validationFailure.rawValue)
        }
    }

    /// The call itself, with the request and response types opened from the reflection's names.
    func perform<Request: JSONMessage, Response: JSONMessage>(
        _: Request.Type, _: Response.Type, client: RPCClient, descriptor: MethodDescriptor, request json: JSONValue
    ) async throws {
        let request: Request
        do {
            request = try Request(jsonValue: json)
        } catch {
            fail("the request does not fit \(Request.protoMessageName): \(error)", status: ExitCode.validationFailure.rawValue)
        }
        let method = Method<Request, Response>(path: descriptor.path, kind: descriptor.kind)
        let timeout = self.timeout.map { Duration.milliseconds(Int64($0 * 1000)) }
        switch descriptor.kind {
        case .unary:
            emit(try await client.unary(method, request, timeout: timeout))
        case .serverStreaming:
            var count = 0
            for try await response in try client.serverStream(method, request, timeout: timeout) {
                emit(response)
                count += 1
                if let maxMessages, count >= maxMessages { break }
            }
        case .clientStreaming, .bidirectionalStreaming:
            fail(
                "\(descriptor.path) is \(descriptor.kind.rawValue): weft call makes unary and server-streaming calls only",
                status: ExitCode.validationFailure.rawValue)
        }
    }

    /// Writes one message straight to standard output (unbuffered), so that a stream's messages
    /// show as they arrive even through a pipe.
    func emit(_ message: some JSONMessage) {
        FileHandle.standardOutput.write(Data((message.jsonText(pretty: output == .text) + "\n").utf8))
    }

    func printList(_ services: [ServiceCatalog.Service]) {
        switch output {
        case .json:
            let value = JSONValue.object([
                .init(
                    "services",
                    .array(
                        services.map { service in
                            .object([
                                .init("name", .string(service.name)),
                                .init(
                                    "methods",
                                    .array(
                                        service.methods.map { method in
                                            .object([
                                                .init("path", .string(method.path)), .init("kind", .string(method.kind.rawValue)),
                                                .init("requestType", .string(method.requestType)),
                                                .init("responseType", .string(method.responseType)),
                                            ])
                                        })),
                            ])
                        }))
            ])
            print(value.serialized())
        case .text:
            for service in services {
                print(service.name)
                for method in service.methods {
                    print("  \(method.path) (\(method.kind.rawValue)): \(method.requestType) → \(method.responseType)")
                }
            }
        }
    }

    /// `NOT_FOUND (5) HEALTH_UNKNOWN_SERVICE: message [correlation id …]`.
    static func statusLine(_ error: RPCError) -> String {
        var name = ""
        for character in "\(error.code)" {
            if character.isUppercase { name += "_" }
            name += character.uppercased()
        }
        let correlation = error.correlationID.isEmpty ? "" : " [correlation id \(error.correlationID)]"
        return "\(name) (\(error.code.rawValue)) \(error.errorID): \(error.message)\(correlation)"
    }

    /// Says why on standard error and exits: 1 when the node or the call failed, 64 (the
    /// status of every usage error) when the input was wrong.
    func fail(_ message: String, status: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("weft call: \(message)\n".utf8))
        Foundation.exit(status)
    }
}
