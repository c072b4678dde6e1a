import Foundation
import WeftParticipant
import WeftTopology
import WeftTransport
import WeftWire

/// The pruning methods of `weft.v1.ParticipantAdministrationService` (docs/participant.md,
/// "Pruning"). Both need the connected node: it holds the ledger end and refuses reads below
/// the pruned offset, so the prune must go through it.
extension ParticipantAdministration {
    func getPruningSafePoint(_ request: Weft.V1.GetPruningSafePointRequest, context: RPCCallContext)
        async throws -> Weft.V1.GetPruningSafePointResponse
    {
        let point = try await connectedNode().pruningSafePoint()
        return .init(
            safePoint: point.safePointMicros.map { .init(microsSinceEpoch: $0) },
            safeOffset: UInt64(max(0, point.safeOffset ?? 0)), prunedOffset: UInt64(point.prunedOffset))
    }

    func pruneParticipant(_ request: Weft.V1.PruneParticipantRequest, context: RPCCallContext)
        async throws -> Weft.V1.PruneParticipantResponse
    {
        let node = try await connectedNode()
        guard request.offset <= UInt64(Int64.max) else {
            throw RPCError(
                .invalidArgument, "offset \(request.offset) is not a ledger offset; `weft ledger-end` prints the last one",
                errorID: "PARTICIPANT_PRUNE_OFFSET_OUT_OF_RANGE")
        }
        let outcome: PruneOutcome
        do {
            outcome = try await node.prune(upTo: Int64(request.offset), ignoreCommitments: request.ignoreCommitments)
        } catch let error as ParticipantError {
            switch error {
            case .pruneOffsetOutOfRange: throw RPCError(.invalidArgument, error.description, errorID: error.id)
            case .pruneBeyondSafePoint: throw RPCError(.failedPrecondition, error.description, errorID: error.id)
            default: throw RPCError(.internal, error.description, errorID: error.id)
            }
        }
        return .init(
            prunedOffset: UInt64(outcome.prunedOffset),
            recordTime: outcome.recordTimeMicros == 0 ? nil : .init(microsSinceEpoch: outcome.recordTimeMicros),
            safePoint: outcome.safePointMicros.map { .init(microsSinceEpoch: $0) }, forced: outcome.forced,
            unconfirmed: outcome.unconfirmed.map {
                .init(counterParticipant: $0.counterParticipant, oldestPeriodEnd: .init(microsSinceEpoch: $0.oldestPeriodEndMicros))
            }, transactionsRemoved: UInt64(outcome.counts.transactions),
            archivedContractsRemoved: UInt64(outcome.counts.archivedContracts))
    }

    private func connectedNode() async throws -> ParticipantNode {
        guard let node = await runtime.node else {
            throw RPCError(
                .unavailable,
                "participant \(runtime.identity.id) is not connected to a domain; connect it (`weft participant connect-multi`) before pruning",
                errorID: "PARTICIPANT_NOT_CONNECTED")
        }
        return node
    }
}
