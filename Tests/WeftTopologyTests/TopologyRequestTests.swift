import Testing
import WeftCrypto
import WeftTopology
import WeftWire

/// A participant's `TopologyTransactionsRequest` as the domain manager judges it
/// (docs/topology.md §3, "Members' requests"): broadcast whole or refused whole.
@Suite struct TopologyRequestTests {
    let test: TestDomain
    let state: TopologyState
    let p1: Node

    init() throws {
        test = try TestDomain()
        state = try test.onboarded().state
        p1 = test.participant1
    }

    /// Participant1's hosting of its own party `name` on itself.
    func ownHosting(_ name: String, serial: UInt64 = 1, permission: Weft.V1.ParticipantPermission = .submission) throws
        -> SignedTopologyTransaction
    {
        let party = try UniqueIdentifier(name: name, namespace: p1.namespace)
        return try test.replace(
            .hosting(party: party, on: p1.id, permission: permission), serial: serial, by: [p1.namespaceKey])
    }

    func request(_ transactions: [SignedTopologyTransaction]) -> Weft.V1.TopologyTransactionsRequest {
        .init(domain: test.domain.description, transactions: transactions.map(\.wire))
    }

    /// What the domain manager broadcasts for `transactions` sent by `sender`, or its refusal.
    func judge(_ transactions: [SignedTopologyTransaction], from sender: MemberID? = nil)
        -> Result<[SignedTopologyTransaction], TopologyRequestRefusal>
    {
        Result { () throws(TopologyRequestRefusal) in
            try state.transactionsToBroadcast(for: request(transactions), from: (sender ?? p1.member).description)
        }
    }

    @Test func ownHostingsAreBroadcastUnchanged() throws {
        let hostings = [try ownHosting("bob"), try ownHosting("carol")]
        #expect(try judge(hostings).get().map(\.hash) == hostings.map(\.hash))
    }

    /// A request is one intent of its participant: one transaction refused refuses all of it,
    /// wherever it stands in the request.
    @Test func oneBadTransactionRefusesTheWholeRequest() throws {
        let good = try ownHosting("bob")
        let foreignParty = try UniqueIdentifier(name: "mallory", namespace: test.participant2.namespace)
        let foreign = try test.replace(
            .hosting(party: foreignParty, on: p1.id, permission: .submission), by: [p1.namespaceKey])
        #expect(throws: TopologyRequestRefusal.notOwnHosting(index: 1, participant: p1.member.description)) {
            _ = try judge([good, foreign]).get()
        }
        // alice's hosting has serial 1 already: serial 1 again is stale.
        let stale = try ownHosting("alice", permission: .confirmation)
        let error = #expect(throws: TopologyRequestRefusal.self) {
            _ = try judge([good, stale, try ownHosting("carol")]).get()
        }
        guard case .invalid(let index, let cause)? = error else {
            Issue.record("expected the stale hosting's refusal, got \(String(describing: error))")
            return
        }
        #expect(index == 1)
        #expect(cause.id == "TOPOLOGY_SERIAL_MISMATCH")
        #expect(error?.id == "DOMAIN_MANAGER_TOPOLOGY_REQUEST_REFUSED")
    }

    /// More than 100 transactions used to be cut to the first 100 without a word, the rest
    /// lost; the request is refused whole now, saying how many it may hold.
    @Test func aRequestOverTheLimitIsRefusedNotCutShort() throws {
        let hostings = try (0...100).map { try ownHosting("party\($0)") }
        #expect(try judge(Array(hostings.prefix(100))).get().count == 100, "the control: 100 are taken")
        let error = #expect(throws: TopologyRequestRefusal.tooManyTransactions(count: 101, max: 100)) {
            _ = try judge(hostings).get()
        }
        #expect(error?.id == "DOMAIN_MANAGER_TOPOLOGY_REQUEST_TOO_LARGE")
        #expect(error?.description.contains("at most 100") == true)
        #expect(TopologyState.requestTransactionsMaxDefault == 100)
        // A domain manager configured with another limit.
        #expect(throws: TopologyRequestRefusal.tooManyTransactions(count: 3, max: 2)) {
            _ = try state.transactionsToBroadcast(
                for: request(Array(hostings.prefix(3))), from: p1.member.description, transactionsMax: 2)
        }
    }

    /// A request read again after its broadcast (a replayed stream) broadcasts only what is new.
    @Test func transactionsAcceptedBeforeAreLeftOut() throws {
        let alice = try #require(state.transactions.last?.transaction)
        let bob = try ownHosting("bob")
        #expect(try judge([alice]).get().isEmpty)
        #expect(try judge([alice, bob, bob]).get().map(\.hash) == [bob.hash])
    }

    @Test func onlyActiveParticipantsOfThisDomainMayAsk() throws {
        let hosting = try ownHosting("bob")
        #expect(throws: TopologyRequestRefusal.notAParticipant(sender: test.mediator.member.description)) {
            _ = try judge([hosting], from: test.mediator.member).get()
        }
        let stranger = try Node("participant3", role: .participant)
        #expect(throws: TopologyRequestRefusal.inactive(participant: stranger.member.description)) {
            _ = try judge([hosting], from: stranger.member).get()
        }
        var foreign = request([hosting])
        foreign.domain = "other::1220ab"
        #expect(throws: TopologyRequestRefusal.wrongDomain(expected: test.domain.description, actual: "other::1220ab"))
        {
            _ = try state.transactionsToBroadcast(for: foreign, from: p1.member.description)
        }
    }
}
