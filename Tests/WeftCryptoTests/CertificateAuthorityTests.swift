import Foundation
import Testing
import WeftCrypto
import WeftTestSupport

/// Certificates from `CertificateAuthority` work for real TLS 1.3 between
/// independent peers: OpenSSL's own `s_server` and `s_client` on loopback.
@Suite struct CertificateAuthorityTests {
    struct Files {
        let directory: String
        var ca: String { directory + "/ca.pem" }
        var otherCA: String { directory + "/other-ca.pem" }
        var node: String { directory + "/node.pem" }
        var nodeKey: String { directory + "/node-key.pem" }
    }

    func makeFiles() throws -> Files {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-ca-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = Files(directory: directory)
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        try ca.write(certificateTo: files.ca, keyTo: directory + "/ca-key.pem")
        let other = try CertificateAuthority.makeRoot(commonName: "someone else")
        try other.write(certificateTo: files.otherCA, keyTo: directory + "/other-ca-key.pem")
        let node = try CertificateAuthority.issue(
            commonName: "sequencer1", hostnames: ["localhost", "127.0.0.1"],
            signedBy: TLSCredentials.read(certificateAt: files.ca, keyAt: directory + "/ca-key.pem"))
        try node.write(certificateTo: files.node, keyTo: files.nodeKey)
        return files
    }

    /// Runs a command to completion off the concurrency pool (`TestSubprocess`), with empty
    /// standard input; returns its exit status and output (standard output and error together).
    @discardableResult
    func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let outcome = try await TestSubprocess.run(arguments, mergingError: true)
        return (outcome.status, outcome.output)
    }

    @Test func chainVerifiesWithOpenSSL() async throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let verified = try await run(["openssl", "verify", "-CAfile", files.ca, files.node])
        #expect(verified.status == 0, "\(verified.output)")
        let refused = try await run(["openssl", "verify", "-CAfile", files.otherCA, files.node])
        #expect(refused.status != 0)
        let text = try await run(["openssl", "x509", "-in", files.node, "-noout", "-ext", "subjectAltName,extendedKeyUsage"]).output
        #expect(text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"))
        #expect(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"))
        // A P-256 key only signs (RFC 5480 allows no key encipherment for EC keys); the root signs
        // node certificates, never another CA.
        let usage = try await run(["openssl", "x509", "-in", files.node, "-noout", "-ext", "keyUsage"]).output
        #expect(usage.contains("Digital Signature") && !usage.contains("Key Encipherment"), "\(usage)")
        let constraints = try await run(["openssl", "x509", "-in", files.ca, "-noout", "-ext", "basicConstraints"]).output
        #expect(constraints.contains("CA:TRUE, pathlen:0"), "\(constraints)")
        // Keys are private files; certificates are public.
        #expect((try FileManager.default.attributesOfItem(atPath: files.nodeKey)[.posixPermissions] as? Int) == 0o600)
        #expect((try FileManager.default.attributesOfItem(atPath: files.node)[.posixPermissions] as? Int) == 0o644)
    }

    /// One TLS 1.3 handshake: `s_server` with the node certificate, `s_client`
    /// trusting `caFile` and expecting `hostname`. Returns s_client's exit status and output.
    ///
    /// No wait holds a concurrency pool thread: s_server's output is read by a thread of its
    /// own (`TestSubprocess.lines`), s_client runs through `TestSubprocess`, and the server's
    /// exit is awaited through its termination handler.
    func handshake(files: Files, caFile: String, hostname: String) async throws -> (status: Int32, output: String) {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = [
            "openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-tls1_3", "-alpn", "weft/1",
            "-cert", files.node, "-key", files.nodeKey,
        ]
        let serverOutput = Pipe()
        server.standardOutput = serverOutput
        server.standardError = serverOutput
        // A pipe nobody writes to, left open: s_server ends its session when its standard input ends.
        server.standardInput = Pipe()
        let exited = AsyncStream<Never>.makeStream()
        server.terminationHandler = { _ in exited.continuation.finish() }
        try server.run()
        let lines = TestSubprocess.lines(of: serverOutput)
        // `defer` cannot await: the outcome is kept while the server is stopped and reaped.
        let outcome: Result<(status: Int32, output: String), any Error>
        do {
            // s_server prints "ACCEPT 127.0.0.1:PORT" once listening.
            var seen = ""
            var port: String?
            for await line in lines {
                seen += line + "\n"
                if line.hasPrefix("ACCEPT") {
                    port = line.split(separator: ":").last.map(String.init)
                    break
                }
            }
            let listening = try #require(port, "s_server did not start: \(seen)")
            outcome = .success(
                try await run([
                    "openssl", "s_client", "-connect", "127.0.0.1:\(listening)", "-CAfile", caFile,
                    "-verify_hostname", hostname, "-verify_return_error", "-tls1_3", "-alpn", "weft/1",
                ]))
        } catch {
            outcome = .failure(error)
        }
        if server.isRunning { server.terminate() }
        for await _ in exited.stream {}
        return try outcome.get()
    }

    @Test func tls13HandshakeVerifiesAgainstTheDomainRoot() async throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let ok = try await handshake(files: files, caFile: files.ca, hostname: "localhost")
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("Verify return code: 0 (ok)"), "\(ok.output)")
        #expect(ok.output.contains("TLSv1.3"), "\(ok.output)")
        #expect(ok.output.contains("ALPN protocol: weft/1"), "\(ok.output)")
    }

    @Test func aClientTrustingAnotherRootRefuses() async throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let refused = try await handshake(files: files, caFile: files.otherCA, hostname: "localhost")
        #expect(refused.status != 0)
        #expect(refused.output.contains("unable to get local issuer certificate") || refused.output.contains("verify error"), "\(refused.output)")
    }

    @Test func aHostnameNotInTheCertificateIsRefused() async throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let refused = try await handshake(files: files, caFile: files.ca, hostname: "sequencer.example")
        #expect(refused.status != 0)
        #expect(refused.output.contains("hostname mismatch"), "\(refused.output)")
    }

    @Test func issuingNeedsAValidHostname() throws {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        #expect(throws: CryptoError.self) { try CertificateAuthority.issue(commonName: "n", hostnames: [], signedBy: ca) }
        #expect(throws: CryptoError.self) { try CertificateAuthority.issue(commonName: "n", hostnames: ["a,b"], signedBy: ca) }
        #expect(throws: CryptoError.self) { try CertificateAuthority.issue(commonName: "n", hostnames: ["a:b"], signedBy: ca) }
        #expect(try CertificateAuthority.issue(commonName: "n", hostnames: ["::1"], signedBy: ca).certificatePEM.contains("BEGIN CERTIFICATE"))
    }
}
