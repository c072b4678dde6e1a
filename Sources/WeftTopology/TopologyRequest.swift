import WeftCrypto
public import WeftWire

extension TopologyState {
    /// Most transactions in one member's topology request, unless the domain manager is
    /// configured otherwise.
    ///
    /// A participant sends one hosting per party it allocates; 100 leaves room for a client
    /// that batches some, while bounding what one request costs the domain manager (every
    /// signature of every transaction is verified) and the broadcast it makes of it.
    public static let requestTransactionsMaxDefault = 100

    /// The transactions the domain manager broadcasts for a member's `TopologyTransactionsRequest`
    /// sent by `sender`, judged against this (the manager's current) topology; or why it
    /// refuses the request **whole**.
    ///
    /// This release accepts a participant's hostings of parties in its own namespace on
    /// itself. A request is all or nothing because it is one intent of its member (the parties
    /// of one allocation) and nothing answers it but the broadcast: a part broadcast would
    /// give the member a topology it did not ask for, with no word of what was left out. A
    /// refusal reaches the member as its change timing out, and the domain manager's log says
    /// why. For the same reason a request with more than `transactionsMax` transactions is
    /// refused, not cut short. Transactions accepted before (a request read again after its
    /// broadcast) are left out; an empty result means there is nothing to broadcast.
    public func transactionsToBroadcast(
        for request: Weft.V1.TopologyTransactionsRequest, from sender: String,
        transactionsMax: Int = TopologyState.requestTransactionsMaxDefault
    ) throws(TopologyRequestRefusal) -> [SignedTopologyTransaction] {
        // Counted before anything is decoded or verified: the bound is on the work.
        guard request.transactions.count <= transactionsMax else {
            throw .tooManyTransactions(count: request.transactions.count, max: transactionsMax)
        }
        guard request.domain == domain.description else {
            throw .wrongDomain(expected: domain.description, actual: String(request.domain.prefix(200)))
        }
        guard let member = try? MemberID(parsing: sender), member.role == .participant else {
            throw .notAParticipant(sender: String(sender.prefix(200)))
        }
        // The latest topology, every accepted change in force (the domain manager's own view).
        guard snapshot(at: SequencingTimestamp(microsSinceEpoch: Int64.max - 1)).isActive(member) else {
            throw .inactive(participant: member.description)
        }
        // Each transaction is validated after the ones before it in the request, as every
        // node will validate the broadcast; at a time after everything accepted so far.
        let probeTime = SequencingTimestamp(microsSinceEpoch: Int64.max - 2)
        var probe = self
        var accepted: [SignedTopologyTransaction] = []
        for (index, wire) in request.transactions.enumerated() {
            let signed: SignedTopologyTransaction
            do throws(TopologyError) {
                signed = try SignedTopologyTransaction(wire)
            } catch {
                throw .invalid(index: index, error)
            }
            guard case .partyToParticipant(let hosting)? = signed.transaction.mapping?.mapping,
                hosting.participant == member.identifier.description,
                let party = try? UniqueIdentifier(parsing: hosting.party),
                party.namespace == member.identifier.namespace
            else {
                throw .notOwnHosting(index: index, participant: member.description)
            }
            do throws(TopologyError) {
                // nil: accepted before, so not broadcast again.
                if try probe.add(signed, sequencedAt: probeTime) != nil { accepted.append(signed) }
            } catch {
                throw .invalid(index: index, error)
            }
        }
        return accepted
    }
}

/// Why the domain manager refused a member's topology request; none of its transactions is
/// broadcast (`TopologyState.transactionsToBroadcast`).
public enum TopologyRequestRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    /// More transactions than the domain manager takes in one request.
    case tooManyTransactions(count: Int, max: Int)
    /// The request names another domain.
    case wrongDomain(expected: String, actual: String)
    /// The sender is no participant; only participants may ask.
    case notAParticipant(sender: String)
    /// The participant is not active on the domain (not admitted, disabled, or without keys).
    case inactive(participant: String)
    /// A transaction that is not a hosting of one of the sender's own parties on itself.
    case notOwnHosting(index: Int, participant: String)
    /// A transaction that does not read, or that every node would refuse.
    case invalid(index: Int, TopologyError)

    /// A stable id for log searches.
    public var id: String {
        switch self {
        case .tooManyTransactions: "DOMAIN_MANAGER_TOPOLOGY_REQUEST_TOO_LARGE"
        case .wrongDomain, .notAParticipant, .inactive, .notOwnHosting, .invalid:
            "DOMAIN_MANAGER_TOPOLOGY_REQUEST_REFUSED"
        }
    }

    public var description: String {
        switch self {
        case .tooManyTransactions(let count, let max):
            "the request has \(count) transactions; at most \(max) are taken in one request: send them in several"
        case .wrongDomain(let expected, let actual):
            "it is for domain \(actual), not \(expected)"
        case .notAParticipant(let sender):
            "only participants may ask, not \(sender)"
        case .inactive(let participant):
            "\(participant) is not an active participant of the domain"
        case .notOwnHosting(let index, let participant):
            "transaction #\(index) is not a hosting of a party in \(participant)'s namespace on \(participant); "
                + "only such hostings are accepted"
        case .invalid(let index, let error):
            "transaction #\(index) would be refused by every node: \(error) [\(error.id)]"
        }
    }
}
