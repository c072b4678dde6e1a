public import WeftContracts
import WeftCrypto
public import WeftWire

/// The contracts a participant shares with one counter-participant, as it stores them, taken
/// to repair that counter-participant after it lost its database and the sequencer pruned the
/// stream a replay would need (docs/operator-guide.md, "Recovery: repair from peers").
///
/// It names the commitment period its contracts correspond to: the exporter takes it only when
/// its shared contracts have not changed since that period's end, so the commitment it sent
/// for that period — which the importer reads from the sequencer, signed — commits to exactly
/// these contracts. The importer recomputes the commitment from the contracts and refuses the
/// snapshot unless it is equal (`verify(against:)`): it needs to trust neither the file nor
/// whoever carried it, only the exporter's signature on what went through the sequencer — and
/// that signature only for the stakeholder groups the exporter shares with it (each hosts one
/// of the group's parties, `requireShared(hosts:)`), the only ones an honest exporter commits
/// to; a contract of any other group refuses the snapshot.
public struct AcsSnapshot: Sendable, Equatable {
    /// One shared contract as the exporter stores it.
    public struct Contract: Sendable, Equatable {
        public let id: ContractID
        /// The contract's stakeholders (party ids), which decide who shares it. Not covered
        /// by the commitment: the importer refuses a list other than the signatories and
        /// observers `stored` names (`RepairError.stakeholdersDiffer`).
        public let stakeholders: [String]
        /// The stored `weft.v1.ContractInstance` bytes (with the creation seed as salt).
        public let stored: [UInt8]

        public init(id: ContractID, stakeholders: [String], stored: [UInt8]) {
            self.id = id
            self.stakeholders = stakeholders
            self.stored = stored
        }
    }

    /// The domain whose commitments the snapshot is checked against.
    public let domain: String
    /// The participant that exported the snapshot.
    public let exporter: String
    /// The participant it was exported for.
    public let counterParticipant: String
    /// The commitment period `(fromExclusive, toInclusive]` (µs) the contracts correspond to.
    public let fromExclusive: Int64
    public let toInclusive: Int64
    /// The exporter's sequencer position when it exported: the next counter it would process
    /// and the sequencing time of the last event it processed.
    public let exporterNextCounter: UInt64
    public let exporterLastTimestamp: Int64
    /// The shared contracts, sorted by id.
    public let contracts: [Contract]
    /// The domain's topology history as the exporter has it: the importer's own history was
    /// pruned with its stream. Each transaction is validated from the domain's root
    /// delegation on import, as a history from the sequencers is; nothing of it is trusted.
    public let topology: [Weft.V1.StoredTopologyTransaction]

    public init(
        domain: String, exporter: String, counterParticipant: String, fromExclusive: Int64, toInclusive: Int64,
        exporterNextCounter: UInt64, exporterLastTimestamp: Int64, contracts: [Contract],
        topology: [Weft.V1.StoredTopologyTransaction] = []
    ) {
        self.domain = domain
        self.exporter = exporter
        self.counterParticipant = counterParticipant
        self.fromExclusive = fromExclusive
        self.toInclusive = toInclusive
        self.exporterNextCounter = exporterNextCounter
        self.exporterLastTimestamp = exporterLastTimestamp
        self.contracts = contracts.sorted { $0.id.description < $1.id.description }
        self.topology = topology
    }

    /// The same snapshot with other contracts (what a tampered file amounts to; for tests).
    public func replacingContracts(_ contracts: [Contract]) -> AcsSnapshot {
        AcsSnapshot(
            domain: domain, exporter: exporter, counterParticipant: counterParticipant, fromExclusive: fromExclusive,
            toInclusive: toInclusive, exporterNextCounter: exporterNextCounter,
            exporterLastTimestamp: exporterLastTimestamp, contracts: contracts, topology: topology)
    }

    /// The snapshot as its file holds it: a `weft.v1.AcsSnapshot` message.
    public var wire: Weft.V1.AcsSnapshot {
        Weft.V1.AcsSnapshot(
            domain: domain, exporter: exporter, counterParticipant: counterParticipant,
            fromExclusive: .init(microsSinceEpoch: fromExclusive), toInclusive: .init(microsSinceEpoch: toInclusive),
            exporterNextCounter: exporterNextCounter,
            exporterLastTimestamp: .init(microsSinceEpoch: exporterLastTimestamp),
            contracts: contracts.map {
                Weft.V1.AcsSnapshotContract(
                    contractID: $0.id.description, stakeholders: $0.stakeholders, contract: $0.stored)
            }, topology: topology)
    }

