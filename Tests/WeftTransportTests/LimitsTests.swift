import NIOCore
import Testing
@testable import WeftTransport
import WeftWire

/// Every limit of `RPCConfiguration` refuses what passes it with a status,
/// and the connection goes on serving.
@Suite(.timeLimit(.minutes(5))) struct LimitsTests {
    /// Check("hold") works until cancelled, reporting "started"/"stopped"; anything else answers at once.
    func startNode(_ configuration: RPCConfiguration, events: AsyncStream<String>.Continuation) async throws -> RPCTestNode {
        try await RPCTestNode.start(configuration: configuration) { router in
            router.register(Weft.V1.HealthService.check) { request, _ in
                guard request.service == "hold" else { return .init(status: .serving, detail: request.service) }
                events.yield("started")
                do {
                    try await waitUntilCancelled()
                } catch {
                    events.yield("stopped")
                    throw error
                }
                return .init(status: .serving)
            }
        }
    }

    @Test func moreConcurrentStreamsThanAllowedAreRefusedThenServedWhenOneEnds() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.maximumConcurrentStreams = 2
        let (events, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(configuration, events: continuation)
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        var iterator = events.makeAsyncIterator()
        let first = Task { try await client.unary(Weft.V1.HealthService.check, .init(service: "hold")) }
        #expect(await iterator.next() == "started")
        let second = Task { try await client.unary(Weft.V1.HealthService.check, .init(service: "hold")) }
        #expect(await iterator.next() == "started")
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: "third"))
        } throws: { error in
            (error as? RPCError)?.code == .resourceExhausted && (error as? RPCError)?.errorID == "RPC_TOO_MANY_STREAMS"
        }
        first.cancel()
        #expect(await iterator.next() == "stopped")
        #expect(try await client.unary(Weft.V1.HealthService.check, .init(service: "fourth")).detail == "fourth")
        second.cancel()
        _ = await (first.result, second.result)
    }

    @Test func metadataOverTheLimitIsRefused() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.maximumMetadataBytes = 1024
        let (_, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(configuration, events: continuation)
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        // 32 + 13 + 979 bytes: exactly the limit, served.
        let fits = [Weft.V1.MetadataEntry(key: "authorization", value: .textValue(String(repeating: "a", count: 979)))]
        #expect(try await client.unary(Weft.V1.HealthService.check, .init(service: "ok"), metadata: fits).status == .serving)
        let over = [Weft.V1.MetadataEntry(key: "authorization", value: .textValue(String(repeating: "a", count: 980)))]
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: "ok"), metadata: over)
        } throws: { error in
            (error as? RPCError)?.code == .resourceExhausted && (error as? RPCError)?.errorID == "RPC_METADATA_TOO_LARGE"
        }
        #expect(try await client.unary(Weft.V1.HealthService.check, .init(service: "again")).detail == "again")
    }

    @Test func aMessageOverTheFrameLimitIsRefusedBeforeItIsSent() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.maximumFrameBytes = 64 * 1024
        let (_, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(configuration, events: continuation)
        defer { node.close() }
        let client = try await node.connect(configuration: configuration)
        defer { client.channel.close(promise: nil) }
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: String(repeating: "s", count: 64 * 1024)))
        } throws: { error in
            (error as? RPCError)?.code == .resourceExhausted && (error as? RPCError)?.errorID == "RPC_MESSAGE_TOO_LARGE"
        }
        // A response over the limit ends the call with the same status; the connection goes on.
        // The request (4 bytes of framing + the string) is exactly at the limit; the response, 2 bytes over.
        let big = String(repeating: "r", count: configuration.maximumMessageBytes - 4)
        #expect(try Weft.V1.CheckRequest(service: big).serializedBytes().count == configuration.maximumMessageBytes)
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: big))
        } throws: { error in
            (error as? RPCError)?.code == .resourceExhausted && (error as? RPCError)?.errorID == "RPC_MESSAGE_TOO_LARGE"
        }
        #expect(try await client.unary(Weft.V1.HealthService.check, .init(service: "small")).detail == "small")
    }

    @Test func connectionsBeyondTheMaximumAreClosedAtOnce() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.maximumConnections = 2
        let node = try await RPCTestNode.start(configuration: configuration) { _ in }
        defer { node.close() }
        let first = try await node.connect()
        let second = try await node.connect()
        for client in [first, second] { _ = try await client.unary(Weft.V1.HealthService.check, .init()) }
        // A third is closed before its handshake: its call fails, the two others go on.
        let third = try await node.connect()
        await #expect(throws: RPCError.self) { _ = try await third.unary(Weft.V1.HealthService.check, .init()) }
        _ = try await second.unary(Weft.V1.HealthService.check, .init())
        // Once one closes, a new connection is served.
        try await first.channel.close()
        var served = false
        for _ in 0..<200 where !served {
            let client = try await node.connect()
            served = (try? await client.unary(Weft.V1.HealthService.check, .init())) != nil
            try? await client.channel.close()
            if !served { try await Task.sleep(for: .milliseconds(10)) }  // the server sees the close on its own loop
        }
        #expect(served)
        try? await second.channel.close()
    }

    /// One address holds at most `maximumConnectionsPerAddress`: one more from it is closed at
    /// accept, while another address is still served, and once one closes the address is
    /// served again. Before, one host could take every connection the server allowed.
    @Test func connectionsFromOneAddressBeyondItsMaximumAreClosedAndOthersServed() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.maximumConnectionsPerAddress = 2
        let node = try await RPCTestNode.start(configuration: configuration) { _ in }
        defer { node.close() }
        /// Whether the server answers a ping on `connection` (the stream ends when it closes it).
        func answered(_ connection: RawFrameConnection) async -> Bool {
            connection.send([.init(streamID: 0, kind: .ping(.init(data: 7)))])
            for await frame in connection.frames {
                if case .pong? = frame.kind { return true }
            }
            return false
        }
        let first = try await node.rawConnection()
        let second = try await node.rawConnection()
        #expect(await answered(first))
        #expect(await answered(second))
        let third = try await node.rawConnection()
        #expect(await !answered(third), "a third connection from 127.0.0.1 was served")
        #if os(Linux)  // all of 127/8 is loopback there; macOS has only 127.0.0.1 unless configured
        let elsewhere = try await node.rawConnection(from: "127.0.0.2")
        #expect(await answered(elsewhere), "another address was refused")
        #endif
        // Once one closes, the address is served again.
        first.close()
        var served = false
        for _ in 0..<200 where !served {
            let connection = try await node.rawConnection()
            served = await answered(connection)
            connection.close()
            if !served { try await Task.sleep(for: .milliseconds(10)) }  // the server sees the close on its own loop
        }
        #expect(served)
        second.close()
        #if os(Linux)
        elsewhere.close()
        #endif
    }

    /// What counts as one address: an IPv4 address; an IPv6 address's /64 (a host may use any
    /// address of the /64 it is routed), so that one host cannot pass the limit by changing its
    /// interface id; an IPv4-mapped IPv6 address as its IPv4 address, not as the /64 that every
    /// IPv4 client of a dual-stack listener shares.
    @Test func theLimitCountsIPv4AddressesAndIPv6Slash64s() throws {
        func key(_ ip: String) throws -> String { ConnectionRegistry.addressKey(try SocketAddress(ipAddress: ip, port: 443)) }
        #expect(try key("192.0.2.7") == "192.0.2.7")
        #expect(try key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff:eeee:dddd:cccc"))
        #expect(try key("2001:db8:1:2::1") == "2001:0db8:0001:0002::/64")
        #expect(try key("2001:db8:1:2::1") != key("2001:db8:1:3::1"))
        #expect(try key("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(try key("::ffff:192.0.2.7") != key("::ffff:192.0.2.8"))
        // Link-local: the same /64 on every link, so counted per link (its interface).
        #expect(try key("fe80::1") == key("fe80::2") && key("fe80::1") == "fe80:0000:0000:0000::/64%0")
        #expect(ConnectionRegistry.addressKey(nil) == "")
    }

    /// Entries with neither key nor value are 2 bytes on the wire each but far more in the
    /// server's memory, held for the call: each counts 32 bytes, so 50,000 of them are refused.
    @Test func manyEmptyMetadataEntriesAreRefused() async throws {
        let node = try await RPCTestNode.start { router in
            router.register(Weft.V1.HealthService.check) { _, _ in .init(status: .serving) }
        }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        // 520 entries of 2 bytes each on the wire count 32 bytes each: over the 16 KiB limit.
        let empty = [Weft.V1.MetadataEntry](repeating: .init(), count: 520)
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(), metadata: empty)
        } throws: { error in
            (error as? RPCError)?.code == .resourceExhausted && (error as? RPCError)?.errorID == "RPC_METADATA_TOO_LARGE"
        }
        // 50,000 of them (100 KB) never get that far: decoding the frame would take more memory
        // than its decode budget allows, and the connection is refused (docs/wire-protocol.md §2).
        let flood = [Weft.V1.MetadataEntry](repeating: .init(), count: 50_000)
        let other = try await node.connect()
        defer { other.channel.close(promise: nil) }
        await #expect {
            _ = try await other.unary(Weft.V1.HealthService.check, .init(), metadata: flood)
        } throws: { error in
            (error as? RPCError)?.errorID == "RPC_PROTOCOL_ERROR" && "\(error)".contains("decode memory budget")
        }
    }

    @Test func metadataThatCannotBeEncodedFailsTheCallAtTheClient() async throws {
        let node = try await RPCTestNode.start { _ in }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        await #expect {
            _ = try await client.unary(
                Weft.V1.HealthService.check, .init(), metadata: [.init(key: "note", value: .textValue("a\u{0}b"))])
        } throws: { ($0 as? RPCError)?.errorID == "RPC_INVALID_METADATA" }
        await #expect {
            _ = try await client.unary(
                Weft.V1.HealthService.check, .init(),
                metadata: [.init(key: "note", value: .textValue(String(repeating: "x", count: 20_000)))])
        } throws: { ($0 as? RPCError)?.errorID == "RPC_METADATA_TOO_LARGE" }
        // Nothing was sent: the connection serves the next call.
        _ = try await client.unary(Weft.V1.HealthService.check, .init())
    }

    @Test func aFrameOverTheServersLimitFailsTheCallWithTheServersReason() async throws {
        var serverConfiguration = RPCTestNode.testConfiguration
        serverConfiguration.maximumFrameBytes = 1 << 20
        let node = try await RPCTestNode.start(configuration: serverConfiguration) { router in
            router.register(Weft.V1.HealthService.check) { _, _ in .init(status: .serving) }
        }
        defer { node.close() }
        // The client's own limit is the default 4 MiB: it sends 2 MiB of metadata's worth in
        // a request the server's 1 MiB refuses from the length prefix.
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        let big = Weft.V1.CheckRequest(service: String(repeating: "s", count: 2 << 20))
        await #expect {
            _ = try await client.unary(Weft.V1.HealthService.check, big)
        } throws: { error in
            // A lost connection to its callers (they reconnect), with the server's reason.
            let error = error as? RPCError
            return error?.code == .unavailable && error?.errorID == "RPC_FRAME_TOO_LARGE"
                && error?.message.contains("received message larger than max") == true
        }
    }

    @Test func aStatusAlwaysEncodesWhateverItsMessage() throws {
        // A handler's message could be long or (from bytes) hold a NUL: its close must still go out.
        let error = RPCError(.internal, String(repeating: "é", count: 5_000) + "\u{0}tail", errorID: "X")
        let status = error.status
        #expect(status.message.utf8.count <= 4_096 && !status.message.utf8.contains(0))
        #expect(status.message.hasSuffix("…"))
        #expect(throws: Never.self) { _ = try Weft.V1.Frame(streamID: 1, kind: .close(.init(status: status))).serializedBytes() }
        #expect(RPCError(.internal, "short", errorID: "X").status.message == "short")
    }
}
