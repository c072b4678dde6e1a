import Foundation
import Testing
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// Issue 10's repair from peers as operators do it (docs/operator-guide.md §7.1a and §7.2),
/// every node a `weft run` process and every step a `weft` command: the bank (participant2)
/// issues alice (participant1) two IOUs; once their commitments matched, both participants and
/// the sequencer are pruned; participant1 loses its database, is started again and connected
/// with `--repair` (held: its Ledger API answers UNAVAILABLE, also after a restart);
/// participant2 exports the contracts they share; a tampered copy is refused, the genuine file
/// accepted; alice then transfers an imported IOU to bob and the next commitments match.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RepairProcessTests {
    @Test func aWipedParticipantIsRepairedFromItsPeersSnapshotAfterTheSequencerWasPruned() async throws {
        try await PostgresFixture.withFixture { fixture in
            try await CrashCluster.withCluster(fixture, showingLogOf: "participant1", drive)
        }
    }

    func drive(_ cluster: CrashCluster) async throws {
        let (alice, bank, bob) = await cluster.parties
        let (a, b) = (cluster.api("participant1"), cluster.api("participant2"))
        let dir = cluster.directory.path
        // ACS commitments every second, so that periods end while the test waits.
        try await cluster.weft(["domain-manager", "parameters", "--set", "reconciliation-interval=1s"] + cluster.admin)
        for (command, amount) in [("issue-1", "4321.5"), ("issue-2", "250.0")] {
            try await cluster.weft(
                ["submit", "create", "--template", "Iou", "--act-as", bank, "--command-id", command, "--arguments",
                 #"{"issuer": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "currency": "USD", "amount": {"decimal": "\#(amount)"}}"#]
                    + b)
        }
        let issued = Self.nowMicros()
        let shared = TransactionProcessTests.contractIDs(try await cluster.weft(["acs", "--party", bank, "--output", "json"] + b))
        #expect(shared.count == 2, "\(shared)")

        // Pruning (§7.1a): once both sides' commitments passed the IOUs, each participant prunes
        // up to its safe offset, which acknowledges its events to the sequencer.
        for api in [a, b] {
            try await Self.awaitJSON(cluster, ["commitments", "safe-point"] + api, "the commitment safe point passes the IOUs") {
                Self.micros($0, "safe_point_micros") > issued
            }
            let point = try await Self.json(cluster, ["prune", "safe-point"] + api)
            #expect(point["safe_offset"] as? Int == 2, "\(point)")
            let pruned = try await Self.json(cluster, ["prune", "participant", "--offset", "2"] + api)
            #expect(pruned["pruned_offset"] as? Int == 2 && pruned["forced"] as? Bool == false, "\(pruned)")
        }
        // The sequencer's safe point: the oldest acknowledgement among its members. Beyond it
        // the prune is refused, saying who has not acknowledged; up to it, events go.
        let sequencerPoint = try await Self.json(cluster, ["prune", "sequencer-safe-point"] + cluster.sequencerAdmin)
        let safe = Int64(try #require(sequencerPoint["safe_point_micros"] as? Int, "\(sequencerPoint)"))
        let beyond = try await WeftProcess.run(
            ["prune", "sequencer", "--up-to", "\(safe + 1)"] + cluster.sequencerAdmin, directory: dir)
        #expect(
            beyond.0 == 1 && beyond.2.contains("SEQUENCER_PRUNE_REFUSED") && beyond.2.contains("have not acknowledged"),
            "\(beyond)")
        let badTime = try await WeftProcess.run(["prune", "sequencer", "--up-to", "soon"] + cluster.sequencerAdmin, directory: dir)
        #expect(badTime.0 == 64 && badTime.2.contains("--up-to must be"), "\(badTime)")
        let sequencerPruned = try await Self.json(
            cluster, ["prune", "sequencer", "--up-to", "\(SequencingTimestamp(microsSinceEpoch: safe))"] + cluster.sequencerAdmin)
        #expect((sequencerPruned["events_removed"] as? Int ?? 0) > 0, "\(sequencerPruned)")
        #expect((sequencerPruned["members_cut_off"] as? [String])?.isEmpty == true, "\(sequencerPruned)")

        // The domain manager, killed and started again after the prune, reads its stream from
        // where it stored it (it had acknowledged what was pruned) and still confirms topology
        // changes: a party allocated now is hosted.
        await cluster.kill("manager")
        try await cluster.start("manager")
        let carol = try await cluster.weft(["party", "allocate", "carol"] + b)
        #expect(carol.contains("carol"), "\(carol)")
        let managerLog = await cluster.log("manager")
        #expect(!managerLog.contains("event stream ended"), "\(managerLog.suffix(2000))")

        // participant1 loses its database; started again, it cannot replay its pruned stream
        // and is connected for repair: held.
        let participant1 = try await cluster.weft(["participant", "id", "-c", "participant1.yaml"])
        await cluster.kill("participant1")
        try await cluster.wipeDatabase("participant1")
        try await cluster.start("participant1")
        // Connected as for a replay (7.1), it finds its stream pruned; then it is held for repair.
        try await cluster.connect("participant1")
        try await cluster.awaitLog("participant1", containing: "PARTICIPANT_EVENTS_PRUNED", within: .seconds(60))
        let connected = try await cluster.connect("participant1", ["--repair"])
        #expect(connected.contains("held for repair"), "\(connected)")
        try await Self.expectHeld(cluster, a, alice)
        // A restart before the import keeps it held (the flag is in its domain connections).
        await cluster.kill("participant1")
        try await cluster.start("participant1")
        try await Self.expectHeld(cluster, a, alice)
        #expect(await cluster.log("participant1").components(separatedBy: "held for repair: the domain's stream").count == 3)

        // participant2 exports what it shares with participant1, for a period after the pruning.
        let genuine = dir + "/p2-for-p1.snapshot"
        let badCounter = try await WeftProcess.run(
            ["repair", "export-acs", "--counter-participant", "participant1", "--file", genuine] + b, directory: dir)
        #expect(badCounter.0 == 64 && badCounter.2.contains("--counter-participant must be"), "\(badCounter)")
        let exported = try await Self.awaitJSON(
            cluster, ["repair", "export-acs", "--counter-participant", participant1, "--file", genuine] + b,
            "participant2 exports for a period after the sequencer's pruning point"
        ) { Self.micros($0, "to_inclusive_micros") > safe }
        #expect(exported["contracts"] as? Int == 2 && exported["counter_participant"] as? String == participant1, "\(exported)")
        let attributes = try FileManager.default.attributesOfItem(atPath: genuine)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // The same period again with --at (what the other peers of a repair are given).
        let again = try await Self.json(
            cluster,
            ["repair", "export-acs", "--counter-participant", participant1, "--file", dir + "/again.snapshot",
             "--at", "\(Self.micros(exported, "to_inclusive_micros"))"] + b)
        #expect(Self.micros(again, "to_inclusive_micros") == Self.micros(exported, "to_inclusive_micros"), "\(again)")
        // Refused before anything is imported: a participant that is not held, and one
        // exporter's snapshot twice.
        let notHeld = try await WeftProcess.run(["repair", "import-acs", genuine] + b, directory: dir)
        #expect(notHeld.0 == 1 && notHeld.2.contains("PARTICIPANT_NOT_HELD_FOR_REPAIR"), "\(notHeld)")
        let twice = try await WeftProcess.run(["repair", "import-acs", genuine, dir + "/again.snapshot"] + a, directory: dir)
        #expect(twice.0 == 1 && twice.2.contains("PARTICIPANT_REPAIR_ARGUMENTS"), "\(twice)")

        // Tampered: one contract's amount changed (4321.5 → 9321.5). Refused naming the
        // mismatch; nothing is stored and the node stays held.
        let snapshot = try Weft.V1.AcsSnapshot(serializedBytes: Array(try Data(contentsOf: URL(fileURLWithPath: genuine))))
        var tampered = snapshot
        let amount = Array("4321".utf8)
        func amountAt(_ bytes: [UInt8]) -> Int? { bytes.indices.first { bytes[$0...].starts(with: amount) } }
        let index = try #require(tampered.contracts.firstIndex { amountAt($0.contract) != nil }, "the amount in the bytes")
        var bytes = tampered.contracts[index].contract
        let at = try #require(amountAt(bytes))
        bytes[at] = UInt8(ascii: "9")
        tampered.contracts[index].contract = bytes
        let tamperedFile = dir + "/tampered.snapshot"
        try Data(try tampered.serializedBytes()).write(to: URL(fileURLWithPath: tamperedFile))
        let refused = try await WeftProcess.run(["repair", "import-acs", tamperedFile] + a, directory: dir)
        #expect(refused.0 == 1 && refused.2.contains("PARTICIPANT_REPAIR_SNAPSHOT_MISMATCH"), "\(refused)")
        #expect(try await Self.storedContracts(cluster, "participant1") == 0)
        try await Self.expectHeld(cluster, a, alice)

        // Genuine: accepted; participant1 holds exactly the shared contracts and is released.
        let imported = try await Self.json(cluster, ["repair", "import-acs", genuine] + a)
        #expect(imported["contracts_added"] as? Int == 2 && (imported["next_counter"] as? Int ?? 0) > 0, "\(imported)")
        let report = try #require((imported["snapshots"] as? [[String: Any]])?.first, "\(imported)")
        #expect(report["contracts_in_snapshot"] as? Int == 2 && report["exporter"] as? String == snapshot.exporter, "\(report)")
        #expect(Self.micros(report, "to_inclusive_micros") == snapshot.toInclusive?.microsSinceEpoch, "\(report)")
        #expect(try await Self.storedContracts(cluster, "participant1") == 2)
        let domains = try await cluster.weft(["participant", "domains", "--output", "json"] + a)
        #expect(domains.contains(#""held_for_repair":false"#) && domains.contains(#""connected":true"#), "\(domains)")
        let aliceACS = TransactionProcessTests.contractIDs(try await cluster.weft(["acs", "--party", alice, "--output", "json"] + a))
        #expect(Set(aliceACS) == Set(shared), "\(aliceACS) vs \(shared)")

        // participant1 transacts with participant2: alice transfers the imported IOU to bob.
        #expect(try await cluster.uploadPackage("participant1") == (await cluster.packageID))
        let iou = try #require(shared.first)
        try await cluster.weft(
            ["submit", "exercise", "--template", "Iou", "--contract", iou, "--choice", "Transfer", "--act-as", alice,
             "--command-id", "transfer-after-repair", "--arguments", #"{"newOwner": {"party": "\#(bob)"}}"#] + a)
        let transferred = Self.nowMicros()
        let bobACS = TransactionProcessTests.contractIDs(try await cluster.weft(["acs", "--party", bob, "--output", "json"] + b))
        #expect(bobACS.count == 1, "\(bobACS)")

        // The next commitments match: participant1's safe point passes the transfer and
        // neither side lists a mismatch.
        try await Self.awaitJSON(cluster, ["commitments", "safe-point"] + a, "participant1's commitments match after the repair") {
            Self.micros($0, "safe_point_micros") > transferred
        }
        for api in [a, b] {
            #expect(try await cluster.weft(["commitments", "mismatches", "--output", "json"] + api) == "[]")
        }
        print(
            "repair: sequencer pruned up to \(SequencingTimestamp(microsSinceEpoch: safe)) (\(sequencerPruned["events_removed"] ?? 0) events), "
                + "snapshot period end \(SequencingTimestamp(microsSinceEpoch: Self.micros(report, "to_inclusive_micros"))), "
                + "\(imported["contracts_added"] ?? 0) contracts imported, processing from counter \(imported["next_counter"] ?? 0)")
    }

    /// participant1 is held for repair: `weft participant domains` says so, its log says so,
    /// and its Ledger API answers at once UNAVAILABLE with what to do.
    static func expectHeld(_ cluster: CrashCluster, _ api: [String], _ party: String) async throws {
        let domains = try await cluster.weft(["participant", "domains", "--output", "json"] + api)
        #expect(domains.contains(#""held_for_repair":true"#), "\(domains)")
        #expect(await cluster.log("participant1").contains("held for repair"))
        let acs = try await WeftProcess.run(["acs", "--party", party] + api, directory: cluster.directory.path)
        #expect(acs.0 == 1 && acs.2.contains("PARTICIPANT_HELD_FOR_REPAIR") && acs.2.contains("weft repair import-acs"), "\(acs)")
    }

    /// `weft arguments… --output json`, parsed (one object).
    static func json(_ cluster: CrashCluster, _ arguments: [String]) async throws -> [String: Any] {
        let output = try await cluster.weft(arguments + ["--output", "json"])
        guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
            throw TestError("weft \(arguments.joined(separator: " ")) printed no JSON object: \(output)")
        }
        return object
    }

    /// Runs `weft arguments… --output json` until its object satisfies `condition` (a
    /// commitment period is the only sign of progress here); throws after 60 s.
    @discardableResult
    static func awaitJSON(
        _ cluster: CrashCluster, _ arguments: [String], _ what: String, _ condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(60)
        var last: [String: Any] = [:]
        var failure = ""
        while ContinuousClock.now < deadline {
            do {
                last = try await json(cluster, arguments)
                if condition(last) { return last }
            } catch {
                failure = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestError("\(what): not within 60 s (last: \(last) \(failure))")
    }

    /// Contracts stored in participant `name`'s database (active or not).
    static func storedContracts(_ cluster: CrashCluster, _ name: String) async throws -> Int64 {
        let database = PostgresDatabase(url: ProcessDomain.databaseURL(cluster.fixtureURL, name))
        defer { Task { await database.shutdown() } }
        return try await database.withConnection { connection in
            try connection.execute("SELECT count(*)::bigint FROM participant_contracts").rows.first?[0].int64 ?? -1
        }
    }

    /// A time in µs from a JSON object (0 when absent).
    static func micros(_ object: [String: Any], _ key: String) -> Int64 { Int64(object[key] as? Int ?? 0) }

    static func nowMicros() -> Int64 { Int64(Date().timeIntervalSince1970 * 1_000_000) }
}