    /// The batch size for a stream whose messages may be `messageLimit` bytes: a quarter of
    /// it, at most 1 MiB, leaving room for the message's framing and a large contract.
    public static func streamBatchBytes(messageLimit: Int) -> Int { max(1, min(1 << 20, messageLimit / 4)) }

    /// The snapshot as a stream carries it (`ExportAcs`, `ImportAcs`): its header (the message
    /// without contracts), then its contracts in batches of at most `batchBytes` each (a
    /// contract larger than that alone), so that no message nears the transport's limit.
    public func streamed(batchBytes: Int) -> (header: Weft.V1.AcsSnapshot, batches: [[Weft.V1.AcsSnapshotContract]]) {
        let wire = self.wire
        var header = wire
        header.contracts = []
        var batches: [[Weft.V1.AcsSnapshotContract]] = []
        var batch: [Weft.V1.AcsSnapshotContract] = []
        var size = 0
        for contract in wire.contracts {
            // The contract's bytes, id and stakeholders, with room for the field tags and lengths.
            let bytes = contract.contract.count + contract.contractID.utf8.count
                + contract.stakeholders.reduce(0) { $0 + $1.utf8.count + 8 } + 16
            if !batch.isEmpty, size + bytes > batchBytes {
                batches.append(batch)
                batch = []
                size = 0
            }
            batch.append(contract)
            size += bytes
        }
        if !batch.isEmpty { batches.append(batch) }
        return (header, batches)
    }

    /// Reads a snapshot file's bytes; a file that is not a complete snapshot is refused typed.
    public init(serializedBytes bytes: [UInt8]) throws(RepairError) {
        let wire: Weft.V1.AcsSnapshot
        do {
            wire = try Weft.V1.AcsSnapshot(serializedBytes: bytes)
        } catch {
            throw .malformedSnapshot("it does not decode as weft.v1.AcsSnapshot (\(error))")
        }
        try self.init(wire: wire)
    }

    /// A snapshot from its message (a file's, or one reassembled from an `ImportAcs` stream);
    /// one that is not complete is refused typed.
    public init(wire: Weft.V1.AcsSnapshot) throws(RepairError) {
        guard let from = wire.fromExclusive?.microsSinceEpoch, let to = wire.toInclusive?.microsSinceEpoch, from < to,
            !wire.exporter.isEmpty, !wire.counterParticipant.isEmpty
        else { throw .malformedSnapshot("the exporter, the participant or the period is missing") }
        var contracts: [Contract] = []
        for contract in wire.contracts {
            guard let id = ContractID(hex: contract.contractID), !contract.stakeholders.isEmpty else {
                throw .malformedSnapshot("contract '\(contract.contractID)' has no valid id or no stakeholders")
            }
            contracts.append(Contract(id: id, stakeholders: contract.stakeholders, stored: contract.contract))
        }
        self.init(
            domain: wire.domain, exporter: wire.exporter, counterParticipant: wire.counterParticipant,
            fromExclusive: from, toInclusive: to, exporterNextCounter: wire.exporterNextCounter,
            exporterLastTimestamp: wire.exporterLastTimestamp?.microsSinceEpoch ?? 0, contracts: contracts,
            topology: wire.topology)
    }

    /// The commitment the exporter computes for these contracts when it shares all of them
    /// with the counter-participant: the digest of the sum of the stakeholder groups' LtHash16
    /// (CommitmentTracker's rule). Empty when there are no contracts (nothing is committed to).
    /// It counts every group as shared, which it knows no topology to check: an importer also
    /// calls `requireShared(hosts:)`, or a commitment over groups the exporter does not share
    /// with it would match.
    public var commitment: [UInt8] {
        var tracker = CommitmentTracker()
        for contract in contracts {
            tracker.add(id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored)
        }
        return tracker.commitments(me: exporter, hosts: { [exporter] _ in [exporter, counterParticipant] })[counterParticipant] ?? []
    }

