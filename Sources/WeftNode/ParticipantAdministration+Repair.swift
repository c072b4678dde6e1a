import WeftCrypto
import WeftParticipant
import WeftTopology
import WeftTransport
import WeftWire

/// The repair methods of `weft.v1.ParticipantAdministrationService` (docs/operator-guide.md
/// §7.2, "Recovery: repair from peers"): a peer exports the contracts it shares with a
/// participant that lost its database after the sequencer pruned its stream; that
/// participant, connected for repair (held: it does not process its stream), imports the
/// peers' snapshots, each checked against the commitment its exporter sent through the
/// sequencer, and then processes its stream from the first event after their period.
extension ParticipantAdministration {
    /// Contracts per `ExportAcsResponse` are batched up to this many bytes: well under the
    /// transport's message limit (`RPCConfiguration.maximumMessageBytes`, 4 MiB by default),
    /// whatever the limit is configured to.
    var exportBatchBytes: Int { AcsSnapshot.streamBatchBytes(messageLimit: runtime.rpc.maximumMessageBytes) }

    /// Snapshots one `ImportAcs` call accepts: one per peer the participant shares contracts
    /// with; the bound keeps a mistaken client from making the node buffer without end.
    static let importSnapshotsMax = 1024

    func exportAcs(
        _ request: Weft.V1.ExportAcsRequest, responses: RPCMessageWriter<Weft.V1.ExportAcsResponse>,
        context: RPCCallContext
    ) async throws {
        let counter: UniqueIdentifier
        do {
            counter = try UniqueIdentifier(parsing: request.counterParticipant)
        } catch {
            throw RPCError(
                .invalidArgument,
                "counter participant \"\(request.counterParticipant)\" is not a participant id (name::1220…); `weft participant id` on that node prints it: \(error)",
                errorID: "PARTICIPANT_REPAIR_ARGUMENTS")
        }
        guard let node = await runtime.node, !(await runtime.heldForRepair) else {
            throw RPCError(
                .unavailable,
                "participant \(runtime.identity.id) is not connected to a domain and processing its stream; a snapshot is exported by a connected peer",
                errorID: "PARTICIPANT_NOT_CONNECTED")
        }
        let snapshot: AcsSnapshot
        do {
            snapshot = try await node.exportACS(for: counter, at: request.periodEnd?.microsSinceEpoch)
        } catch let error as RepairError {
            throw Self.status(error)
        }
        let (header, batches) = snapshot.streamed(batchBytes: exportBatchBytes)
        try await responses.send(.init(header: header))
        for batch in batches { try await responses.send(.init(snapshotContracts: batch)) }
    }

    func importAcs(_ requests: RPCMessageStream<Weft.V1.ImportAcsRequest>, context: RPCCallContext) async throws
        -> Weft.V1.ImportAcsResponse
    {
        var wires: [Weft.V1.AcsSnapshot] = []
        for try await request in requests {
            if var header = request.header {
                guard wires.count < Self.importSnapshotsMax else {
                    throw RPCError(
                        .invalidArgument, "more than \(Self.importSnapshotsMax) snapshots in one import; import them in several calls",
                        errorID: "PARTICIPANT_REPAIR_ARGUMENTS")
                }
                header.contracts += request.snapshotContracts
                wires.append(header)
            } else if !request.snapshotContracts.isEmpty {
                guard !wires.isEmpty else {
                    throw RPCError(
                        .invalidArgument, "contracts came before a snapshot header; send each snapshot's header first",
                        errorID: "PARTICIPANT_REPAIR_ARGUMENTS")
                }
                wires[wires.count - 1].contracts += request.snapshotContracts
            }
        }
        guard !wires.isEmpty else {
            throw RPCError(
                .invalidArgument, "no snapshot in the import; give the files `weft repair export-acs` wrote on the peers",
                errorID: "PARTICIPANT_REPAIR_ARGUMENTS")
        }
        var snapshots: [AcsSnapshot] = []
        do {
            for wire in wires { snapshots.append(try AcsSnapshot(wire: wire)) }
        } catch {
            throw Self.status(error)
        }
        let added = try await runtime.importSnapshots(snapshots)
        return .init(
            imported: UInt64(added.reduce(0, +)),
            snapshots: zip(snapshots, added).map { snapshot, added in
                .init(
                    exporter: snapshot.exporter, fromExclusive: .init(microsSinceEpoch: snapshot.fromExclusive),
                    toInclusive: .init(microsSinceEpoch: snapshot.toInclusive),
                    contractsInSnapshot: UInt64(snapshot.contracts.count), contractsAdded: UInt64(added))
            }, nextCounter: await runtime.node?.nextCounter ?? 0)
    }

    /// A refused repair as a gRPC status that keeps its Weft error id: INVALID_ARGUMENT for
    /// what is wrong with the request itself, FAILED_PRECONDITION for what does not fit the
    /// participant's or the domain's state.
    static func status(_ error: RepairError) -> RPCError {
        switch error {
        case .malformedSnapshot, .notForThisParticipant, .periodDiffers:
            RPCError(.invalidArgument, error.description, errorID: error.id)
        default:
            RPCError(.failedPrecondition, error.description, errorID: error.id)
        }
    }
}

extension ParticipantRuntime {
    /// Imports the peers' snapshots into the node held for repair, in order, then lets it
    /// process its stream; returns how many contracts each added. Checked before anything is
    /// imported: the node is held, the snapshots are for this participant and one period,
    /// from different exporters. A snapshot refused after others were imported leaves them
    /// imported and the node held: import the remaining ones (the same period) again.
    func importSnapshots(_ snapshots: [AcsSnapshot]) async throws -> [Int] {
        guard let node, heldForRepair else {
            throw RPCError(
                .failedPrecondition,
                "participant \(identity.id) is not held for repair: after losing its database, connect it with `weft participant connect-multi … --repair`, then import",
                errorID: "PARTICIPANT_NOT_HELD_FOR_REPAIR")
        }
        guard !repairImportRunning else {
            throw RPCError(
                .failedPrecondition, "another import into this participant is running; wait for its outcome",
                errorID: "PARTICIPANT_REPAIR_IMPORT_RUNNING")
        }
        let period = await node.repairedPeriodEnd ?? snapshots[0].toInclusive
        if let other = snapshots.first(where: { $0.toInclusive != period }) {
            throw ParticipantAdministration.status(.periodDiffers(imported: period, snapshot: other.toInclusive))
        }
        let exporters = snapshots.map(\.exporter)
        guard Set(exporters).count == exporters.count else {
            throw RPCError(
                .invalidArgument, "two snapshots from the same exporter; give one file per peer",
                errorID: "PARTICIPANT_REPAIR_ARGUMENTS")
        }
        repairImportRunning = true
        defer { repairImportRunning = false }
        var added: [Int] = []
        do {
            for snapshot in snapshots { added.append(try await node.importACS(snapshot, thenProcess: false)) }
        } catch let error as RepairError {
            throw ParticipantAdministration.status(error)
        }
        try await releaseFromRepair()
        return added
    }
}
