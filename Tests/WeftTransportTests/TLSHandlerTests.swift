import Foundation
import NIOCore
import NIOPosix
import Testing
import WeftCrypto
import WeftTestSupport
import WeftTransport

/// TLS 1.3 on OpenSSL through `TLSHandler`, over real TCP on loopback, with
/// certificates from `CertificateAuthority`.
@Suite(.timeLimit(.minutes(5))) struct TLSHandlerTests {
    struct PKI {
        let ca: TLSCredentials
        let otherCA: TLSCredentials
        let server: TLSCredentials
        let client: TLSCredentials

        init() throws {
            ca = try CertificateAuthority.makeRoot(commonName: "domain1")
            otherCA = try CertificateAuthority.makeRoot(commonName: "someone else")
            server = try CertificateAuthority.issue(commonName: "sequencer1", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
            client = try CertificateAuthority.issue(commonName: "participant1", hostnames: ["participant1.local"], signedBy: ca)
        }
    }

    /// Echoes every byte back.
    final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    }

    /// Collects `expected` bytes, and the handshake event and any error.
    /// Made before the channel exists, then touched only on its event loop.
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let expected: Int
        let done: EventLoopPromise<[UInt8]>
        let handshake: EventLoopPromise<String>
        var received: [UInt8] = []

        init(expected: Int, eventLoop: any EventLoop) {
            self.expected = expected
            done = eventLoop.makePromise()
            handshake = eventLoop.makePromise()
        }

        var doneCompleted = false
        var handshakeCompleted = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += unwrapInboundIn(data).readableBytesView
            if received.count >= expected { finish(.success(received)) }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let completed = event as? TLSHandshakeCompleted, !handshakeCompleted {
                handshakeCompleted = true
                handshake.succeed(completed.applicationProtocol)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { fail(error) }

        func channelInactive(context: ChannelHandlerContext) { fail(ChannelError.ioOnClosedChannel) }

        /// Completes each promise exactly once.
        private func finish(_ result: Result<[UInt8], any Error>) {
            guard !doneCompleted else { return }
            doneCompleted = true
            done.completeWith(result)
        }

        private func fail(_ error: any Error) {
            finish(.failure(error))
            if !handshakeCompleted {
                handshakeCompleted = true
                handshake.fail(error)
            }
        }
    }

    /// Records the first error a server connection sees.
    final class ServerErrors: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let first: EventLoopPromise<any Error>
        init(_ promise: EventLoopPromise<any Error>) { first = promise }
        /// Shared by a server's connections: the first error wins (NIO ignores
        /// completing a completed promise).
        func errorCaught(context: ChannelHandlerContext, error: any Error) { first.succeed(error) }
    }

    let group = MultiThreadedEventLoopGroup.singleton

    func startServer(_ configuration: TLSConfiguration, handshakeTimeout: TimeAmount = .seconds(10), errors: EventLoopPromise<any Error>? = nil)
        async throws -> Channel
    {
        let context = try TLSContext(configuration)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, handshakeTimeout: handshakeTimeout))
                    if let errors { try channel.pipeline.syncOperations.addHandler(ServerErrors(errors)) }
                    try channel.pipeline.syncOperations.addHandler(Echo())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Connects, sends `payload`, and returns the echo (or the error).
    func roundTrip(port: Int, _ configuration: TLSConfiguration, payload: [UInt8]) async throws -> (protocolID: String, echo: [UInt8]) {
        let context = try TLSContext(configuration)
        let loop = group.next()
        let collector = Collector(expected: payload.count, eventLoop: loop)
        let done = collector.done.futureResult
        let handshake = collector.handshake.futureResult
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        // Written before the handshake completes: held, then sent. Its own result is not
        // awaited: if the handshake fails first, the write fails as "closed channel", and
        // the TLS error that matters arrives through the pipeline (the collector).
        channel.writeAndFlush(ByteBuffer(bytes: payload), promise: nil)
        let protocolID = try await handshake.get()
        return (protocolID, try await done.get())
    }

    @Test func handshakeAndEchoOverTLS13() async throws {
        let pki = try PKI()
        let server = try await startServer(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        defer { server.close(promise: nil) }
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }  // several TLS records
        let result = try await roundTrip(
            port: server.localAddress!.port!, .init(role: .client(serverHostname: "localhost"), trustRootsPEM: pki.ca.certificatePEM),
            payload: payload)
        #expect(result.protocolID == "weft/1")
        #expect(result.echo == payload)
        // By IP address too (the certificate names 127.0.0.1).
        let byIP = try await roundTrip(
            port: server.localAddress!.port!, .init(role: .client(serverHostname: "127.0.0.1"), trustRootsPEM: pki.ca.certificatePEM),
            payload: [1, 2, 3])
        #expect(byIP.echo == [1, 2, 3])
    }

    @Test func aWrongRootAndAWrongHostnameAreRefused() async throws {
        let pki = try PKI()
        let server = try await startServer(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        defer { server.close(promise: nil) }
        let port = server.localAddress!.port!
        await #expect {
            _ = try await roundTrip(port: port, .init(role: .client(serverHostname: "localhost"), trustRootsPEM: pki.otherCA.certificatePEM), payload: [1])
        } throws: { error in
            guard case .handshakeFailed(_, let verification?) = error as? TLSError else { return false }
            return verification.contains("unable to get local issuer certificate")
        }
        await #expect {
            _ = try await roundTrip(port: port, .init(role: .client(serverHostname: "sequencer9.example"), trustRootsPEM: pki.ca.certificatePEM), payload: [1])
        } throws: { error in
            guard case .handshakeFailed(_, let verification?) = error as? TLSError else { return false }
            return verification.contains("hostname mismatch")
        }
    }

    @Test func mutualTLSRequiresAClientCertificate() async throws {
        let pki = try PKI()
        let serverErrors = group.next().makePromise(of: (any Error).self)
        let server = try await startServer(
            .init(role: .server(requireClientCertificate: true), credentials: pki.server, trustRootsPEM: pki.ca.certificatePEM),
            errors: serverErrors)
        defer { server.close(promise: nil) }
        let port = server.localAddress!.port!
        let withCertificate = try await roundTrip(
            port: port, .init(role: .client(serverHostname: "localhost"), credentials: pki.client, trustRootsPEM: pki.ca.certificatePEM),
            payload: [7, 8, 9])
        #expect(withCertificate.echo == [7, 8, 9])
        // Without a certificate: the server refuses (TLS 1.3 checks it after the client's Finished).
        await #expect(throws: (any Error).self) {
            _ = try await roundTrip(port: port, .init(role: .client(serverHostname: "localhost"), trustRootsPEM: pki.ca.certificatePEM), payload: [1])
        }
        let serverError = try await serverErrors.futureResult.get()
        #expect("\(serverError)".contains("certificate"), "\(serverError)")
    }

    @Test func aClientThatNeverFinishesTheHandshakeIsClosedAtTheTimeout() async throws {
        let pki = try PKI()
        let serverErrors = group.next().makePromise(of: (any Error).self)
        let server = try await startServer(
            .init(role: .server(requireClientCertificate: false), credentials: pki.server), handshakeTimeout: .milliseconds(200),
            errors: serverErrors)
        defer { server.close(promise: nil) }
        // A plain TCP client that sends nothing.
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        defer { silent.close(promise: nil) }
        let error = try await serverErrors.futureResult.get()
        #expect(error as? TLSError == .handshakeTimeout)
        try await silent.closeFuture.get()  // the server closed it
    }

    @Test func unusableConfigurationsAreRefusedUpFront() throws {
        let pki = try PKI()
        #expect(throws: TLSError.configuration("a server needs a certificate and key")) {
            try TLSContext(.init(role: .server(requireClientCertificate: false)))
        }
        #expect(throws: TLSError.configuration("mutual TLS needs the roots client certificates must chain to")) {
            try TLSContext(.init(role: .server(requireClientCertificate: true), credentials: pki.server))
        }
        // A key that does not belong to the certificate.
        let mismatched = TLSCredentials(certificatePEM: pki.server.certificatePEM, privateKeyPEM: pki.client.privateKeyPEM)
        #expect(throws: TLSError.self) { try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: mismatched)) }
        #expect(throws: TLSError.self) {
            try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: "not a certificate"))
        }
        #expect(throws: TLSError.self) {
            try TLSContext(.init(role: .client(serverHostname: "localhost"), keyLogPath: "/nonexistent-directory/keylog.txt"))
        }
    }

    @Test func keyLogHasNSSLinesForTheSession() async throws {
        let pki = try PKI()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-keylog-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let server = try await startServer(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        defer { server.close(promise: nil) }
        _ = try await roundTrip(
            port: server.localAddress!.port!,
            .init(role: .client(serverHostname: "localhost"), trustRootsPEM: pki.ca.certificatePEM, keyLogPath: path), payload: [1])
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let labels = Set(lines.map { String($0.split(separator: " ")[0]) })
        #expect(labels.isSuperset(of: ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"]))
        for line in lines {
            let fields = line.split(separator: " ")
            #expect(fields.count == 3 && fields[1].count == 64 && fields[2].count == 96, "\(line)")  // client random, SHA-384 secret
        }
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
    }

    /// Runs `openssl s_client` against `port` trusting the PKI's root, off the concurrency pool
    /// (`TestSubprocess`: its empty standard input ends the session after the handshake); returns
    /// its exit status and output (standard output and error together).
    func sClient(port: Int, pki: PKI, _ extra: [String] = []) async throws -> (status: Int32, output: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-sclient-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try pki.ca.certificatePEM.write(toFile: directory + "/ca.pem", atomically: true, encoding: .utf8)
        let outcome = try await TestSubprocess.run(
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-alpn", "weft/1", "-CAfile", directory + "/ca.pem",
                "-verify_hostname", "localhost", "-verify_return_error", "-showcerts",
            ] + extra, mergingError: true)
        return (outcome.status, outcome.output)
    }

    @Test func opensslSClientCompletesAHandshakeWithAWeftServer() async throws {
        let pki = try PKI()
        let server = try await startServer(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        defer { server.close(promise: nil) }
        let (status, text) = try await sClient(port: server.localAddress!.port!, pki: pki)
        #expect(status == 0, "\(text)")
        #expect(text.contains("ALPN protocol: weft/1"), "\(text)")
        #expect(text.contains("Verify return code: 0 (ok)"), "\(text)")
        #expect(text.contains("CN = sequencer1"), "\(text)")
        #expect(text.contains("TLSv1.3"), "\(text)")
    }

    @Test func tls12IsRefusedUnlessConfigured() async throws {
        let pki = try PKI()
        // By default a TLS 1.2 client is refused during the handshake.
        let strict = try await startServer(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        defer { strict.close(promise: nil) }
        let refused = try await sClient(port: strict.localAddress!.port!, pki: pki, ["-tls1_2"])
        #expect(refused.status != 0, "\(refused.output)")
        #expect(refused.output.contains("protocol version") || refused.output.contains("no protocols available"), "\(refused.output)")
        // With the opt-in, the same client negotiates TLS 1.2, ALPN and a verified chain.
        var configuration = TLSConfiguration(role: .server(requireClientCertificate: false), credentials: pki.server)
        configuration.minimumVersion = .v1_2
        let lenient = try await startServer(configuration)
        defer { lenient.close(promise: nil) }
        let accepted = try await sClient(port: lenient.localAddress!.port!, pki: pki, ["-tls1_2"])
        #expect(accepted.status == 0, "\(accepted.output)")
        #expect(accepted.output.contains("Protocol  : TLSv1.2") || accepted.output.contains("TLSv1.2"), "\(accepted.output)")
        #expect(accepted.output.contains("ALPN protocol: weft/1"), "\(accepted.output)")
        #expect(accepted.output.contains("Verify return code: 0 (ok)"), "\(accepted.output)")
    }
}