    /// Refuses the snapshot unless each of its contracts belongs to a stakeholder group that
    /// the exporter and the counter-participant share by `hosts` (the participants hosting a
    /// party of the group, by the topology at the period's end): each hosts one of its
    /// stakeholders, any permission but disabled.
    ///
    /// The commitment is only as good as its signer's word, and an honest signer's word covers
    /// only the groups it shares with the counter-participant: `CommitmentTracker.commitments`
    /// counts a group towards a counter-participant only when both host one of its parties —
    /// the same rule (`CommitmentTracker.shared(with:…)`) is applied here. A contract of any
    /// other group is one the exporter could not have committed to honestly: it does not host
    /// the parties whose contract it would be, so it never validated it (a made-up IOU between
    /// two parties of other participants, with an id from a chosen seed, passes every other
    /// check), or this participant hosts none of its parties and would store a contract that is
    /// not its own. `commitment` sums every group of the snapshot, so without this check a
    /// signed commitment over such a contract matched it.
    public func requireShared(hosts: (StakeholderGroup) -> Set<String>) throws(RepairError) {
        var tracker = CommitmentTracker()
        for contract in contracts {
            tracker.add(id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored)
        }
        let shared = tracker.shared(with: counterParticipant, me: exporter, only: [], hosts: hosts)
        for contract in contracts {
            let group = StakeholderGroup(contract.stakeholders)
            guard shared[group] == nil else { continue }
            throw .contractNotShared(
                contract: contract.id.description, stakeholders: group.parties, exporter: exporter,
                participant: counterParticipant, periodEnd: toInclusive)
        }
    }

    /// Checks the snapshot against the commitment the exporter sent the counter-participant
    /// for the snapshot's period (as read from the sequencer): same sender, same addressee,
    /// same period, same hash.
    public func verify(against received: ReceivedCommitment) throws(RepairError) {
        guard received.sender == exporter, received.counterParticipant == counterParticipant else {
            throw .wrongCommitment(
                "the commitment is from \(received.sender) to \(received.counterParticipant), "
                    + "the snapshot from \(exporter) for \(counterParticipant)")
        }
        guard received.fromExclusive == fromExclusive, received.toInclusive == toInclusive else {
            throw .noCommitmentForPeriod(
                exporter: exporter, fromExclusive: fromExclusive, toInclusive: toInclusive,
                latest: (received.fromExclusive, received.toInclusive))
        }
        let computed = commitment
        guard computed == received.commitment else {
            throw .snapshotMismatch(
                fromExclusive: fromExclusive, toInclusive: toInclusive, onSequencer: received.commitment,
                ofSnapshot: computed)
        }
    }
}

/// A commitment one participant sent another through the sequencer, its signature checked.
public struct ReceivedCommitment: Sendable, Equatable {
    public let sender: String
    public let counterParticipant: String
    public let fromExclusive: Int64
    public let toInclusive: Int64
    public let commitment: [UInt8]

    public init(
        sender: String, counterParticipant: String, fromExclusive: Int64, toInclusive: Int64, commitment: [UInt8]
    ) {
        self.sender = sender
        self.counterParticipant = counterParticipant
        self.fromExclusive = fromExclusive
        self.toInclusive = toInclusive
        self.commitment = commitment
    }
}

