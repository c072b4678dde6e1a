import Foundation
import Testing
import WeftCrypto

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

    /// Runs a command to completion; returns its exit status and output.
    @discardableResult
    func run(_ arguments: [String], input: String = "") throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = stdin
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test func chainVerifiesWithOpenSSL() throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let verified = try run(["openssl", "verify", "-CAfile", files.ca, files.node])
        #expect(verified.status == 0, "\(verified.output)")
        let refused = try run(["openssl", "verify", "-CAfile", files.otherCA, files.node])
        #expect(refused.status != 0)
        let text = try run(["openssl", "x509", "-in", files.node, "-noout", "-ext", "subjectAltName,extendedKeyUsage"]).output
        #expect(text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"))
        #expect(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"))
        // A P-256 key only signs (RFC 5480 allows no key encipherment for EC keys); the root signs
        // node certificates, never another CA.
        let usage = try run(["openssl", "x509", "-in", files.node, "-noout", "-ext", "keyUsage"]).output
        #expect(usage.contains("Digital Signature") && !usage.contains("Key Encipherment"), "\(usage)")
        let constraints = try run(["openssl", "x509", "-in", files.ca, "-noout", "-ext", "basicConstraints"]).output
        #expect(constraints.contains("CA:TRUE, pathlen:0"), "\(constraints)")
        // Keys are private files; certificates are public.
        #expect((try FileManager.default.attributesOfItem(atPath: files.nodeKey)[.posixPermissions] as? Int) == 0o600)
        #expect((try FileManager.default.attributesOfItem(atPath: files.node)[.posixPermissions] as? Int) == 0o644)
    }

    /// One TLS 1.3 handshake: `s_server` with the node certificate, `s_client`
    /// trusting `caFile` and expecting `hostname`. Returns s_client's exit status and output.
    func handshake(files: Files, caFile: String, hostname: String) throws -> (status: Int32, output: String) {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = [
            "openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-tls1_3", "-alpn", "weft/1",
            "-cert", files.node, "-key", files.nodeKey,
        ]
        let serverOutput = Pipe()
        server.standardOutput = serverOutput
        server.standardError = serverOutput
        server.standardInput = Pipe()
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
        }
        // s_server prints "ACCEPT 127.0.0.1:PORT" once listening.
        var seen = ""
        var port: String?
        while port == nil {
            let chunk = serverOutput.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            seen += String(decoding: chunk, as: UTF8.self)
            if let line = seen.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT") }) {
                port = line.split(separator: ":").last.map(String.init)
            }
        }
        let listening = try #require(port, "s_server did not start: \(seen)")
        return try run(
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(listening)", "-CAfile", caFile,
                "-verify_hostname", hostname, "-verify_return_error", "-tls1_3", "-alpn", "weft/1",
            ], input: "")
    }

    @Test func tls13HandshakeVerifiesAgainstTheDomainRoot() throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let ok = try handshake(files: files, caFile: files.ca, hostname: "localhost")
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("Verify return code: 0 (ok)"), "\(ok.output)")
        #expect(ok.output.contains("TLSv1.3"), "\(ok.output)")
        #expect(ok.output.contains("ALPN protocol: weft/1"), "\(ok.output)")
    }

    @Test func aClientTrustingAnotherRootRefuses() throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let refused = try handshake(files: files, caFile: files.otherCA, hostname: "localhost")
        #expect(refused.status != 0)
        #expect(refused.output.contains("unable to get local issuer certificate") || refused.output.contains("verify error"), "\(refused.output)")
    }

    @Test func aHostnameNotInTheCertificateIsRefused() throws {
        let files = try makeFiles()
        defer { try? FileManager.default.removeItem(atPath: files.directory) }
        let refused = try handshake(files: files, caFile: files.ca, hostname: "sequencer.example")
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
