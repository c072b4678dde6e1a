import WeftContracts
public import WeftCrypto
import WeftSequencer
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

/// Repair from peers (docs/operator-guide.md, "Recovery: repair from peers"): a participant
/// exports the contracts it shares with a counter-participant; that counter-participant, after
/// losing its database, imports them once they hash to the commitment the exporter sent it
/// through the sequencer for the snapshot's period.
extension ParticipantNode {
    /// The contracts this participant shares with `counterParticipant`, for the commitment
    /// period ending at `toInclusive` (default: the latest it computed), with its topology
    /// history and stream position. Refused when the shared contracts changed since that
    /// period ended (the importer could not check them): export again after the next period.
    public func exportACS(for counterParticipant: UniqueIdentifier, at toInclusive: Int64? = nil) async throws
        -> AcsSnapshot
    {
        let counter = counterParticipant.description
        guard let sent = try await commitmentStore.sent(to: counter, toInclusive: toInclusive) else {
            throw RepairError.nothingToExport(
                "no commitment to \(counter) that reached the sequencer for "
                    + (toInclusive.map { "period end \($0)" }
                        ?? "any period (no shared contracts, or no period has ended yet)")
                    + "; wait for the next reconciliation interval (`weft commitments` lists the periods)")
        }
        let shared = commitmentRuntime.tracker.shared(
            with: counter, me: identity.id.description, only: [], hosts: hosts(await topology.snapshot(at: now)))
        let ids = Set(shared.values.flatMap { $0.contracts.keys })
        let contracts = try await commitmentStore.activeContracts().filter { ids.contains($0.id) }.map {
            AcsSnapshot.Contract(id: $0.id, stakeholders: $0.stakeholders, stored: $0.stored)
        }
        let snapshot = AcsSnapshot(
            domain: domain.description, exporter: identity.id.description, counterParticipant: counter, fromExclusive: sent.fromExclusive,
            toInclusive: sent.toInclusive, exporterNextCounter: cursor.nextCounter,
            exporterLastTimestamp: cursor.lastTimestamp?.microsSinceEpoch ?? 0, contracts: contracts,
            topology: await topology.history)
        guard snapshot.commitment == sent.commitment else {
            throw RepairError.nothingToExport(
                "the contracts shared with \(counter) changed after the last commitment period "
                    + "\(sent.fromExclusive)..\(sent.toInclusive); export again once the next period has ended")
        }
        logger.info(
            "ACS snapshot exported",
            metadata: [
                LogKey.counterParticipant: "\(counter)", LogKey.period: "\(sent.fromExclusive)..\(sent.toInclusive)",
                LogKey.activeContracts: "\(contracts.count)",
            ])
        return snapshot
    }

