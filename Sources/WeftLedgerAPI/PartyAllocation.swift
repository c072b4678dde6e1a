import WeftCrypto
import WeftParticipant
public import WeftTopology
import WeftWire

/// Where a participant's signed party hostings go to become topology: the domain must
/// broadcast them to every member (DESIGN.md §5), and only the domain manager's broadcasts
/// count.
///
/// Weft has no path yet on which a participant hands a transaction it signed to the domain
/// manager for broadcast (the domain manager accepts admin requests from the domain owner,
/// and a participant's own topology envelopes are not re-broadcast), so the node that runs
/// the Ledger API injects this: today the tests and the demo give one that broadcasts with the
/// domain manager's sequencer credentials, exactly as onboarding does (docs/ledger-api.md).
public protocol PartyHostingPublisher: Sendable {
    /// Makes `hosting` (a PartyToParticipant mapping signed with the participant's namespace
    /// key) reach the domain's topology; returns once the domain has sequenced it.
    func publish(_ hosting: SignedTopologyTransaction) async throws
}

/// Allocates parties in the participant's namespace: signs the hosting with the participant's
/// namespace key (the party's namespace and the participant's are the same, so that one
/// signature is both the party's authorization and the participant's consent), publishes it,
/// and returns once this participant's own topology shows it, so the party can submit at once.
struct PartyAllocation: Sendable {
    let participant: ParticipantNode
    let namespaceKey: SigningPrivateKey
    let publisher: any PartyHostingPublisher
    let timeout: Duration

    func allocate(hint: String) async throws -> UniqueIdentifier {
        let party: UniqueIdentifier
        do {
            party = try UniqueIdentifier(name: hint, namespace: participant.identity.id.namespace)
        } catch {
            throw LedgerAPIError.invalidArgument(field: "party_id_hint", "'\(hint.prefix(120))' is not a party name: \(error)")
        }
        if await participant.hosting(of: party) != nil { throw LedgerAPIError.partyExists(party.description) }
        try await host(party, permission: .submission)
        return party
    }

    /// Publishes the hosting of `party` (of this participant's namespace) on this participant
    /// on its domain and returns once its topology shows it. A party the participant hosts
    /// already is left as it is.
    func host(_ party: UniqueIdentifier, permission: Weft.V1.ParticipantPermission) async throws {
        if await participant.hosting(of: party) != nil { return }
        // Follow the participant before publishing, so the event that applies it is not missed.
        let progress = await participant.progressEvents()
        let hosting = try SignedTopologyTransaction(
            signing: .init(
                replace: .hosting(party: party, on: participant.identity.id, permission: permission), serial: 1,
                domain: participant.domain),
            with: [namespaceKey])
        try await publisher.publish(hosting)
        let participant = self.participant
        let wait = try await withThrowingTaskGroup(of: HostingWait.self) { group in
            group.addTask {
                if await participant.hosting(of: party) != nil { return .applied }
                for await _ in progress {
                    if await participant.hosting(of: party) != nil { return .applied }
                }
                // The participant's events ended: it stopped processing, and will not apply it.
                return .processingEnded
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return .timedOut
            }
            let first = try await group.next() ?? .timedOut
            group.cancelAll()
            return first
        }
        switch wait {
        case .applied: return
        case .processingEnded: throw ParticipantError.stopped
        case .timedOut:
            throw LedgerAPIError.hostingNotApplied(party: party.description, seconds: Int(timeout.components.seconds))
        }
    }

    private enum HostingWait: Sendable { case applied, processingEnded, timedOut }
}
