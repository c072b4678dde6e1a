import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTransport
import WeftWire

/// Issue 10's repair acceptance test (docs/operator-guide.md, "Recovery: repair from peers"),
/// on one domain for all its assertions, with a reconciliation interval of one second:
/// participant2 loses its database after the sequencer pruned its stream, imports the
/// contracts it shares with participant1 from participant1's snapshot — refused when tampered,
/// accepted when genuine — and continues transacting with matching commitments.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct RepairTests {
        static let intervalMicros: Int64 = 1_000_000

        @Test func aWipedParticipantIsRepairedFromAPeersSnapshotCheckedAgainstTheCommitmentOnTheSequencer()
            async throws
        {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bank) = (domain.p1, domain.alice, domain.bank)
                let (id1, id2) = (domain.members[0].id, domain.members[1].id)
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: Self.intervalMicros), serial: 2)
                let first = try await domain.issued("100.00", to: alice, command: "iou-1")
                let second = try await domain.issued("250.00", to: alice, command: "iou-2")
                let pruneAt = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)

                // Nothing to export for a participant that shares nothing with participant1.
                await #expect(throws: RepairError.self) { _ = try await p1.exportACS(for: domain.members[2].id) }

                // participant1 exports for a period that ends two intervals after the IOUs: the
                // sequencer keeps events of participant2 from before its end (commitments).
                try await eventually("participant1 computed a period two intervals after the IOUs") {
                    let snapshot = try? await p1.exportACS(for: id2)
                    return (snapshot?.toInclusive ?? 0) > pruneAt + 2 * Self.intervalMicros
                }
                let exported = try await p1.exportACS(for: id2)
                // Through the file format (weft.v1.AcsSnapshot) and back; a file that is not a
                // snapshot is refused typed.
                let snapshot = try AcsSnapshot(serializedBytes: try exported.wire.serializedBytes())
                #expect(snapshot == exported)
                #expect(throws: RepairError.self) { _ = try AcsSnapshot(serializedBytes: [0x0a, 0xff]) }
                #expect(throws: RepairError.self) { _ = try AcsSnapshot(serializedBytes: []) }
                let exportedIDs: Set<ContractID> = Set(snapshot.contracts.map(\.id))
                #expect(exportedIDs == [first, second])
                #expect(snapshot.exporter == id1.description && snapshot.counterParticipant == id2.description)
                #expect(snapshot.toInclusive % Self.intervalMicros == 0 && !snapshot.topology.isEmpty)

                // participant2 loses its database; the sequencer prunes its stream up to the IOUs.
                await domain.p2.stop()
                let pruned = try await domain.sequencer.prune(upToInclusive: pruneAt, force: true)
                #expect(pruned.membersCutOff.contains(domain.members[1].member.description))
                let url = try ReplayTests.emptyDatabase(fixture, "participant2_repaired")
                let store = ParticipantStore(database: PostgresDatabase(url: url), participant: id2)
                try await store.migrate()
                let p2 = try await DomainHarness.startNode(
                    domain.members[1], store: store, url: url, endpoint: domain.endpoint, domain: domain.domain,
                    ready: false, processing: false)

                // Tampered: one contract's amount changed (100.00 → 900.00). Refused, naming the
                // period and both hashes; nothing is imported.
                let index = try #require(snapshot.contracts.firstIndex { $0.id == first })
                var stored = snapshot.contracts[index].stored
                let at = try #require(
                    stored.indices.first { stored[$0...].starts(with: Array("100".utf8)) }, "the amount in the bytes")
                stored[at] = UInt8(ascii: "9")
                var contracts = snapshot.contracts
                contracts[index] = .init(id: first, stakeholders: contracts[index].stakeholders, stored: stored)
                let tampered = snapshot.replacingContracts(contracts)
                do {
                    try await p2.importACS(tampered)
                    Issue.record("a tampered snapshot was imported")
                } catch let error as RepairError {
                    guard case .snapshotMismatch(let from, let to, let onSequencer, let ofSnapshot) = error else {
                        Issue.record("not a mismatch: \(error)")
                        return
                    }
                    #expect(from == snapshot.fromExclusive && to == snapshot.toInclusive)
                    #expect(onSequencer == snapshot.commitment && ofSnapshot == tampered.commitment)
                    #expect(onSequencer != ofSnapshot && onSequencer.count == 32)
                    #expect(error.id == "PARTICIPANT_REPAIR_SNAPSHOT_MISMATCH")
                    #expect(error.description.contains("\(from)..\(to)"), "\(error)")
                }
                // Too old: a period that ends before the pruning point (events after it are gone).
                let old = AcsSnapshot(
                    domain: snapshot.domain, exporter: snapshot.exporter, counterParticipant: snapshot.counterParticipant,
                    fromExclusive: pruneAt - 2, toInclusive: pruneAt - 1, exporterNextCounter: 0,
                    exporterLastTimestamp: snapshot.exporterLastTimestamp, contracts: snapshot.contracts,
                    topology: snapshot.topology)
                do {
                    try await p2.importACS(old)
                    Issue.record("a snapshot from before the pruning point was imported")
                } catch let error as RepairError {
                    guard case .snapshotBeforePruningPoint(let to, let counter, let firstAt) = error else {
                        Issue.record("not the pruning-point refusal: \(error)")
                        return
                    }
                    #expect(to == pruneAt - 1 && counter > 0 && firstAt > pruneAt, "\(error)")
                    #expect(error.id == "PARTICIPANT_REPAIR_SNAPSHOT_TOO_OLD")
                }
                #expect(await p2.nextCounter == 0)
                #expect(try await Self.activeRows(url, id2).isEmpty)
                // A snapshot for another participant is refused too.
                await #expect(throws: RepairError.notForThisParticipant(
                        snapshotFor: "\(id2) on \(domain.domain.domain)")) {
                    try await p1.importACS(snapshot)
                }

                // Genuine: accepted. participant2 holds exactly the shared part of
                // participant1's active contracts, byte for byte, and continues after the period.
                #expect(try await p2.importACS(snapshot) == 2)
                let rows = try await Self.activeRows(url, id2)
                #expect(rows.map(\.id) == snapshot.contracts.map(\.id.description))
                #expect(rows.map(\.stored) == snapshot.contracts.map(\.stored))
                // (participant2 lists its imported contracts by id: they share ledger offset 0.)
                let byID: @Sendable ([ActiveContract]) -> [ContractInstance] = {
                    $0.sorted { $0.id.description < $1.id.description }.map(\.contract)
                }
                let repairedACS = byID(try await p2.activeContracts(of: alice))
                #expect(repairedACS.count == 2)
                #expect(repairedACS == byID(try await p1.activeContracts(of: alice)))
                #expect(await p2.nextCounter > 0)

                // Each contract once: importing again adds nothing; other data for an id is refused.
                #expect(try await store.importContracts(snapshot.contracts) == 0)
                await #expect(throws: RepairError.conflictingContract(first.description)) {
                    _ = try await store.importContracts(tampered.contracts)
                }
                await #expect(throws: RepairError.self) { try await p2.importACS(snapshot) }

                // participant2 transacts: the bank issues alice another IOU, participant1 confirms.
                try await p2.upload(packageSource: domain.iouSource, file: "iou.weft")
                let issued = try await p2.submit(
                    [try domain.issue("30.00", to: alice)], actAs: [bank],
                    command: CommandKey(applicationID: "bank-app", commandID: "after-repair"))
                guard case .succeeded(let transactionID, _) = issued else {
                    Issue.record("participant2's command after the repair did not commit: \(issued)")
                    return
                }
                #expect(try await p1.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                let issuedAt = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)

                // And the next periods' commitments match on both sides.
                for (me, counter, database) in [(id1, id2, fixture.url), (id2, id1, url)] {
                    try await eventually("\(me.name) matches a commitment from \(counter.name) after the repair") {
                        try await Self.received(database, me, from: counter, after: issuedAt, state: "matched") > 0
                    }
                    #expect(try await Self.received(database, me, from: counter, after: 0, state: "mismatched") == 0)
                }
                await p2.stop()
                await store.database.shutdown()
                await domain.stop()
            }
        }

        /// Reconciliation every `intervalMicros`, then `beforeContracts`, then participant1 shares
        /// an IOU with each peer: the bank's to alice (participant2) and alice's to the depository
        /// (participant3, given the package). Returns both and the sequencing time after them.
        static func iouSharedWithEachPeer(
            _ domain: DomainHarness, _ depository: Party, url: String, beforeContracts: () async -> Void = {}
        ) async throws -> (withP2: ContractID, withP3: ContractID, createdAt: Int64) {
            try await domain.setDomainParameters(
                TestDomain.parameters(reconciliationIntervalMicros: Self.intervalMicros), serial: 2)
            await beforeContracts()
            try await domain.p3.upload(packageSource: domain.iouSource, file: "iou.weft")
            let alice = domain.alice
            let withP2 = try await domain.issued("100.00", to: alice, command: "iou-shared-with-participant2")
            let withP3 = try await domain.created(
                in: try domain.package, "Iou",
                [
                    "issuer": .party(alice), "owner": .party(depository), "currency": .text("USD"),
                    "amount": .decimal(FixedDecimal("70.00")!),
                ], by: alice, on: domain.p1, seenBy: [domain.p3])
            return (withP2, withP3, try await StoredSequencerEvent.lastTimestamp(url: url))
        }

        /// A participant that shares contracts with two peers is repaired from both peers'
        /// snapshots for one period, killed between the two imports: participant1 shares an IOU
        /// with participant2 (the bank's to alice) and one with participant3 (alice's to the
        /// depository). Before that, a snapshot whose stakeholder list leaves alice out — the
        /// contract would be missing from her active contracts, and the commitment, over ids
        /// and data, still matches — is refused with nothing stored.
        @Test func aParticipantIsRepairedFromTwoPeersAcrossARestartAndAChangedStakeholderListIsRefused()
            async throws
        {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let (p1, p2, p3, alice, bank) = (domain.p1, domain.p2, domain.p3, domain.alice, domain.bank)
                let depository = try #require(domain.extraParties["depository"])
                let (id1, id2, id3) = (domain.members[0].id, domain.members[1].id, domain.members[2].id)
                let (withP2, withP3, createdAt) = try await Self.iouSharedWithEachPeer(domain, depository, url: fixture.url)

                // Both peers export for one period after the IOUs, one for which the sequencer
                // took both peers' commitments to participant1.
                try await eventually("participant2 and participant3 sent participant1 commitments for one period") {
                    try await Self.commonPeriodEnd(fixture.url, of: [id2, id3], to: id1, after: createdAt) != nil
                }
                let periodEnd = try #require(
                    try await Self.commonPeriodEnd(fixture.url, of: [id2, id3], to: id1, after: createdAt))
                let fromP2 = try await p2.exportACS(for: id1, at: periodEnd)
                let fromP3 = try await p3.exportACS(for: id1, at: periodEnd)
                #expect(fromP2.contracts.map(\.id) == [withP2] && fromP3.contracts.map(\.id) == [withP3])

                // participant1 loses its database and starts on an empty one, without processing.
                await p1.stop()
                let url = try ReplayTests.emptyDatabase(fixture, "participant1_repaired_from_two")
                let store = ParticipantStore(database: PostgresDatabase(url: url), participant: id1)
                try await store.migrate()
                func startRepairing() async throws -> ParticipantNode {
                    try await DomainHarness.startNode(
                        domain.members[0], store: store, url: url, endpoint: domain.endpoint, domain: domain.domain,
                        ready: false, processing: false)
                }
                var repaired = try await startRepairing()

                // participant2's snapshot with alice left out of the IOU's stakeholders.
                let genuine = try #require(fromP2.contracts.first)
                #expect(Set(genuine.stakeholders) == [alice.id, bank.id])
                let hidden = fromP2.replacingContracts([
                    .init(id: genuine.id, stakeholders: [bank.id], stored: genuine.stored)
                ])
                #expect(hidden.commitment == fromP2.commitment, "the commitment covers ids and data only")
                do {
                    try await repaired.importACS(hidden, thenProcess: false)
                    Issue.record("a snapshot with a changed stakeholder list was imported")
                } catch let error as RepairError {
                    guard case .stakeholdersDiffer(let contract, let listed, let named) = error else {
                        Issue.record("not the stakeholder refusal: \(error)")
                        return
                    }
                    #expect(contract == genuine.id.description && listed == [bank.id], "\(error)")
                    #expect(Set(named) == [alice.id, bank.id], "\(error)")
                    #expect(error.id == "PARTICIPANT_REPAIR_STAKEHOLDERS_DIFFER")
                }
                #expect(await repaired.nextCounter == 0)
                #expect(try await Self.activeRows(url, id1).isEmpty)

                // The genuine snapshots: participant2's, then — after participant1 was killed —
                // participant3's, whose commitment the first import's scan did not wait for (it
                // stopped at participant2's).
                #expect(try await repaired.importACS(fromP2, thenProcess: false) == 1)
                await repaired.crash()
                repaired = try await startRepairing()
                #expect(await repaired.repairedPeriodEnd == periodEnd, "the period imported before the restart")
                #expect(try await repaired.importACS(fromP3) == 1)
                let rows = try await Self.activeRows(url, id1)
                #expect(Set(rows.map(\.id)) == [withP2.description, withP3.description])
                let aliceACS = try await repaired.activeContracts(of: alice)
                #expect(Set(aliceACS.map(\.id)) == [withP2, withP3])
                #expect(await repaired.nextCounter > 0)

                await repaired.stop()
                await store.database.shutdown()
                await domain.stop()
            }
        }

        /// A malicious exporter's validly signed commitment vouches for nothing outside the
        /// stakeholder groups it shares with the importer. participant3 (hosting the depository)
        /// shares an IOU with participant1 (alice's to the depository); participant2 shares one
        /// with participant1 (the bank's to alice). participant3 never sends its own commitments;
        /// for one of its periods it signs, in place of its real commitment to participant1, one
        /// over a snapshot that also holds a made-up IOU of 1,000,000 from the bank to alice —
        /// stakeholders {alice, bank}, hosted on participant1 and participant2, an id from a seed
        /// of its choosing — and sends it through the sequencer. participant1 loses its database:
        /// that snapshot hashes to the signed commitment and the made-up IOU's data names its
        /// stakeholders, but participant3 hosts none of them: refused
        /// `PARTICIPANT_REPAIR_CONTRACT_NOT_SHARED`, nothing stored. participant2's genuine
        /// snapshot then imports, and alice's active contracts hold no made-up IOU.
        @Test func aSignedCommitmentOverAContractOfPartiesTheExporterDoesNotHostIsRefusedWithNothingStored()
            async throws
        {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let (p1, p2, p3, alice, bank) = (domain.p1, domain.p2, domain.p3, domain.alice, domain.bank)
                let depository = try #require(domain.extraParties["depository"])
                let (id1, id2, id3) = (domain.members[0].id, domain.members[1].id, domain.members[2].id)
                // participant3 holds no contract yet, so nothing of it is waiting to be sent: none
                // of its commitments reaches the sequencer; the forged one takes a real one's place.
                let (withP2, withP3, createdAt) = try await Self.iouSharedWithEachPeer(domain, depository, url: fixture.url) {
                    await p3.dropCommitmentSendsFromNowOn()
                }
                let iou = try domain.package

                // participant2's genuine snapshot, for a period whose commitment the sequencer took.
                try await eventually("participant2 sent participant1 a commitment after the IOUs") {
                    try await Self.commonPeriodEnd(fixture.url, of: [id2], to: id1, after: createdAt) != nil
                }
                let genuineEnd = try #require(
                    try await Self.commonPeriodEnd(fixture.url, of: [id2], to: id1, after: createdAt))
                let fromP2 = try await p2.exportACS(for: id1, at: genuineEnd)
                #expect(fromP2.contracts.map(\.id) == [withP2])

                // A period participant3 computed its (unsent) commitment to participant1 for.
                let unsentPeriod = """
                    SELECT from_exclusive, to_inclusive FROM participant_sent_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive > $3 AND NOT sent
                    ORDER BY to_inclusive LIMIT 1
                    """
                let period: @Sendable () async throws -> (from: Int64, to: Int64)? = {
                    try await StoredSequencerEvent.query(fixture.url) { connection in
                        try connection.execute(
                            unsentPeriod, [.text(id3.description), .text(id1.description), .int64(createdAt)]
                        ).rows.first.map { (try $0[0].int64 ?? 0, try $0[1].int64 ?? 0) }
                    }
                }
                try await eventually("participant3 computed a commitment to participant1 after the IOU") {
                    try await period() != nil
                }
                let (from, to) = try #require(try await period())
                let sentByP3 = try await StoredSequencerEvent.query(fixture.url) { connection in
                    try connection.execute(
                        "SELECT count(*)::bigint FROM participant_sent_commitments WHERE participant = $1 AND sent",
                        [.text(id3.description)]
                    ).rows.first?[0].int64
                }
                #expect(sentByP3 == 0, "participant3 sent none of its own commitments")

                // The snapshot participant3 makes up: its genuine IOU with participant1, as it
                // stores it, and an IOU from the bank to alice that nobody created.
                let ownRows = try await Self.activeRows(fixture.url, id3)
                #expect(ownRows.map(\.id) == [withP3.description])
                let own = try ownRows.map { row -> AcsSnapshot.Contract in
                    let (id, instance, _) = try ContractInstance.fromWire(
                        Weft.V1.ContractInstance(serializedBytes: row.stored))
                    return AcsSnapshot.Contract(
                        id: id, stakeholders: instance.stakeholders.map(\.id), stored: row.stored)
                }
                let madeUp = ContractInstance(
                    template: try iou.templateID("Iou"),
                    argument: try iou.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                            "amount": .decimal(FixedDecimal("1000000.00")!),
                        ]), signatories: [bank], observers: [alice])
                let seed = NodeSeed(try #require(Digest32([UInt8](repeating: 0x5e, count: 32))))
                let madeUpID = ContractID(seed: seed, contract: madeUp)
                #expect(madeUpID.authenticates(madeUp, seed: seed))
                let madeUpStored = try madeUp.wire(id: madeUpID, packages: [iou], creationSeed: seed).serializedBytes()
                let forged = AcsSnapshot(
                    domain: fromP2.domain, exporter: id3.description, counterParticipant: id1.description,
                    fromExclusive: from, toInclusive: to, exporterNextCounter: 0,
                    exporterLastTimestamp: try await StoredSequencerEvent.lastTimestamp(url: fixture.url),
                    contracts: own + [.init(id: madeUpID, stakeholders: [alice.id, bank.id], stored: madeUpStored)],
                    topology: fromP2.topology)

                // participant3 signs the forged snapshot's commitment and sends it to participant1
                // through the sequencer, with the message id its real one would have had.
                let session = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: domain.members[2].member.description, key: domain.members[2].signingKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                let content = Weft.V1.AcsCommitment(
                    domain: domain.domain.domain.description, sender: id3.description,
                    counterParticipant: id1.description, fromExclusive: .init(microsSinceEpoch: from),
                    toInclusive: .init(microsSinceEpoch: to), commitment: forged.commitment)
                let signed = try ProtocolSigning.sign(
                    Weft.V1.SignedContent(content: .acsCommitment(content)), with: domain.members[2].signingKey)
                try await session.send(
                    Weft.V1.Batch(envelopes: [
                        Weft.V1.Envelope(
                            content: try Weft.V1.EnvelopeContent(message: .signedMessage(signed)).serializedBytes(),
                            recipients: [domain.members[0].member.description])
                    ]), messageID: "acs-commitments-\(to)-\(id1)")
                await session.rpc.close()

                // participant1 loses its database and starts on an empty one, without processing.
                await p1.stop()
                let url = try ReplayTests.emptyDatabase(fixture, "participant1_forged_snapshot")
                let store = ParticipantStore(database: PostgresDatabase(url: url), participant: id1)
                try await store.migrate()
                let repaired = try await DomainHarness.startNode(
                    domain.members[0], store: store, url: url, endpoint: domain.endpoint, domain: domain.domain,
                    ready: false, processing: false)

                // Refused: the made-up IOU's stakeholders are hosted on participant1 and
                // participant2, none on participant3, whose signature vouches for nothing there.
                do {
                    try await repaired.importACS(forged, thenProcess: false)
                    Issue.record("a snapshot with a contract the exporter does not share was imported")
                } catch let error as RepairError {
                    guard case .contractNotShared(let contract, let parties, let exporter, let member, let end) = error
                    else {
                        Issue.record("not the sharing refusal: \(error)")
                        return
                    }
                    #expect(contract == madeUpID.description, "\(error)")
                    #expect(parties == [alice.id, bank.id].sorted(), "\(error)")
                    #expect(exporter == id3.description && member == id1.description && end == to, "\(error)")
                    #expect(error.id == "PARTICIPANT_REPAIR_CONTRACT_NOT_SHARED")
                    #expect(error.description.contains(madeUpID.description), "\(error)")
                }
                #expect(await repaired.nextCounter == 0)
                #expect(await repaired.repairedPeriodEnd == nil)
                #expect(try await Self.activeRows(url, id1).isEmpty)

                // participant2's genuine snapshot still imports.
                #expect(try await repaired.importACS(fromP2) == 1)
                #expect(try await Self.activeRows(url, id1).map(\.id) == [withP2.description])
                let aliceACS = try await repaired.activeContracts(of: alice)
                #expect(aliceACS.map(\.id) == [withP2])
                #expect(await repaired.nextCounter > 0)

                await repaired.stop()
                await store.database.shutdown()
                await domain.stop()
            }
        }

        /// The latest period end after `after` for which each of `senders` sent `counter` an
        /// ACS commitment that the sequencer took (what an export for it needs); nil if none yet.
        static func commonPeriodEnd(
            _ url: String, of senders: [UniqueIdentifier], to counter: UniqueIdentifier, after: Int64
        ) async throws -> Int64? {
            let (names, counterName) = (senders.map(\.description), counter.description)
            return try await StoredSequencerEvent.query(url) { connection in
                try connection.execute(
                    """
                    SELECT max(to_inclusive)::bigint FROM (
                        SELECT to_inclusive FROM participant_sent_commitments
                        WHERE participant = ANY ($1::text[]) AND counter_participant = $2 AND to_inclusive > $3 AND sent
                        GROUP BY to_inclusive HAVING count(*) = $4) AS common
                    """, [.textArray(names), .text(counterName), .int64(after), .int64(Int64(names.count))]
                ).rows.first?[0].int64
            }
        }

        /// The active contracts stored for `participant` in the database at `url`, by id.
        static func activeRows(_ url: String, _ participant: UniqueIdentifier) async throws
            -> [(id: String, stored: [UInt8])]
        {
            try await StoredSequencerEvent.query(url) { connection in
                try connection.execute(
                    """
                    SELECT contract_id, contract FROM participant_contracts
                    WHERE participant = $1 AND archived_offset IS NULL ORDER BY contract_id
                    """, [.text(participant.description)]
                ).rows.map { (try $0[0].string ?? "", try $0[1].bytes ?? []) }
            }
        }

        /// How many commitments `participant` received from `counter` for periods ending after
        /// `after`, compared with the outcome `state`.
        static func received(
            _ url: String, _ participant: UniqueIdentifier, from counter: UniqueIdentifier, after: Int64, state: String
        ) async throws -> Int64 {
            try await StoredSequencerEvent.query(url) { connection in
                try connection.execute(
                    """
                    SELECT count(*)::bigint FROM participant_received_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive > $3 AND state = $4
                    """, [.text(participant.description), .text(counter.description), .int64(after), .text(state)]
                ).rows.first?[0].int64 ?? -1
            }
        }
    }
}

