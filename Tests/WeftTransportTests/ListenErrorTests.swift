import Testing
import WeftCrypto
import WeftTransport

/// A node that cannot listen says where and what to do, instead of NIO's
/// "bind(descriptor:ptr:bytes:): Address already in use".
@Suite(.timeLimit(.minutes(5))) struct ListenErrorTests {
    @Test func aTakenPortIsNamedInTheError() async throws {
        let first = try await RPCTestNode.start { _ in }
        defer { first.close() }
        let tls = try TLSContext(
            .init(
                role: .server(requireClientCertificate: false),
                credentials: CertificateAuthority.issue(commonName: "node2", hostnames: ["localhost"], signedBy: first.ca)))
        do {
            let second = try await RPCServer.start(
                host: "127.0.0.1", port: first.port, security: .tls(tls), router: RPCRouter())
            await second.close()
            Issue.record("a second server listened on port \(first.port), which the first one holds")
        } catch let error as RPCListenError {
            #expect(error.addressInUse)
            #expect(error.port == first.port)
            #expect("\(error)".contains("127.0.0.1:\(first.port)"))
            #expect("\(error)".contains("in use by another process"))
        }
        // The first server is unharmed: it still answers.
        let client = try await first.connect()
        defer { client.channel.close(promise: nil) }
        let health = try await client.health.check(.init())
        #expect(health.status == .serving)
    }

    @Test func anAddressNotOfThisMachineIsNamedInTheError() async throws {
        // 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let tls = try TLSContext(
            .init(
                role: .server(requireClientCertificate: false),
                credentials: CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)))
        do {
            let server = try await RPCServer.start(host: "192.0.2.1", port: 0, security: .tls(tls), router: RPCRouter())
            await server.close()
            Issue.record("a server listened on 192.0.2.1, which is not an address of this machine")
        } catch let error as RPCListenError {
            #expect(!error.addressInUse)
            #expect("\(error)".contains("cannot listen on 192.0.2.1:0"))
        }
    }
}
