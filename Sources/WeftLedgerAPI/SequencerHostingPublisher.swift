public import WeftCrypto
public import WeftSequencer
public import WeftTopology
import WeftWire

/// Publishes a participant's party hostings the production way: through the sequencer to the
/// domain manager (`TopologyTransactionsRequest` to `DOM::…`), which checks that each is a
/// hosting of one of the sender's own parties on the sender, signed with its namespace key, and
/// broadcasts it to every member. `publish` returns once the sequencer has the request;
/// `PartyAllocation` then waits for the hosting to appear in the participant's own topology.
public struct SequencerHostingPublisher: PartyHostingPublisher {
    let connection: SequencerConnection
    let domain: UniqueIdentifier

    public init(connection: SequencerConnection, domain: UniqueIdentifier) {
        self.connection = connection
        self.domain = domain
    }

    public func publish(_ hosting: SignedTopologyTransaction) async throws {
        let manager = MemberID(role: .domainManager, identifier: domain)
        let content = Weft.V1.EnvelopeContent(
            message: .topologyRequest(.init(domain: domain.description, transactions: [hosting.wire])))
        let batch = Weft.V1.Batch(envelopes: [.init(content: try content.serializedBytes(), recipients: [manager.description])])
        // A message id of its own per request: an allocation repeated after a timeout is a new
        // request, which the domain manager broadcasts under an id of its own, even if the
        // earlier one's broadcast was refused or expired (the same id would be refused as a
        // duplicate until the sequencer prunes). The send retries under this one id.
        let attempt = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        try await connection.send(batch, messageID: "hosting-" + String(hosting.hash.description.suffix(48)) + "-" + attempt)
    }
}
