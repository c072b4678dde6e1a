import Foundation
import Testing
import WeftNode
import WeftStore
import WeftTestSupport

/// `weft domain bootstrap` writes what the domain owner needs, and `weft run` of its
/// domain.yaml bootstraps the domain: the sequencer knows the domain manager and the mediator.
@Suite(.timeLimit(.minutes(5))) struct DomainBootstrapTests {
    @Test func theWrittenDomainStartsAndBootstrapsAndNothingIsOverwritten() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let base = try ProcessDomain.freePort()
            let written = try await WeftProcess.run(
                ["domain", "bootstrap", "--name", "acme", "--dir", "domain", "--database-url", fixture.url, "--base-port", "\(base)",
                 "--output", "json"], directory: directory.path)
            #expect(written.0 == 0, "\(written.2)")
            let summary = try #require(
                try JSONSerialization.jsonObject(with: Data(written.1.utf8)) as? [String: Any], "\(written.1)")
            let domainID = try #require(summary["domain"] as? String)
            #expect(domainID.hasPrefix("acme::1220"))
            #expect(summary["sequencers"] as? [String] == ["localhost:\(base + 1)"])
            for file in ["certs/ca.pem", "certs/operator.pem", "keys/domain-namespace.pem", "keys/mediator-encryption.pem.pub", "domain.yaml"] {
                #expect(FileManager.default.fileExists(atPath: "\(directory.path)/domain/\(file)"), "\(file)")
            }
            let database = try #require(URLComponents(string: fixture.url)?.path.split(separator: "/").last)
            _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE \"\(database)_manager\"")

            let domain = try WeftProcess(["run", "-c", "domain.yaml", "--migrate"], directory: directory.path + "/domain")
            var ready: [String] = []
            for _ in 0..<3 {
                guard let line = await domain.nextLine() else { break }
                ready.append(line)
            }
            #expect(ready.contains { $0.contains("node domain-manager (domain manager of \(domainID))") }, "\(ready) \(domain.standardError)")
            let members = try await WeftProcess.run(
                ["domain-manager", "members", "--remote", "localhost:\(base)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem",
                 "--key", "certs/operator-key.pem", "--output", "json"], directory: directory.path + "/domain")
            #expect(members.0 == 0, "\(members.2)")
            #expect(members.1.contains("SEQ::\(domainID)") && members.1.contains("MED::\(domainID)"), "\(members.1)")
            domain.signal(SIGTERM)
            #expect(await domain.exitStatus() == 0, "\(domain.standardError.suffix(2000))")

            // A second bootstrap into the same directory writes nothing.
            let before = try String(contentsOfFile: directory.path + "/domain/domain.yaml", encoding: .utf8)
            let again = try await WeftProcess.run(
                ["domain", "bootstrap", "--dir", "domain", "--database-url", fixture.url], directory: directory.path)
            #expect(again.0 == 1 && again.2.contains("already holds"), "\(again.2)")
            #expect(try String(contentsOfFile: directory.path + "/domain/domain.yaml", encoding: .utf8) == before)
            #expect(try await WeftProcess.run(["domain", "bootstrap", "--sequencers", "0", "--database-url", fixture.url], directory: directory.path).0 == 64)
        }
    }

    /// The database URLs in domain.yaml carry passwords: the file is the owner's only, the
    /// summary printed masks them, and a password with YAML's special characters reads back
    /// as written (it was put between double quotes unescaped: `"` ended the string, `\t`
    /// became a tab).
    @Test func domainYAMLKeepsItsPasswordsPrivateAndExact() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        let url = #"postgresql://weft:pa"s\tw0rd@127.0.0.1:5432/weft"#
        let written = try await WeftProcess.run(
            ["domain", "bootstrap", "--name", "acme", "--dir", "domain", "--database-url", url], directory: directory.path)
        #expect(written.0 == 0, "\(written.2)")
        #expect(!written.1.contains("w0rd") && !written.2.contains("w0rd"), "\(written.1)")
        let path = directory.path + "/domain/domain.yaml"
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o600, "domain.yaml has mode \(String(mode, radix: 8))")
        let configuration = try Configuration.load(file: path, environment: [:], overrides: [])
        #expect(configuration.string("nodes.sequencer1.database.url") == url)
        // The manager's URL is derived (URLComponents), its password percent-encoded, which
        // libpq decodes.
        #expect(configuration.string("nodes.domain-manager.database.url") == "postgresql://weft:pa%22s%5Ctw0rd@127.0.0.1:5432/weft_manager")
    }
}
