import Foundation
import Testing
import WeftStore
import WeftTestSupport

/// The README's main command works, says what it should, and stops cleanly on Ctrl-C or SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DemoTests {
    /// The lines of `output` from the line starting with `from` up to the next line starting
    /// with `to` (or the end).
    static func section(_ output: String, from: String, to: String) -> String {
        var lines: [Substring] = []
        var inside = false
        for line in output.split(separator: "\n") {
            if line.hasPrefix(to) && inside { break }
            if line.hasPrefix(from) { inside = true }
            if inside { lines.append(line) }
        }
        return lines.joined(separator: "\n")
    }

    @Test func theDemoRunsAnIOUAndADvPAcrossThreeParticipantsAndTheDomainHoldsCiphertextOnly() async throws {
        let directory = FileManager.default.temporaryDirectory.path
        let (status, output, error) = try await WeftProcess.run(["demo"], directory: directory)
        #expect(status == 0, "\(output)\n\(error)")
        #expect(output.contains("refused before the domain owner allow-lists it") && output.contains("SEQUENCER_NOT_ALLOW_LISTED"), "\(output)")
        for node in ["sequencer1 (sequencer 0)", "sequencer2 (sequencer 1)", "domain-manager (domain manager", "mediator1 (mediator"] {
            #expect(output.contains("node \(node)"), "\(node): \(output)")
        }
        // Each participant sees its part of the DvP: the buyer's the cash leg, the seller's the
        // security leg, the bank's and custodian's both legs but not the offer.
        let participant1 = Self.section(output, from: "   -- participant1", to: "   -- participant2")
        let participant2 = Self.section(output, from: "   -- participant2", to: "   -- participant3")
        let participant3 = Self.section(output, from: "   -- participant3", to: "== 8.")
        #expect(participant1.contains("exercised Settle") && participant1.contains("Cash  {\"newOwner\""), "\(participant1)")
        #expect(!participant1.contains("exercised Deliver"), "\(participant1)")
        #expect(participant2.contains("exercised Settle") && participant2.contains("exercised Deliver"), "\(participant2)")
        #expect(!participant2.contains("exercised Transfer"), "\(participant2)")
        #expect(participant3.contains("exercised Deliver") && participant3.contains("Cash  {\"newOwner\""), "\(participant3)")
        #expect(!participant3.contains("Offer") && !participant3.contains("Settlement"), "\(participant3)")
        #expect(output.contains("nowhere (as text, hex or base64) — the domain holds ciphertext only"), "\(output)")
        for node in ["participant1", "participant2", "participant3", "domain"] {
            #expect(output.contains("   \(node) exited 0"), "\(node): \(output)")
        }
        #expect(output.contains("database: stopped and removed"))
    }

    @Test func withADatabaseURLTheDemoUsesThatServer() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.path
            let (status, output, error) = try await WeftProcess.run(["demo", "--database-url", fixture.url], directory: directory)
            #expect(status == 0, "\(output)\n\(error)")
            #expect(output.contains("(given)") && !output.contains("throw-away"), "\(output)")
            #expect(output.contains("the domain holds ciphertext only"), "\(output)")
            // The domain's and the participants' databases are on the given server.
            let databases = try PostgresConnection(url: fixture.url).execute("SELECT datname FROM pg_database ORDER BY 1").rows
                .compactMap { try $0[0].string }
            let database = try #require(URLComponents(string: fixture.url)?.path.split(separator: "/").last)
            for name in ["manager", "participant1", "participant2", "participant3"].map({ "\(database)_\($0)" }) {
                #expect(databases.contains(name), "\(databases)")
            }
            let events = try PostgresConnection(url: fixture.url).execute("SELECT count(*) FROM sequencer_events").rows[0][0].int64
            #expect((events ?? 0) > 10)
        }
    }

    @Test func aStepThatCannotRunEndsTheDemoSayingWhatFailed() async throws {
        // Nothing listens on port 1: the demo's first database call fails, after the certificates.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-demo-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output, error) = try await WeftProcess.run(
            ["demo", "--database-url", "postgresql://nobody@127.0.0.1:1/weft", "--directory", directory],
            directory: FileManager.default.temporaryDirectory.path)
        #expect(status == 1, "\(output)\n\(error)")
        #expect(output.contains("== 2.") && !output.contains("== 3."), "\(output)")
        #expect(output.contains("demo failed: ") && output.contains("the nodes' logs are in \(directory)/logs"), "\(output)")
    }

    /// Ctrl-C, and SIGTERM as `kill` or `timeout` send it, each stop every node and remove the
    /// throw-away database; the demo exits 128 + the signal's number, as a shell reports it.
    /// (The nodes run in process groups of their own: a signal the demo does not handle leaves
    /// them running. SIGHUP takes the same path.)
    @Test(arguments: [SIGINT, SIGTERM])
    func aStopSignalStopsEveryNodeAndRemovesTheThrowAwayDatabase(_ stopSignal: Int32) async throws {
        let name = stopSignal == SIGINT ? "SIGINT" : "SIGTERM"
        let directory = FileManager.default.temporaryDirectory.path
        let demo = try WeftProcess(["demo"], directory: directory)
        var database: String?
        var reachedTransactions = false
        var output: [String] = []
        while let line = await demo.nextLine() {
            output.append(line)
            if line.hasPrefix("database: postgresql://"), let range = line.range(of: " in ") {
                database = String(line[range.upperBound...])
            }
            if line.hasPrefix("== 5.") {
                reachedTransactions = true
                break
            }
        }
        guard reachedTransactions else {
            // The demo ended on its own: say how, with what it printed (a failed step says so on
            // stdout, with where the nodes' logs are) and its stderr by its exit.
            let status = await demo.exitStatus()
            let printed = output.joined(separator: "\n")
            Issue.record("the demo ended with status \(status) before its transactions; its output:\n\(printed)\nstderr: \(demo.standardError)")
            return
        }
        demo.signal(stopSignal)
        var rest: [String] = []
        while let line = await demo.nextLine() { rest.append(line) }
        #expect(await demo.exitStatus() == 128 + stopSignal, "\(rest) \(demo.standardError)")
        #expect(rest.contains("interrupted by \(name): stopping every node …"), "\(rest)")
        for node in ["participant1", "participant2", "participant3", "domain"] {
            #expect(rest.contains("   \(node) exited 0"), "\(node): \(rest)")
        }
        let directoryOfDatabase = try #require(database)
        #expect(!FileManager.default.fileExists(atPath: directoryOfDatabase), "the throw-away server's directory remains")
    }
}
