import Logging
import Testing
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

@testable import WeftSequencer

/// A member's connection to its sequencers, across network failures: a TCP relay between the
/// two loses an answer at a chosen moment.
@Suite(.timeLimit(.minutes(5))) struct SequencerConnectionTests {
    /// `participant`'s connection to the domain's one sequencer through `relay`, logging only critical lines.
    static func connection(_ participant: TestDomain.Participant, _ domain: TestDomain, through relay: TCPRelay) -> SequencerConnection {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return SequencerConnection(
            member: participant.member.description, domain: domain.domain.description, key: participant.signingKey,
            sequencerKeys: [domain.sequencerKey.publicKey],
            endpoints: [.init(host: "127.0.0.1", port: relay.port, security: .plaintext)], logger: logger)
    }

    /// A send whose first attempt was sequenced but lost its answer, and whose retry is then
    /// refused (the member disabled meanwhile), must not report the refusal: its caller would
    /// call a request that may commit refused. It reports that the outcome is unknown.
    @Test func aRefusalAfterALostAnswerIsReportedAsAnUnknownOutcome() async throws {
        try await PostgresFixture.withFixture { fixture in
            var (domain, node, manager, alice, bob, _, bobClient) = try await ServiceTests.startWithAliceAndBob(fixture.url)
            let relay = try await TCPRelay.start(port: node.server.port)
            let connection = Self.connection(alice, domain, through: relay)
            func toBob(_ text: String) -> Weft.V1.Batch {
                .init(envelopes: [.init(content: Array(text.utf8), recipients: [bob.member.description])])
            }
            // Connected and authenticated through the relay; then answers stop coming back.
            try await connection.send(toBob("before"), messageID: "before")
            relay.swallowReplies()
            let sending = Task { try await connection.send(toBob("answer lost"), messageID: "answer-lost") }
            // The sequencer sequenced it: bob receives it.
            for try await event in try bobClient.subscribe(from: 0) {
                if case .deliver(let deliver)? = event.event, deliver.messageID == "answer-lost" { break }
            }
            // Alice is disabled before her connection fails and her send tries again.
            try await manager.send(
                try TestDomain.broadcast(
                    [try domain.domainSigned(.participantState(alice.id, permission: .disabled), key: "state-\(alice.id)")],
                    domain: domain.domain),
                messageID: "disable-alice")
            await node.topology.waitUntil(alice.member, isActive: false)
            await relay.cutConnections()
            do {
                try await sending.value
                Issue.record("the send succeeded though its retry was refused")
            } catch let error as RPCError {
                #expect(error.errorID == SequencerConnection.outcomeUnknown, "\(error)")
                #expect(error.code == .unavailable)
            }
            await connection.close()
            await relay.stop()
            await node.stop()
        }
    }

    /// A session ends at its token's expiry, subscription included: the connection renews it on
    /// the same TCP connection (closing it would cut the member's other calls), resumes its
    /// events after the last one delivered, a send refused as expired is sent again, and an
    /// idle member's stream outlives more expiries than its limit of failures in a row.
    @Test func aConnectionRenewsItsExpiredSessionAndResumesItsEvents() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await ServiceTests.Node.start(fixture.url, domain: &domain, tokenLifetime: 2_000_000)
            let manager = try await ServiceTests.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let alice = try TestDomain.Participant("participant1")
            try await ServiceTests.onboard([alice], node: node, domain: &domain, manager: manager)
            let relay = try await TCPRelay.start(port: node.server.port)
            let connection = Self.connection(alice, domain, through: relay)
            let toSelf = Weft.V1.Batch(envelopes: [.init(content: [1], recipients: [alice.member.description])])
            // At most one failure in a row: a renewed session must not count as one, or an idle
            // member's stream would end after that many token lifetimes.
            var iterator = connection.events(from: 0, failuresMax: 1).makeAsyncIterator()
            var delivered: [String] = []
            var counters: [UInt64] = []
            func readUntil(_ messageID: String) async throws {
                while let event = try await iterator.next() {
                    counters.append(event.counter)
                    guard case .deliver(let deliver)? = event.event, deliver.sender == alice.member.description else { continue }
                    delivered.append(deliver.messageID)
                    if deliver.messageID == messageID { return }
                }
                Issue.record("the events ended before \(messageID)")
            }
            for round in 0..<3 {
                try await connection.send(toSelf, messageID: "m\(round)")
                try await readUntil("m\(round)")
                // The token's lifetime is what is tested: time must pass. Two seconds, not one: a
                // loaded machine took longer than a 1 s token lives to authenticate and send again.
                try await Task.sleep(for: .milliseconds(2100))
            }
            // Idle for two more lifetimes (no event resets anything), then one more message.
            try await Task.sleep(for: .milliseconds(4200))
            try await connection.send(toSelf, messageID: "m3")
            try await readUntil("m3")
            #expect(delivered == ["m0", "m1", "m2", "m3"])
            #expect(counters == Array(0..<UInt64(counters.count)), "each event once, in order")
            #expect(relay.connectionsRelayed == 1, "the session was renewed on its connection")
            await connection.close()
            await relay.stop()
            await node.stop()
        }
    }
}
