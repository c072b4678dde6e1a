import Testing
import WeftContracts
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
@testable import WeftParticipant

/// Query plans of the participant's hot statements: they must not depend on the table's
/// statistics being fresh.
@Suite struct StoreQueryPlanTests {
    /// A migrated participant store on a throw-away server, the participant, and a connection of
    /// the test's own.
    static func withStore(
        _ body: (ParticipantStore, UniqueIdentifier, PostgresConnection) async throws -> Void
    ) async throws {
        try await PostgresFixture.withFixture { fixture in
            let participant = try UniqueIdentifier(
                name: "participant1", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = ParticipantStore(database: database, participant: participant)
            try await store.migrate()
            try await body(store, participant, try PostgresConnection(url: fixture.url))
            await database.shutdown()
        }
    }

    /// 3,000 active contracts of alice's, created at offsets 1…3000, that autovacuum has not
    /// analyzed yet (and, here, never will): a burst of creates.
    static func createThousandsOfContracts(of participant: UniqueIdentifier, _ connection: PostgresConnection) throws {
        try connection.executeScript(
            """
            ALTER TABLE participant_contracts SET (autovacuum_enabled = false);
            INSERT INTO participant_contracts (participant, contract_id, template, stakeholders, contract, created_offset)
            SELECT '\(participant.description)', md5(i::text) || md5((i + 1)::text), 'Iou', '{alice}', '\\x00', i
            FROM generate_series(1, 3000) i;
            """)
    }

    @Test("archiving a contract finds it by primary key even among thousands of active contracts and with no statistics; it keeps its first offset")
    func archiveUsesThePrimaryKey() async throws {
        try await Self.withStore { _, participant, connection in
            try Self.createThousandsOfContracts(of: participant, connection)
            let contract = try #require(
                try connection.execute("SELECT md5('1500') || md5('1501')").rows.first?.first?.string)
            let me = PostgresValue.text(participant.description)

            let plan = try connection.execute(
                "EXPLAIN " + ParticipantStore.archiveSQL, [me, .text(contract), .int64(7)]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            #expect(plan.contains("participant_contracts_pkey"), "plan:\n\(plan)")
            #expect(!plan.contains("participant_contracts_active"), "plan:\n\(plan)")

            _ = try connection.execute(ParticipantStore.archiveSQL, [me, .text(contract), .int64(7)])
            _ = try connection.execute(ParticipantStore.archiveSQL, [me, .text(contract), .int64(9)])
            let offsets = try connection.execute(
                "SELECT archived_offset FROM participant_contracts WHERE participant = $1 AND archived_offset IS NOT NULL",
                [me]
            ).rows.map { try $0[0].int64 }
            #expect(offsets == [7])
        }
    }

    @Test("a page of the active contracts reads about its own rows from its cursor, without statistics, and look-ups by id keep the primary key")
    func activeContractPagesReadTheirOwnRows() async throws {
        try await Self.withStore { _, participant, connection in
            try Self.createThousandsOfContracts(of: participant, connection)
            let me = PostgresValue.text(participant.description)
            // A page of 100 after the 1,500th of 3,000: every plan node reads at most a few
            // pages' worth (sorting all 1,500 rows after the cursor and keeping 100 read them
            // all, on every page: quadratic over a whole read).
            let plan = try connection.execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + ParticipantStore.activeContractsPageSQL,
                [me, .int64(3000), .int64(1500), .text("x"), .text("{alice}"), .int64(100)]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            let rowsRead = plan.split(separator: "\n").compactMap { line -> Int? in
                guard let range = line.range(of: "actual rows=") else { return nil }
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
            #expect(!rowsRead.isEmpty && rowsRead.allSatisfy { $0 <= 300 }, "plan:\n\(plan)")
            #expect(plan.contains("participant_contracts_by_creation"), "plan:\n\(plan)")
            let page = try connection.execute(
                ParticipantStore.activeContractsPageSQL, [me, .int64(3000), .int64(1500), .text("x"), .text("{alice}"), .int64(100)]
            ).rows.map { try $0[2].int64 }
            #expect(page == (1501...1600).map { Int64($0) })
            let lookup = try connection.execute(
                "EXPLAIN " + ParticipantStore.archiveSQL, [me, .text("x"), .int64(7)]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            #expect(lookup.contains("participant_contracts_pkey"), "plan:\n\(lookup)")
        }
    }

    @Test("a page of the contracts a repair imported reads about its own rows through their own index, and look-ups by id keep the primary key")
    func repairedContractPagesReadTheirOwnRows() async throws {
        try await Self.withStore { _, participant, connection in
            // 3,000 contracts a repair imported (creation offset 0), and 3,000 created since,
            // their ids interleaved (a scan of the primary key from the cursor would read both).
            try Self.createThousandsOfContracts(of: participant, connection)
            try connection.executeScript(
                """
                INSERT INTO participant_contracts (participant, contract_id, template, stakeholders, contract, created_offset)
                SELECT '\(participant.description)', md5(i::text || 'repaired'), 'Iou', '{alice}', '\\x00', 0
                FROM generate_series(1, 3000) i;
                """)
            let me = PostgresValue.text(participant.description)
            let middle = try #require(
                try connection.execute(
                    "SELECT contract_id FROM participant_contracts WHERE created_offset = 0 ORDER BY contract_id OFFSET 1499 LIMIT 1"
                ).rows.first?.first?.string)
            let arguments: [PostgresValue] = [me, .int64(3000), .text(middle), .text("{alice}"), .int64(100)]
            // As the store runs it: in a transaction of its own, with its planner setting.
            _ = try connection.execute("BEGIN")
            _ = try connection.execute(ParticipantStore.repairedPagePlanning)
            let plan = try connection.execute(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + ParticipantStore.activeContractsRepairedPageSQL, arguments
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            _ = try connection.execute("COMMIT")
            let rowsRead = plan.split(separator: "\n").compactMap { line -> Int? in
                guard let range = line.range(of: "actual rows=") else { return nil }
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
            #expect(!rowsRead.isEmpty && rowsRead.allSatisfy { $0 <= 300 }, "plan:\n\(plan)")
            #expect(plan.contains("participant_contracts_repaired"), "plan:\n\(plan)")
            let page = try connection.execute(ParticipantStore.activeContractsRepairedPageSQL, arguments).rows.map {
                try $0[3].string ?? ""
            }
            #expect(page.count == 100 && page.allSatisfy { $0 > middle } && page == page.sorted())
            let lookup = try connection.execute(
                "EXPLAIN " + ParticipantStore.archiveSQL, [me, .text(middle), .int64(7)]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            #expect(lookup.contains("participant_contracts_pkey"), "plan:\n\(lookup)")
        }
    }

    @Test("a start finds its few pending requests through the partial index, not by reading every request kept")
    func pendingRequestsUseThePartialIndex() async throws {
        try await Self.withStore { _, participant, connection in
            // 3,000 decided requests of a few KiB each (as a node keeps until it prunes), 3 pending.
            try connection.executeScript(
                """
                INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates, responses, outcome)
                SELECT '\(participant.description)', i, decode(md5(i::text) || md5((i + 1)::text), 'hex'),
                    convert_to(repeat(md5(i::text), 64), 'UTF8'), '{}', '{}', '\\x00',
                    CASE WHEN i % 1000 = 0 THEN NULL ELSE 'approved' END
                FROM generate_series(1, 3000) i;
                ANALYZE participant_requests;
                """)
            let me = PostgresValue.text(participant.description)
            let plan = try connection.execute(
                "EXPLAIN " + ParticipantStore.pendingRequestsSQL, [me]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            #expect(plan.contains("participant_requests_pending"), "plan:\n\(plan)")
            #expect(!plan.contains("Seq Scan"), "plan:\n\(plan)")
            let pending = try connection.execute(ParticipantStore.pendingRequestsSQL, [me]).rows.map { try $0[0].int64 }
            #expect(pending == [1000, 2000, 3000])
        }
    }

    @Test("a request's outcome is found by its root hash among thousands of requests, with no statistics")
    func outcomeUsesTheRootHashIndex() async throws {
        try await Self.withStore { store, participant, connection in
            try connection.executeScript(
                """
                ALTER TABLE participant_requests SET (autovacuum_enabled = false);
                INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates, responses, outcome)
                SELECT '\(participant.description)', i, decode(md5(i::text) || md5((i + 1)::text), 'hex'), '\\x00', '{}', '{}',
                    '\\x00', 'approved'
                FROM generate_series(1, 3000) i;
                """)
            let me = PostgresValue.text(participant.description)
            let rootHash = try #require(
                try connection.execute("SELECT decode(md5('1500') || md5('1501'), 'hex')").rows.first?.first?.bytes)
            let plan = try connection.execute(
                "EXPLAIN " + ParticipantStore.outcomeSQL, [me, .bytes(rootHash)]
            ).rows.map { try $0[0].string ?? "" }.joined(separator: "\n")
            #expect(plan.contains("participant_requests_by_root_hash"), "plan:\n\(plan)")
            #expect(!plan.contains("Seq Scan"), "plan:\n\(plan)")
            #expect(try await store.outcome(ofRequest: try #require(Digest32(rootHash))) == "approved")
            // A replay of that request (same root hash), rejected after it: the transaction's
            // outcome is still its approval; for a root hash never approved, the latest reason.
            _ = try connection.execute(
                """
                INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates, responses, outcome)
                VALUES ($1, 5000, $2, '\\x00', '{}', '{}', '\\x00', 'SUBMITTER_NOT_ENTITLED'),
                    ($1, 5001, $3, '\\x00', '{}', '{}', '\\x00', 'LOCKED_CONTRACTS'),
                    ($1, 5002, $3, '\\x00', '{}', '{}', '\\x00', 'SUBMITTER_NOT_ENTITLED')
                """, [me, .bytes(rootHash), .bytes([UInt8](repeating: 7, count: 32))])
            #expect(try await store.outcome(ofRequest: try #require(Digest32(rootHash))) == "approved")
            #expect(
                try await store.outcome(ofRequest: try #require(Digest32([UInt8](repeating: 7, count: 32))))
                    == "SUBMITTER_NOT_ENTITLED")
        }
    }
}
