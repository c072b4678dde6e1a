import Foundation
import Testing
import WeftTestSupport

/// `weft script` runs a bootstrap headless and stops at the first failing step; `weft
/// --generate-completion-script` gives the shells' completions.
@Suite(.timeLimit(.minutes(5))) struct ScriptTests {
    @Test func aScriptRunsItsStepsKeepsOutputsAndStopsAtTheFirstFailure() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        try directory.write(
            "participant1.yaml",
            """
            nodes:
              participant1:
                kind: participant
                listen: 127.0.0.1:0
                tls: { plaintext: true }
                database: { url: "postgresql://nobody@127.0.0.1:1/none" }
            """)
        try directory.write(
            "bootstrap.weft",
            """
            # participant1's first steps, kept for automation
            let ID = participant id -c participant1.yaml
            keys generate --out "copy of ${ID}.pem"   # a key named after the id
            weft certs init-ca --name 'domain one' --dir ca
            keys generate --kind nonsense --out never.pem
            keys generate --out after-the-failure.pem
            """)
        let (status, output, error) = try await WeftProcess.run(["script", "bootstrap.weft"], directory: directory.path)
        #expect(status == 1, "\(output)\n\(error)")
        // The id the first step printed named the second step's file.
        let id = try #require(output.split(separator: "\n").first { $0.hasPrefix("+ weft keys generate --out ") })
        #expect(id.contains("'copy of participant1::1220"), "\(output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(files.contains { $0.hasPrefix("copy of participant1::1220") && $0.hasSuffix(".pem") }, "\(files)")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/ca/ca.pem"))
        // The failing step is named; nothing after it ran.
        #expect(error.contains("bootstrap.weft:5:") && error.contains("exited 64"), "\(error)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/after-the-failure.pem"))
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/never.pem"))
    }

    @Test func aScriptThatDoesNotParseOrUsesAnUnsetNameRunsNothing() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        try directory.write("open-quote.weft", "keys generate --out first.pem\nkeys generate --out 'unclosed.pem\n")
        let (status, _, error) = try await WeftProcess.run(["script", "open-quote.weft"], directory: directory.path)
        #expect(status == 64 && error.contains("open-quote.weft:2:") && error.contains("unclosed quote"), "\(error)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/first.pem"))

        try directory.write("unset.weft", "keys generate --out ${NOT_SET_ANYWHERE}.pem\n")
        let unset = try await WeftProcess.run(["script", "unset.weft"], directory: directory.path)
        #expect(unset.0 == 1 && unset.2.contains("${NOT_SET_ANYWHERE} is not set"), "\(unset.2)")

        try directory.write("let.weft", "let = keys generate\n")
        let badLet = try await WeftProcess.run(["script", "let.weft"], directory: directory.path)
        #expect(badLet.0 == 64 && badLet.2.contains("let NAME = COMMAND"), "\(badLet.2)")
    }

    @Test func shellCompletionsCoverTheVerbs() async throws {
        let directory = FileManager.default.temporaryDirectory.path
        for shell in ["bash", "zsh", "fish"] {
            let (status, script, error) = try await WeftProcess.run(["--generate-completion-script", shell], directory: directory)
            #expect(status == 0, "\(shell): \(error)")
            for verb in ["connect-multi", "set-state", "transactions", "script"] {
                #expect(script.contains(verb), "\(shell) completions lack \(verb)")
            }
        }
        // The bash script is valid bash.
        let (_, bash, _) = try await WeftProcess.run(["--generate-completion-script", "bash"], directory: directory)
        let file = directory + "/weft-completion-\(UUID()).bash"
        try bash.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let check = try await TestSubprocess.run(["bash", "-n", file])
        #expect(check.status == 0, "\(check.error)")
    }
}