    /// Imports a peer's snapshot into this participant's new, empty store, before its stream
    /// is read (the node started with `processing: false`), then lets it continue from its
    /// first event after the snapshot's period (`beginProcessing()`, done here).
    ///
    /// The check: the node applies the snapshot's topology history (validated from the
    /// domain's root), reads its own stream from the first event the sequencer still has —
    /// refusing the snapshot if an event after the period end was pruned — and looks for the
    /// commitment the exporter sent it for the snapshot's period (signature checked with the
    /// exporter's key). The snapshot's contracts must hash to that commitment; otherwise
    /// nothing is imported. Each contract's stakeholders must be the signatories and observers
    /// its stored data names (the commitment covers the data, not the snapshot's list of them),
    /// and include a party the exporter hosts and one this participant hosts, by the topology at
    /// the period's end (`AcsSnapshot.requireShared(hosts:)`): an honest exporter commits only to
    /// such contracts, so for any other its signature proves nothing — a malicious exporter could
    /// otherwise make up contracts between parties it does not host and have them imported.
    /// Events up to the period end are not processed: their effects on shared contracts are in
    /// the snapshot.
    ///
    /// With `thenProcess: false` further snapshots — from the other peers this participant
    /// shares contracts with — may follow, for the same period, also after a restart of the
    /// node (`repairedPeriodEnd`); a contract shared with several peers is stored once (it must
    /// be byte-identical in each). Returns how many contracts this snapshot added.
    @discardableResult
    public func importACS(
        _ snapshot: AcsSnapshot, commitmentTimeout: Duration = .seconds(30), thenProcess: Bool = true
    ) async throws -> Int {
        guard snapshot.counterParticipant == identity.id.description, snapshot.domain == domain.description else {
            throw RepairError.notForThisParticipant(
                snapshotFor: "\(snapshot.counterParticipant) on \(snapshot.domain)")
        }
        guard !processingStarted else { throw RepairError.notEmpty("the node reads its sequencer stream already") }
        let imported = repairedPeriodEnd
        if let imported {
            guard imported == snapshot.toInclusive else {
                throw RepairError.periodDiffers(imported: imported, snapshot: snapshot.toInclusive)
            }
        } else {
            guard cursor.nextCounter == 0, ledgerEndOffset == 0, active.isEmpty else {
                throw RepairError.notEmpty(
                    "this participant's store holds \(active.count) active contracts and its stream position is \(cursor.nextCounter)"
                )
            }
        }
        do {
            if !(await topology.isInitialized) {
                let history = Weft.V1.TopologySnapshot(domain: domain.description, transactions: snapshot.topology)
                try await topology.apply(
                    Weft.V1.EnvelopeContent(message: .topologySnapshot(history)),
                    sequencedAt: SequencingTimestamp(microsSinceEpoch: snapshot.exporterLastTimestamp + 1),
                    sender: MemberID(role: .sequencer, identifier: domain).description)
            }
            // The first snapshot's scan finds the position after the period. A later snapshot's
            // exporter may have sent its commitment after the one that scan stopped at: then the
            // stream is read again from its start (the commitments already stored are skipped).
            var position: ParticipantStore.Cursor?
            let storedAlready = try await commitmentStore.received(
                from: snapshot.exporter, toInclusive: snapshot.toInclusive)
            if imported == nil || storedAlready == nil {
                position = try await Self.within(commitmentTimeout) {
                    try await self.scanForCommitment(of: snapshot)
                }
            }
            guard
                let received = try await commitmentStore.received(
                    from: snapshot.exporter, toInclusive: snapshot.toInclusive), imported != nil || position != nil
            else {
                let latest = try await commitmentStore.latestReceived(from: snapshot.exporter)
                throw RepairError.noCommitmentForPeriod(
                    exporter: snapshot.exporter, fromExclusive: snapshot.fromExclusive,
                    toInclusive: snapshot.toInclusive, latest: latest.map { ($0.fromExclusive, $0.toInclusive) })
            }
            try snapshot.verify(against: received)
            let decoded = try AcsSnapshot.decodeContracts(snapshot)
            // The signature vouches only for groups the exporter shares with this participant
            // (the rule its commitment was computed by), in the topology in force at the
            // period's end; the snapshot's stakeholder lists are the contracts' own by now.
            let atPeriodEnd = await topology.snapshot(
                at: SequencingTimestamp(microsSinceEpoch: snapshot.toInclusive + 1))
            try snapshot.requireShared(hosts: hosts(atPeriodEnd))
            try await drainWrites()  // the store changes in stream order
            let added = try await store.importContracts(decoded.map { $0.contract }, cursor: position)
            for (contract, instance, seed) in decoded where active[contract.id] == nil {
                active[contract.id] = (instance, seed)
                known.insert(contract.id)
                commitmentRuntime.tracker.add(
                    id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored)
            }
            if let position {
                cursor = position
                cursorStored(position)
            }
            repairedAt = snapshot.toInclusive
            logger.info(
                "ACS snapshot imported",
                metadata: [
                    LogKey.sender: "\(snapshot.exporter)",
                    LogKey.period: "\(snapshot.fromExclusive)..\(snapshot.toInclusive)",
                    LogKey.counter: "\(cursor.nextCounter)",
                    "weft.participant.contracts_added": "\(added)",
                    "weft.participant.contracts_in_snapshot": "\(snapshot.contracts.count)",
                ])
            if thenProcess { finishRepair() }
            return added
        } catch let error as RepairError {
            logger.error(
                "ACS snapshot refused; nothing was imported",
                metadata: ["error_id": "\(error.id)", "error": "\(error)", LogKey.sender: "\(snapshot.exporter)"])
            throw error
        }
    }

    /// Ends a repair whose snapshots were imported with `thenProcess: false`: the node becomes
    /// ready and reads its stream from the first event after their period. The node's owner
    /// calls it once it has recorded that the repair finished (a restart must not wait for
    /// an import again).
    public func finishRepair() {
        becomeReady()
        recovery.replay = nil
        beginReplay()
        beginProcessing()
    }

