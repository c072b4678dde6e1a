import Foundation
import WeftCrypto
import WeftParticipant
import WeftTopology
import WeftTransport
import WeftWire

/// The ACS commitment methods of `weft.v1.ParticipantAdministrationService`
/// (docs/participant.md, "ACS commitments"): mismatches and the safe point read the
/// participant's database, so they answer while it is disconnected too; inspecting needs the
/// domain, since the contracts are exchanged through its sequencer.
extension ParticipantAdministration {
    /// Narrowing waits at most this long when the request names no timeout.
    static let defaultNarrowingTimeout: Duration = .seconds(30)

    private var commitmentStore: CommitmentStore {
        CommitmentStore(database: runtime.database, participant: runtime.identity.id.description)
    }

    func listCommitmentMismatches(_ request: Weft.V1.ListCommitmentMismatchesRequest, context: RPCCallContext)
        async throws -> Weft.V1.ListCommitmentMismatchesResponse
    {
        let counter = request.counterParticipant.isEmpty ? nil : try Self.participant(request.counterParticipant).description
        return .init(
            mismatches: try await commitmentStore.mismatches(counterParticipant: counter).map {
                .init(
                    counterParticipant: $0.counterParticipant, fromExclusive: .init(microsSinceEpoch: $0.fromExclusive),
                    toInclusive: .init(microsSinceEpoch: $0.toInclusive), ownCommitment: $0.own,
                    receivedCommitment: $0.received)
            })
    }

    func getCommitmentSafePoint(_ request: Weft.V1.GetCommitmentSafePointRequest, context: RPCCallContext)
        async throws -> Weft.V1.GetCommitmentSafePointResponse
    {
        let point = try await commitmentStore.safePoint()
        return .init(
            safePoint: point.safePoint.map { .init(microsSinceEpoch: $0) },
            firstUnmatched: point.firstUnmatched.map { .init(microsSinceEpoch: $0.toInclusive) },
            firstUnmatchedCounterParticipant: point.firstUnmatched?.counterParticipant ?? "")
    }

    func inspectCommitment(_ request: Weft.V1.InspectCommitmentRequest, context: RPCCallContext)
        async throws -> Weft.V1.InspectCommitmentResponse
    {
        let counter = try Self.participant(request.counterParticipant)
        guard let node = await runtime.node else {
            throw RPCError(
                .unavailable,
                "participant \(runtime.identity.id) is not connected to a domain; connect it (`weft participant connect-multi`) before inspecting commitments",
                errorID: "PARTICIPANT_NOT_CONNECTED")
        }
        let timeout = request.timeoutMillis == 0 ? Self.defaultNarrowingTimeout : .milliseconds(Int(request.timeoutMillis))
        let inspection: CommitmentInspection
        do {
            inspection = try await node.inspectCommitment(
                with: counter, groups: request.stakeholderGroups.map(StakeholderGroup.init(text:)), timeout: timeout)
        } catch let error as ParticipantError {
            if case .unknownCounterParticipant = error { throw RPCError(.notFound, error.description, errorID: error.id) }
            throw RPCError(.deadlineExceeded, error.description, errorID: error.id)
        }
        return .init(
            asOf: inspection.asOf.wire, differingGroups: inspection.differingGroups.map(\.description),
            contracts: inspection.contracts.map {
                .init(contractID: $0.contractID, stakeholderGroup: $0.group.description, kind: Self.kind($0.kind))
            }, contractsOmitted: inspection.contractsOmitted, groupsCompared: UInt32(inspection.groupsCompared))
    }

    private static func kind(_ kind: CommitmentInspection.Kind) -> Weft.V1.ContractDifferenceKind {
        switch kind {
        case .missingThere: .missingThere
        case .missingHere: .missingHere
        case .differentData: .differentData
        }
    }

    /// A participant id from a request, or INVALID_ARGUMENT saying what is expected.
    private static func participant(_ text: String) throws -> UniqueIdentifier {
        do {
            return try UniqueIdentifier(parsing: text)
        } catch {
            throw RPCError(
                .invalidArgument,
                "counter participant \"\(text)\" is not a participant id (name::1220…); `weft participant id` prints one: \(error)",
                errorID: "PARTICIPANT_COMMITMENT_ARGUMENTS")
        }
    }
}
