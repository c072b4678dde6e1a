import Foundation
import Synchronization
import Testing
import WeftStore
import WeftTestSupport
import WeftTransport
import WeftWire

/// Issue 10's domain migration, as the operators do it (docs/operator-guide.md §7.3): the
/// domain's sequencer, manager and mediator are killed and their databases dropped; the
/// domain owner starts a new domain and admits the participants; each participant's operator
/// runs `weft repair migrate-domain`. Every active contract is there exactly once, byte for byte,
/// the ledgers are unchanged, new transactions — on contracts made on the old domain — commit
/// on the new one, and the participants' commitments on the new domain match.
@Suite(.serialized, .timeLimit(.minutes(6))) struct DomainMigrationTests {
    @Test func participantsMoveTheirContractsFromALostDomainToANewOne() async throws {
        try await PostgresFixture.withFixture { fixture in
            try await CrashCluster.withCluster(fixture, showingLogOf: "participant1") { cluster in
                let newDirectory = try NodeDirectory()
                defer { newDirectory.remove() }
                let newDomain = Mutex<ProcessDomain?>(nil)
                func stopNewDomain() async -> String {
                    guard let domain = newDomain.withLock({ $0 }) else { return "" }
                    domain.process.signal(SIGTERM)
                    _ = await domain.process.exitStatus()
                    return String(domain.process.standardError.suffix(3000))
                }
                do {
                    try await drive(cluster, fixture: fixture, newDirectory: newDirectory) { domain in newDomain.withLock { $0 = domain } }
                } catch {
                    throw TestError("\(error)\n--- the new domain's log:\n\(await stopNewDomain())")
                }
                _ = await stopNewDomain()
            }
        }
    }

    func drive(
        _ cluster: CrashCluster, fixture: PostgresFixture, newDirectory: NodeDirectory,
        started: (ProcessDomain) -> Void
    ) async throws {
        let (alice, bank, bob) = await cluster.parties
        let iou = IOUCommands(packageID: await cluster.packageID)
        let (p1Port, p2Port) = (cluster.participantPorts["participant1"]!, cluster.participantPorts["participant2"]!)
        let aliceApp = LedgerApplication(port: p1Port, applicationID: "alice-app", actAs: [alice], readAs: [alice])
        let bankApp = LedgerApplication(port: p2Port, applicationID: "bank-app", actAs: [bank], readAs: [bank, bob])
        await aliceApp.follow()
        await bankApp.follow()
        defer { Task { await aliceApp.stop(); await bankApp.stop() } }

        // On the old domain: IOU chains (issued to alice, transferred to bob) and IOUs alice keeps.
        let chain = IOUChain(iou: iou, aliceApp: aliceApp, bankApp: bankApp, alice: alice, bank: bank, bob: bob)
        for number in 0..<3 { _ = try await chain.run(number) }
        var kept: [String] = []
        for number in 0..<2 {
            let id = "kept-\(number)"
            try await bankApp.submit(iou.issue("\(70 + number)", from: bank, to: alice), id: id)
            let issued = try await IOUChain.outcome(bankApp, id)
            guard issued.status?.code == 0, let transaction = await aliceApp.transaction(issued.transactionID, within: .seconds(60)),
                case .created(let created)? = transaction.events.first?.kind
            else { throw TestError("the IOU \(id) did not reach alice: \(issued)") }
            kept.append(created.contractID)
        }
        let before = (
            p1: try await LedgerCopy.read(port: p1Port, parties: [alice]),
            p2: try await LedgerCopy.read(port: p2Port, parties: [bank, bob])
        )
        #expect(before.p1.active.count == 2 && before.p2.active.count == 5, "\(before.p1.active.count), \(before.p2.active.count)")

        // A transfer is in flight when the domain is lost: the mediator is gone first, so the
        // request is sequenced and validated by both participants but never decided.
        await cluster.kill("mediator1")
        try await aliceApp.submit(iou.transfer(kept[0], to: bob), id: "in-flight")
        for name in CrashCluster.participants {
            let database = try PostgresConnection(url: ProcessDomain.databaseURL(fixture.url, name))
            let deadline = ContinuousClock.now + .seconds(60)
            while try database.execute("SELECT 1 FROM participant_requests WHERE outcome IS NULL").rows.isEmpty {
                guard ContinuousClock.now < deadline else { throw TestError("\(name) never registered the in-flight request") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        // The domain is lost: its nodes killed, the sequencer's and the manager's databases dropped.
        for node in ["sequencer1", "manager"] { await cluster.kill(node) }
        let server = try PostgresConnection(url: ProcessDomain.databaseURL(fixture.url, "postgres"))
        for database in ["weft", "manager"] { _ = try server.execute("DROP DATABASE \(database) WITH (FORCE)") }
        // participant1's last commitment to participant2 on the old domain never matched (it is
        // lost with the domain): before the migration it holds back the pruning safe point.
        let p1ID = try await cluster.weft(["participant", "id", "-c", "participant1.yaml"])
        let p2ID = try await cluster.weft(["participant", "id", "-c", "participant2.yaml"])
        let p1Database = try PostgresConnection(url: ProcessDomain.databaseURL(fixture.url, "participant1"))
        let unmatched = try #require(
            try p1Database.execute(
                """
                INSERT INTO participant_sent_commitments (participant, counter_participant, from_exclusive, to_inclusive, commitment)
                SELECT participant, $2, last_ts - 2, last_ts - 1, '\\x00'::bytea FROM participant_cursor WHERE participant = $1
                RETURNING to_inclusive
                """, [.text(p1ID), .text(p2ID)]
            ).rows.first?.first?.int64)
        let stuck = try await cluster.weft(["prune", "safe-point", "--output", "json"] + cluster.api("participant1"))
        let stuckPoint = (try JSONSerialization.jsonObject(with: Data(stuck.utf8)) as? [String: Any])?["safe_point_micros"] as? Int
        #expect(stuckPoint.map { Int64($0) < unmatched } ?? true, "\(stuck)")

        // The new domain: a new sequencer backend (an empty database), new keys, a new id.
        _ = try server.execute("CREATE DATABASE weft")
        let domain = try await ProcessDomain.start(fixture: fixture, directory: newDirectory)
        started(domain)
        #expect(domain.domainID != cluster.domainID)
        _ = try await domain.weft(["domain-manager", "parameters", "--set", "reconciliation-interval=1s"] + domain.admin)
        for id in [p1ID, p2ID] {
            _ = try await domain.weft(["domain-manager", "set-state", id, "--permission", "submission"] + domain.admin)
        }
        let newCA = newDirectory.path + "/certs/ca.pem"
        func migrate(_ participant: String, from old: String = "mydomain", sequencer: String? = nil) async throws
            -> (status: Int32, output: String, error: String)
        {
            try await WeftProcess.run(
                ["repair", "migrate-domain", old, "newdomain", sequencer ?? "127.0.0.1:\(domain.sequencerPort)", "--root-cert", newCA,
                 "--remote", "127.0.0.1:\(cluster.participantPorts[participant]!)", "--remote-plaintext", "--output", "json"],
                directory: cluster.directory.path)
        }

        // Mistakes change nothing: an unknown alias, a new domain nobody answers for.
        let unknown = try await migrate("participant1", from: "otherdomain")
        #expect(unknown.status != 0 && unknown.error.contains("PARTICIPANT_UNKNOWN_DOMAIN"), "\(unknown)")
        let unreachable = try await migrate("participant1", sequencer: "127.0.0.1:\(try ProcessDomain.freePort())")
        #expect(unreachable.status != 0 && unreachable.error.contains("PARTICIPANT_SEQUENCERS_UNAVAILABLE"), "\(unreachable)")
        let domains = try await cluster.weft(["participant", "domains", "--output", "json"] + cluster.api("participant1"))
        #expect(domains.contains("mydomain") && !domains.contains("newdomain"), "\(domains)")

        // The migration of both participants.
        let replaysBefore = await cluster.log("participant1").components(separatedBy: "participant replay started").count
        var results: [String: [String: Any]] = [:]
        for (name, copy, rejected) in [("participant1", before.p1, 1), ("participant2", before.p2, 0)] {
            let (status, output, error) = try await migrate(name)
            guard status == 0, let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
                throw TestError("migrate-domain \(name) exited \(status): \(error)")
            }
            results[name] = json
            #expect(json["to_domain"] as? String == domain.domainID && json["from_domain"] as? String == cluster.domainID)
            #expect((json["ledger_end"] as? Int).map(UInt64.init) == copy.end, "\(json)")
            #expect(json["requests_abandoned"] as? Int == 1 && json["commands_rejected"] as? Int == rejected, "\(json)")
            #expect(json["resumed"] as? Bool == false)
        }
        #expect(results["participant1"]?["parties"] as? [String] == [alice])
        #expect(Set(results["participant2"]?["parties"] as? [String] ?? []) == [bank, bob])
        // Asked again (as after a failure half-way), it finishes what is left: nothing here.
        let again = try await migrate("participant1")
        let resumed = try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any]
        #expect(again.status == 0 && resumed?["resumed"] as? Bool == true && resumed?["ledger_end"] as? Int == Int(before.p1.end), "\(again)")

        // Every active contract arrived exactly once, byte for byte; the ledgers are unchanged.
        let after = (
            p1: try await LedgerCopy.read(port: p1Port, parties: [alice], upTo: before.p1.end),
            p2: try await LedgerCopy.read(port: p2Port, parties: [bank, bob], upTo: before.p2.end)
        )
        for (name, was, now) in [("participant1", before.p1, after.p1), ("participant2", before.p2, after.p2)] {
            #expect(now.end == was.end && now.transactions == was.transactions, "\(name)'s transactions changed")
            #expect(now.trees == was.trees, "\(name)'s transaction trees changed")
            #expect(now.active == was.active, "\(name)'s active contracts changed")
        }
        for copy in [after.p1, after.p2] {
            let ids = try copy.active.map { try Weft.V1.CreatedEvent(serializedBytes: $0).contractID }
            #expect(Set(ids).count == ids.count, "a contract is active twice: \(ids)")
        }

        // The command in flight completes, rejected: the old domain can no longer decide it.
        let abandoned = try #require(await aliceApp.completion(of: "in-flight", within: .seconds(60)))
        #expect(abandoned.status?.code == 10 && abandoned.status?.errorID == "PARTICIPANT_DOMAIN_MIGRATED", "\(String(describing: abandoned.status?.message))")

        // New transactions commit on the new domain, on contracts made on the old one: alice
        // transfers the IOU the abandoned request had locked to bob (the bank's participant
        // confirms), the bank issues anew.
        let migratedAt = Int64(Date().timeIntervalSince1970 * 1_000_000)
        try await aliceApp.submit(iou.transfer(kept[0], to: bob), id: "after-migration-transfer")
        let transfer = try await IOUChain.outcome(aliceApp, "after-migration-transfer")
        #expect(transfer.status?.code == 0, "\(transfer)")
        try await bankApp.submit(iou.issue("5", from: bank, to: alice), id: "after-migration-issue")
        let issue = try await IOUChain.outcome(bankApp, "after-migration-issue")
        #expect(issue.status?.code == 0, "\(issue)")
        #expect(await bankApp.transaction(transfer.transactionID, within: .seconds(60)) != nil)
        #expect(await aliceApp.transaction(issue.transactionID, within: .seconds(60)) != nil)
        let client = try await RPCClient.connect(host: "127.0.0.1", port: p2Port, security: .plaintext)
        defer { Task { await client.close() } }
        #expect(try await client.transaction.getLedgerEnd(.init()).offset == before.p2.end + 2, "the offsets do not continue")

        // The commitments on the new domain match: each participant's safe point passes the
        // migration (a period after it matched), and neither lists a mismatch.
        for name in CrashCluster.participants {
            let deadline = ContinuousClock.now + .seconds(60)
            while true {
                let output = try await cluster.weft(["prune", "safe-point", "--output", "json"] + cluster.api(name))
                let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
                if let point = (json?["safe_point_micros"] as? Int).map(Int64.init), point > migratedAt { break }
                guard ContinuousClock.now < deadline else { throw TestError("\(name)'s commitments on the new domain never matched: \(output)") }
                try await Task.sleep(for: .milliseconds(200))
            }
            let mismatches = try await cluster.weft(["commitments", "mismatches", "--output", "json"] + cluster.api(name))
            guard mismatches.filter({ !$0.isWhitespace }) == "[]" else { throw TestError("\(name) lists mismatches: \(mismatches)") }
        }
        #expect(await cluster.log("participant1").contains("participant migrated to a new domain"))
        let replaysAfter = await cluster.log("participant1").components(separatedBy: "participant replay started").count
        #expect(replaysAfter == replaysBefore, "a migration is not a replay")
        // The transactions keep the domain they were committed on; the new ones are on the new domain.
        let transactions = try await LedgerCopy.read(port: p2Port, parties: [bank, bob]).transactions.map {
            try Weft.V1.Transaction(serializedBytes: $0)
        }
        #expect(transactions.prefix(Int(before.p2.end)).allSatisfy { $0.domain == cluster.domainID })
        #expect(transactions.dropFirst(Int(before.p2.end)).map(\.domain) == [domain.domainID, domain.domainID])
    }
}