    /// The period end of the snapshots imported so far; nil before the first.
    ///
    /// This node keeps it in memory. After a restart between two imports (a killed process)
    /// it is read back from what the first import stored in one database transaction with its
    /// contracts: the cursor, whose time is the period end. A store that holds contracts but
    /// committed no transaction and computed no commitment period of its own, on a node that
    /// has not read its stream, holds only imported contracts and that cursor still (a node
    /// not reading its stream does not move it). Without this the restarted node counted as
    /// not empty and refused the remaining peers' snapshots.
    public var repairedPeriodEnd: Int64? {
        if let repairedAt { return repairedAt }
        guard !processingStarted, ledgerEndOffset == 0, pending.isEmpty, !active.isEmpty, cursor.nextCounter > 0,
            commitmentRuntime.lastPeriodEnd == 0
        else { return nil }
        return cursor.lastTimestamp?.microsSinceEpoch
    }

    /// Reads this participant's stream from the first event the sequencer still has until the
    /// exporter's commitment for the snapshot's period is stored; returns the position after
    /// the snapshot's period: the first event sequenced after its end. Throws when an event
    /// after the end was pruned. Every commitment after the end is checked (signature with its
    /// sender's key, `receive(commitment:…)`) and stored, whoever sent it, as processing the
    /// stream from that position would: the other peers' snapshots for the same period are
    /// checked against theirs without reading the stream again.
    private func scanForCommitment(of snapshot: AcsSnapshot) async throws -> ParticipantStore.Cursor {
        let end = snapshot.toInclusive
        var from: UInt64 = 0
        var position: ParticipantStore.Cursor?
        while true {
            do {
                for try await event in connection.events(from: from) {
                    let timestamp = SequencingTimestamp(event.timestamp ?? .init(microsSinceEpoch: 0))
                    if event.counter == from, from > 0, timestamp.microsSinceEpoch > end {
                        throw RepairError.snapshotBeforePruningPoint(
                            toInclusive: end, firstAvailableCounter: from, firstAvailableAt: timestamp.microsSinceEpoch)
                    }
                    guard timestamp.microsSinceEpoch > end else { continue }
                    if position == nil {
                        position = .init(
                            nextCounter: event.counter, lastTimestamp: SequencingTimestamp(microsSinceEpoch: end))
                    }
                    guard case .deliver(let deliver)? = event.event else { continue }
                    for envelope in deliver.batch?.envelopes ?? [] {
                        guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content),
                            case .signedMessage(let message)? = content.message, Self.isCommitment(message)
                        else { continue }
                        try await receive(commitment: message, from: deliver.sender, at: timestamp)
                    }
                    if try await commitmentStore.received(from: snapshot.exporter, toInclusive: end) != nil,
                        let position
                    {
                        return position
                    }
                }
                throw CancellationError()
            } catch let error as RPCError where error.errorID == "SEQUENCER_EVENTS_PRUNED" && from == 0 {
                guard let first = Self.firstAvailableCounter(error.message) else { throw error }
                from = first
            }
        }
    }

    /// The first counter the sequencer still has, from its `SEQUENCER_EVENTS_PRUNED` message
    /// ("… subscribe from N").
    static func firstAvailableCounter(_ message: String) -> UInt64? {
        guard let range = message.range(of: "subscribe from ", options: .backwards) else { return nil }
        return UInt64(message[range.upperBound...].prefix { $0.isNumber })
    }

    /// The result of `body`, or nil when `timeout` passes first (`body` is then cancelled).
    @_spi(Testing) public static func within<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T)
        async throws -> T?
    {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}

extension AcsSnapshot {
    /// Each contract's stored bytes decoded, checked to carry the contract's id and the
    /// snapshot's stakeholders; the contract returned has the stakeholders its data names.
    ///
    /// The commitment covers a contract's id and data, not the stakeholder list beside them,
    /// and that list decides whose active contracts it is here (the Ledger API reads by it): a
    /// changed list would hide a contract from a party. It must be the contract's signatories
    /// and observers, the rule the participant stores a contract it commits by.
    static func decodeContracts(_ snapshot: AcsSnapshot) throws
        -> [(contract: Contract, instance: ContractInstance, seed: NodeSeed?)]
    {
        try snapshot.contracts.map { contract in
            let (id, instance, seed) = try ContractInstance.fromWire(
                Weft.V1.ContractInstance(serializedBytes: contract.stored))
            guard id == contract.id else {
                throw RepairError.conflictingContract("\(contract.id) (its stored data carries id \(id))")
            }
            let stakeholders = instance.stakeholders.map(\.id)
            guard Set(contract.stakeholders) == Set(stakeholders) else {
                throw RepairError.stakeholdersDiffer(
                    contract: contract.id.description, inSnapshot: contract.stakeholders, ofContract: stakeholders)
            }
            return (
                contract: Contract(id: id, stakeholders: stakeholders, stored: contract.stored), instance: instance,
                seed: seed
            )
        }
    }
}