/// The rule an importer checks each contract of a snapshot by (`AcsSnapshot.requireShared`): the
/// one an honest exporter's commitment follows — a stakeholder group counts only when the exporter
/// and the importer each host one of its parties.
struct AcsSnapshotSharingTests {
    static let hosting: [String: String] = [
        "alice": "participant1", "bank": "participant2", "depository": "participant3",
    ]

    static func hosts(_ group: StakeholderGroup) -> Set<String> { Set(group.parties.compactMap { hosting[$0] }) }

    static func snapshot(_ groups: [[String]]) -> AcsSnapshot {
        let contracts = groups.enumerated().map { (index, parties) in
            AcsSnapshot.Contract(
                id: ContractID(Digest32([UInt8](repeating: UInt8(index + 1), count: 32))!), stakeholders: parties,
                stored: [UInt8(index)])
        }
        return AcsSnapshot(
            domain: "domain1::1220cc", exporter: "participant3", counterParticipant: "participant1", fromExclusive: 1,
            toInclusive: 2, exporterNextCounter: 0, exporterLastTimestamp: 3, contracts: contracts)
    }

    @Test func aContractCountsOnlyWhenTheExporterAndTheImporterEachHostOneOfItsStakeholders() throws {
        try Self.snapshot([["alice", "depository"], ["alice", "bank", "depository"]]).requireShared(hosts: Self.hosts)
        for (groups, refused) in [
            ([["alice", "depository"], ["bank", "alice"]], ["alice", "bank"]),  // the exporter hosts neither
            ([["depository"]], ["depository"]),  // the importer hosts none
            ([["bank"]], ["bank"]),  // neither
        ] {
            let snapshot = Self.snapshot(groups)
            let contract = try #require(snapshot.contracts.first { Set($0.stakeholders) == Set(refused) })
            #expect(
                throws: RepairError.contractNotShared(
                    contract: contract.id.description, stakeholders: refused, exporter: "participant3",
                    participant: "participant1", periodEnd: 2)
            ) { try snapshot.requireShared(hosts: Self.hosts) }
        }
    }
}