/// Why a repair from a peer's snapshot was refused; nothing was imported. Each with a stable
/// id and a message that says what to do next.
public enum RepairError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The snapshot's contracts do not hash to the commitment the exporter sent for its period:
    /// the file was changed, or the exporter's contracts differ from what it committed to.
    case snapshotMismatch(fromExclusive: Int64, toInclusive: Int64, onSequencer: [UInt8], ofSnapshot: [UInt8])
    /// No commitment from the exporter for the snapshot's period is available to check it
    /// against (`latest`: the period of the latest one there is, if any).
    case noCommitmentForPeriod(exporter: String, fromExclusive: Int64, toInclusive: Int64, latest: (Int64, Int64)?)
    /// The commitment given is not the exporter's to this participant.
    case wrongCommitment(String)
    /// The exporter shares no contracts with the counter-participant, or has not computed a
    /// commitment period yet.
    case nothingToExport(String)
    /// The snapshot is for another participant.
    case notForThisParticipant(snapshotFor: String)
    /// The participant's store already holds contracts other than the snapshot's versions of
    /// the same ids: importing would mix two histories.
    case conflictingContract(String)
    /// The participant has processed events or started processing: a snapshot is imported
    /// only into a new, empty store, before the stream is read.
    case notEmpty(String)
    /// Events of this participant between the snapshot's period end and the first event the
    /// sequencer still has were pruned: the snapshot is too old to continue from.
    case snapshotBeforePruningPoint(toInclusive: Int64, firstAvailableCounter: UInt64, firstAvailableAt: Int64)
    /// A second snapshot (from another peer) is for another period than the first one imported.
    case periodDiffers(imported: Int64, snapshot: Int64)
    /// The file is not a complete `weft.v1.AcsSnapshot`.
    case malformedSnapshot(String)
    /// A contract's stakeholders in the snapshot are not the signatories and observers its
    /// stored data names: the file was changed (the commitment covers the data, not the list,
    /// which decides whose active contracts it is).
    case stakeholdersDiffer(contract: String, inSnapshot: [String], ofContract: [String])
    /// A contract's stakeholders do not include a party the exporter hosts and one this
    /// participant hosts, by the topology at the period's end: an honest exporter's
    /// commitment to this participant never covers such a contract, so its signature vouches
    /// for nothing here (`AcsSnapshot.requireShared(hosts:)`).
    case contractNotShared(
        contract: String, stakeholders: [String], exporter: String, participant: String, periodEnd: Int64)

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.description == rhs.description }

    public var id: String {
        switch self {
        case .snapshotMismatch: "PARTICIPANT_REPAIR_SNAPSHOT_MISMATCH"
        case .noCommitmentForPeriod: "PARTICIPANT_REPAIR_NO_COMMITMENT"
        case .wrongCommitment: "PARTICIPANT_REPAIR_WRONG_COMMITMENT"
        case .nothingToExport: "PARTICIPANT_REPAIR_NOTHING_TO_EXPORT"
        case .notForThisParticipant: "PARTICIPANT_REPAIR_NOT_FOR_THIS_PARTICIPANT"
        case .conflictingContract: "PARTICIPANT_REPAIR_CONFLICTING_CONTRACT"
        case .notEmpty: "PARTICIPANT_REPAIR_NOT_EMPTY"
        case .snapshotBeforePruningPoint: "PARTICIPANT_REPAIR_SNAPSHOT_TOO_OLD"
        case .periodDiffers: "PARTICIPANT_REPAIR_PERIOD_DIFFERS"
        case .malformedSnapshot: "PARTICIPANT_REPAIR_MALFORMED_SNAPSHOT"
        case .stakeholdersDiffer: "PARTICIPANT_REPAIR_STAKEHOLDERS_DIFFER"
        case .contractNotShared: "PARTICIPANT_REPAIR_CONTRACT_NOT_SHARED"
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .snapshotMismatch(let from, let to, let expected, let computed):
            text =
                "the snapshot's contracts do not match the exporter's commitment for period \(from)..\(to): "
                + "on the sequencer \(hexText(expected)), of the snapshot \(hexText(computed)); nothing was "
                + "imported: export the snapshot again on the peer and copy the file unchanged"
        case .noCommitmentForPeriod(let exporter, let from, let to, let latest):
            text =
                "no commitment from \(exporter) for period \(from)..\(to) to check the snapshot against"
                + (latest.map { " (the latest is for \($0.0)..\($0.1))" } ?? "")
                + "; export again on the peer after its next commitment period (`weft commitments` shows them)"
        case .wrongCommitment(let detail): text = "the commitment does not belong to this snapshot: \(detail)"
        case .nothingToExport(let detail): text = "nothing to export: \(detail)"
        case .notForThisParticipant(let other):
            text = "the snapshot was exported for \(other), not for this participant; export one for this participant"
        case .conflictingContract(let id):
            text =
                "contract \(id) is stored here with other data than the snapshot's; import only into the "
                + "participant's new, empty database"
        case .notEmpty(let detail):
            text =
                "\(detail); import a snapshot only into the participant's new, empty database, with the node "
                + "started without processing its stream"
        case .snapshotBeforePruningPoint(let to, let counter, let at):
            text =
                "the snapshot is for period end \(to), but the first event the sequencer still has for this "
                + "participant is counter \(counter) at \(at): events in between were pruned; export a newer "
                + "snapshot on the peer (after its next commitment period)"
        case .periodDiffers(let imported, let snapshot):
            text =
                "a snapshot for period end \(imported) was imported already, this one is for \(snapshot); export "
                + "every peer's snapshot for the same period (`--at \(imported)`)"
        case .malformedSnapshot(let detail):
            text = "the file is not an ACS snapshot: \(detail); export it again on the peer and copy it unchanged"
        case .stakeholdersDiffer(let contract, let listed, let named):
            text =
                "contract \(contract) lists stakeholders [\(listed.joined(separator: ", "))] in the snapshot, but its "
                + "data names [\(named.joined(separator: ", "))] (signatories and observers): the file was changed; "
                + "nothing was imported: export the snapshot again on the peer and copy the file unchanged"
        case .contractNotShared(let contract, let stakeholders, let exporter, let participant, let end):
            text =
                "contract \(contract) with stakeholders [\(stakeholders.joined(separator: ", "))] is not shared by "
                + "\(exporter) and \(participant) by the topology at the period's end \(end) (each must host one "
                + "of its stakeholders), so the exporter's commitment cannot vouch for it; nothing was imported: "
                + "import these contracts from a participant that shares them (one hosting a stakeholder of each), "
                + "and check the exporter, which signed a commitment over contracts that are not its to share"
        }
        return "\(id): \(text)"
    }
}
