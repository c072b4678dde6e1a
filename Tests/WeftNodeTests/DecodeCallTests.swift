import Foundation
import Testing
import WeftTestSupport
import WeftWire

/// `weft decode` and `weft call` as an operator runs them: the `weft` process,
/// its output read back with the JSON mapping.
@Suite(.timeLimit(.minutes(5))) struct DecodeCallTests {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()

    /// The named hex vectors of docs/wire-protocol.md, read from the document itself so that
    /// the document and this test cannot drift apart.
    static func documentVectors() throws -> [String: String] {
        let doc = try String(contentsOf: root.appendingPathComponent("docs/wire-protocol.md"), encoding: .utf8)
        guard let start = doc.range(of: "<!-- vectors:begin -->"), let end = doc.range(of: "<!-- vectors:end -->") else {
            throw CocoaError(.fileReadCorruptFile)
        }
        var vectors: [String: String] = [:]
        for line in doc[start.upperBound..<end.lowerBound].split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            vectors[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return vectors
    }

    static func bytes(_ hex: String) -> [UInt8] {
        stride(from: 0, to: hex.count, by: 2).map { offset in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)!
        }
    }

    /// Runs `weft decode arguments…` and checks each printed frame: its `frame` JSON re-encodes
    /// to the frame's bytes and its `payload` JSON to the payload's bytes. Returns the entries.
    func decodeRoundTrip(_ arguments: [String], expecting input: [UInt8], directory: String) async throws -> [JSONValue] {
        let (status, output, errors) = try await WeftProcess.run(["decode"] + arguments, directory: directory)
        #expect(status == 0, "\(errors)")
        var reencoded: [UInt8] = []
        var entries: [JSONValue] = []
        for line in output.split(separator: "\n") {
            let entry = try JSONValue(parsing: String(line))
            entries.append(entry)
            if entry["preface"] != nil {
                reencoded += ConnectionPreface.bytes
                continue
            }
            let frame = try Weft.V1.Frame(jsonValue: try #require(entry["frame"]))
            reencoded += try FrameEncoder.encode(frame)
            if let payload = entry["payload"], case .string(let typeName)? = entry["payloadType"], case .message(let message)? = frame.kind {
                let type = try #require(Weft.V1.jsonMessageType(named: typeName))
                #expect(try type.init(jsonValue: payload).serializedBytes() == message.payload, "\(line)")
            }
        }
        #expect(reencoded == input, "decode → JSON → encode changed the bytes: \(output)")
        return entries
    }

    @Test func decodeRoundTripsTheDocumentsVectorsAndRefusesGarbage() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        let v = try Self.documentVectors()
        let names = ["preface", "open", "request-message", "half-close", "response-message", "close-ok", "close-not-found", "ping", "go-away"]
        #expect(Set(v.keys) == Set(names), "the document's vectors changed: \(v.keys.sorted())")

        // The client's side of a connection: the open frame names the method, so the message is a request.
        let client = try #require(v["preface"]) + " " + v["open"]! + "\n" + v["request-message"]! + " " + v["half-close"]!
        let clientEntries = try await decodeRoundTrip([client], expecting: Self.bytes(client.filter { !$0.isWhitespace }), directory: directory.path)
        #expect(clientEntries.count == 4)
        #expect(clientEntries[1]["frame"]?["open"]?["method"] == .string("/weft.v1.HealthService/Check"))
        #expect(clientEntries[1]["frame"]?["open"]?["timeout"]?["micros"] == .string("5000000"))
        #expect(clientEntries[2]["payloadType"] == .string("weft.v1.CheckRequest"))
        #expect(clientEntries[2]["payload"] == .object([.init("service", .string("weft.v1.SequencerService"))]))
        #expect(clientEntries[2]["prefix"] == .object([.init("flag", .number("0")), .init("length", .number("32"))]))

        // The server's side, from a file: no open frame, so --method, and the message is a response.
        let server = v["response-message"]! + v["close-ok"]! + v["close-not-found"]! + v["ping"]! + v["go-away"]!
        try directory.write("server.hex", server)
        let serverEntries = try await decodeRoundTrip(
            ["--file", "server.hex", "--method", "/weft.v1.HealthService/Check"], expecting: Self.bytes(server), directory: directory.path)
        #expect(serverEntries.first?["payload"] == .object([.init("status", .string("SERVING_STATUS_SERVING"))]))
        #expect(serverEntries[2]["frame"]?["close"]?["status"]?["errorId"] == .string("SEQUENCER_UNKNOWN_MEMBER"))
        #expect(serverEntries[3]["frame"]?["ping"]?["data"] == .string("42"))

        // Raw bytes with --binary; a field this schema does not know (15, varint 5) is shown and kept.
        var ping = Self.bytes(v["ping"]!)
        ping += [0x78, 0x05]
        ping[4] += 2
        try Data(ping).write(to: URL(fileURLWithPath: directory.path + "/ping.bin"))
        let unknown = try await decodeRoundTrip(["--binary", "--file", "ping.bin"], expecting: ping, directory: directory.path)
        #expect(unknown.first?["frame"]?["@unknown"] == .array([.object([
            .init("number", .number("15")), .init("wireType", .number("0")), .init("data", .string("BQ==")), .init("varint", .string("5")),
        ])]))

        // Text output, and a bare message with --type.
        let (textStatus, text, _) = try await WeftProcess.run(["decode", "--output", "text", client], directory: directory.path)
        #expect(textStatus == 0 && text.contains("open /weft.v1.HealthService/Check") && text.contains("\"service\": \"weft.v1.SequencerService\""), "\(text)")
        let (typeStatus, bare, _) = try await WeftProcess.run(["decode", "--type", "weft.v1.CheckResponse", "08 01"], directory: directory.path)
        #expect(typeStatus == 0 && bare == "{\"status\":\"SERVING_STATUS_SERVING\"}\n", "\(bare)")

        // Garbage: the byte offset and what was expected there, exit 1, never a crash.
        let garbage: [(input: [String], message: String)] = [
            (["zz"], "character 0 of the input ('z') is not a hexadecimal digit"),
            ([" \n"], "no bytes to decode"),
            (["000"], "odd number of hex digits"),
            (["0100000000"], "byte 0: expected a frame's flag byte 0"),
            ([v["ping"]! + "0000"], "byte 9: expected a 5-byte frame prefix"),
            ([String(v["go-away"]!.dropLast(2))], "byte 1: the frame's length is 4 bytes, but only 3 follow"),
            (["0000000002ffff"], "bytes 5…6: the 2-byte frame body is not a weft.v1.Frame"),
            (["--type", "weft.v1.CheckRequest", "0a05"], "are not a weft.v1.CheckRequest"),
        ]
        for (input, message) in garbage {
            let (status, _, errors) = try await WeftProcess.run(["decode"] + input, directory: directory.path)
            #expect(status == 1 && errors.contains(message), "\(input): \(status) \(errors)")
        }
        // A payload that is not the method's message: shown as such, and the exit status says so.
        let (misread, misreadOutput, misreadErrors) = try await WeftProcess.run(
            ["decode", "--method", "/weft.v1.HealthService/Check", "--direction", "request", v["response-message"]!], directory: directory.path)
        #expect(misread == 1 && misreadOutput.contains("not a weft.v1.CheckRequest") && misreadErrors.contains("did not decode"), "\(misreadOutput) \(misreadErrors)")
        var random = SystemRandomNumberGenerator()
        for round in 0..<3 {
            let noise = (0..<(round * 97 + 3)).map { _ in UInt8.random(in: 0...255, using: &random) }
            try Data([0, 0, 0, 0, UInt8(noise.count)] + noise).write(to: URL(fileURLWithPath: directory.path + "/noise.bin"))
            let (status, _, errors) = try await WeftProcess.run(["decode", "--binary", "--file", "noise.bin"], directory: directory.path)
            #expect(status == 0 || status == 1, "\(noise): \(status) \(errors)")
        }
        let (usage, _, usageErrors) = try await WeftProcess.run(["decode", "--type", "weft.v1.Nothing", "00"], directory: directory.path)
        #expect(usage == 64 && usageErrors.contains("no such message"), "\(usageErrors)")
    }

    @Test func callMakesUnaryAndStreamingCallsWithJSON() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            try directory.write("nodes.yaml", RunTests.configuration(databaseURL: fixture.url, domain: directory.domainID))
            let (migrated, _, migrateErrors) = try await WeftProcess.run(["db", "migrate", "-c", "nodes.yaml"], directory: directory.path)
            #expect(migrated == 0, "\(migrateErrors)")
            let node = try WeftProcess(["run", "-c", "nodes.yaml"], directory: directory.path)
            defer { if node.process.isRunning { node.signal(SIGTERM) } }
            let ready = try #require(await node.nextLine())
            let port = try #require(Int(ready.split(separator: ":").last?.split(separator: ",").first ?? ""), "\(ready)")
            let address = "127.0.0.1:\(port)"
            let tls = ["--root-cert", "certs/ca.pem"]
            func call(_ arguments: String...) async throws -> (Int32, String, String) {
                try await WeftProcess.run(["call", address] + arguments + tls, directory: directory.path)
            }

            // What the node serves, from its reflection service.
            let (listed, list, _) = try await call("list", "--output", "text")
            #expect(listed == 0 && list.contains("weft.v1.SequencerService") && list.contains("/weft.v1.HealthService/Watch (serverStreaming): weft.v1.WatchRequest → weft.v1.WatchResponse"), "\(list)")
            let (_, listJSON, _) = try await call("--list")
            let services = try JSONValue(parsing: listJSON)["services"]
            guard case .array(let entries)? = services else {
                Issue.record("no services in \(listJSON)")
                return
            }
            #expect(entries.contains { $0["name"] == .string("weft.v1.ReflectionService") })

            // Unary, JSON in and out (json and proto field names both accepted).
            let (checked, check, checkErrors) = try await call("/weft.v1.HealthService/Check", "--json", #"{"service": ""}"#)
            #expect(checked == 0 && check == "{\"status\":\"SERVING_STATUS_SERVING\"}\n", "\(check) \(checkErrors)")
            let (_, reflection, _) = try await call("/weft.v1.ReflectionService/GetDescriptorSet")
            let descriptorSet = try Weft.V1.GetDescriptorSetResponse(jsonText: reflection)
            #expect(descriptorSet.fileDescriptorSet == Weft.V1.descriptorSet && descriptorSet.services.contains("weft.v1.HealthService"))

            // A non-OK status: code, Weft error id and message on stderr, exit 1.
            try directory.write("unknown-service.json", #"{"service": "weft.v1.Nothing"}"#)
            let (notFound, _, notFoundErrors) = try await call("/weft.v1.HealthService/Check", "--json", "@unknown-service.json")
            #expect(notFound == 1 && notFoundErrors.contains("NOT_FOUND (5) HEALTH_UNKNOWN_SERVICE: "), "\(notFoundErrors)")

            // A server stream: JSON lines as they arrive, cut after --max-messages.
            let (watched, watch, watchErrors) = try await call("/weft.v1.HealthService/Watch", "--json", "{}", "--max-messages", "1")
            #expect(watched == 0 && watch == "{\"status\":\"SERVING_STATUS_SERVING\"}\n", "\(watch) \(watchErrors)")

            // Bad input is a usage error (64) that says where and what.
            let (malformed, _, malformedErrors) = try await call("/weft.v1.HealthService/Check", "--json", #"{"service": }"#)
            #expect(malformed == 64 && malformedErrors.contains("line 1, column 13"), "\(malformedErrors)")
            let (unknownField, _, unknownFieldErrors) = try await call("/weft.v1.HealthService/Check", "--json", #"{"servce": "x"}"#)
            #expect(unknownField == 64 && unknownFieldErrors.contains(#"unknown field "servce" in weft.v1.CheckRequest"#), "\(unknownFieldErrors)")
            let (unknownMethod, _, unknownMethodErrors) = try await call("/weft.v1.HealthService/Nope")
            #expect(unknownMethod == 64 && unknownMethodErrors.contains("serves no method /weft.v1.HealthService/Nope") && unknownMethodErrors.contains("weft.v1.HealthService"), "\(unknownMethodErrors)")
            node.signal(SIGTERM)
            #expect(await node.exitStatus() == 0)
        }
    }
}