extension ParticipantStore {
    /// Stores imported contracts as active, each once: a contract stored already with the same
    /// data is kept; one stored with other data refuses the whole import (one transaction).
    /// Imported contracts have no creating transaction here: their `created_offset` is 0.
    public func importContracts(_ contracts: [AcsSnapshot.Contract]) async throws -> Int {
        try await importContracts(contracts, cursor: nil)
    }

    /// With `cursor`, the stream position is stored in the same transaction.
    func importContracts(_ contracts: [AcsSnapshot.Contract], cursor: Cursor?) async throws -> Int {
        let me = PostgresValue.text(participant.description)
        return try await database.transaction { connection in
            if let cursor { try Self.move(cursor, connection, me) }
            var added = 0
            for contract in contracts {
                let inserted = try connection.execute(
                    """
                    INSERT INTO participant_contracts (participant, contract_id, template, stakeholders, contract, created_offset)
                    VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT DO NOTHING RETURNING 1
                    """,
                    [
                        me, .text(contract.id.description),
                        .text(try Self.templateName(contract.stored)),
                        Self.textArray(contract.stakeholders), .bytes(contract.stored),
                    ])
                if !inserted.rows.isEmpty {
                    added += 1
                    continue
                }
                let same = try connection.execute(
                    """
                    SELECT 1 FROM participant_contracts
                    WHERE participant = $1 AND contract_id = $2 AND contract = $3 AND archived_offset IS NULL
                    """, [me, .text(contract.id.description), .bytes(contract.stored)])
                if same.rows.isEmpty { throw RepairError.conflictingContract(contract.id.description) }
            }
            return added
        }
    }

    private static func templateName(_ stored: [UInt8]) throws -> String {
        try ContractInstance.fromWire(Weft.V1.ContractInstance(serializedBytes: stored)).1.template.name
    }
}

extension CommitmentStore {
    /// The commitment this participant sent `counterParticipant` for the period ending at
    /// `toInclusive`, or the latest one; only one the sequencer took: the importer checks the
    /// snapshot against the commitment it reads from its stream, and a recorded one whose send
    /// was lost never gets there.
    func sent(to counterParticipant: String, toInclusive: Int64?) async throws -> ReceivedCommitment? {
        try await latest(
            """
            SELECT from_exclusive, to_inclusive, commitment FROM participant_sent_commitments
            WHERE participant = $1 AND counter_participant = $2 AND sent
              AND ($3::bigint = 0 OR to_inclusive = $3::bigint)
            ORDER BY to_inclusive DESC LIMIT 1
            """, [.text(participant), .text(counterParticipant), .int64(toInclusive ?? 0)], sender: participant,
            to: counterParticipant)
    }

    /// The commitment received from `counterParticipant` for the period ending at `toInclusive`.
    func received(from counterParticipant: String, toInclusive: Int64) async throws -> ReceivedCommitment? {
        try await latest(
            """
            SELECT from_exclusive, to_inclusive, commitment FROM participant_received_commitments
            WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3
            """, [.text(participant), .text(counterParticipant), .int64(toInclusive)], sender: counterParticipant,
            to: participant)
    }

    /// The latest commitment received from `counterParticipant`.
    func latestReceived(from counterParticipant: String) async throws -> ReceivedCommitment? {
        try await latest(
            """
            SELECT from_exclusive, to_inclusive, commitment FROM participant_received_commitments
            WHERE participant = $1 AND counter_participant = $2 ORDER BY to_inclusive DESC LIMIT 1
            """, [.text(participant), .text(counterParticipant)], sender: counterParticipant, to: participant)
    }

    private func latest(_ sql: String, _ parameters: [PostgresValue], sender: String, to: String) async throws
        -> ReceivedCommitment?
    {
        try await database.withConnection { connection in
            try connection.execute(sql, parameters).rows.first.map { row in
                ReceivedCommitment(
                    sender: sender, counterParticipant: to,
                    fromExclusive: try ParticipantStore.require(row[0].int64, "from_exclusive"),
                    toInclusive: try ParticipantStore.require(row[1].int64, "to_inclusive"),
                    commitment: try ParticipantStore.require(row[2].bytes, "commitment"))
            }
        }
    }
}
