import Testing
import WeftCrypto
import WeftTopology
import WeftWire

/// The life of a domain's topology: bootstrap, onboarding, party allocation and a permission
/// change, each answered "as of T" from snapshots.
@Suite struct TopologyStateTests {
    @Test func domainBootstrapTakesEffectAfterTheChangeDelay() throws {
        let test = try TestDomain()
        var state = test.newState()
        let t0 = TestDomain.start
        for transaction in try test.bootstrap() {
            let change = try #require(try state.add(transaction, sequencedAt: t0))
            #expect(change.added.validFrom == t0.adding(micros: TestDomain.delayMicros))
            #expect(change.superseded == nil)
        }

        // At the effective time itself the change is not yet visible; one microsecond later it is.
        let before = state.snapshot(at: t0.adding(micros: TestDomain.delayMicros))
        #expect(before.appliedTransactionCount == 0)
        #expect(before.sequencers.isEmpty && before.mediators.isEmpty && before.domainParameters == nil)
        #expect(!before.isActive(test.sequencer.member))

        let after = state.snapshot(at: TestDomain.visible(t0))
        #expect(after.appliedTransactionCount == 7)
        #expect(after.sequencers == [test.sequencer.member])
        #expect(after.mediators == [test.mediator.member])
        #expect(after.domainParameters == TestDomain.parameters)
        for node in [test.sequencer, test.mediator, test.manager] {
            #expect(after.isActive(node.member), "\(node.member)")
            #expect(after.signingKeys(of: node.member) == [node.signing.publicKey])
        }
        #expect(after.encryptionKeys(of: test.mediator.member) == [test.mediator.encryption.publicKey])
        #expect(after.encryptionKeys(of: test.sequencer.member).isEmpty)
        #expect(after.members == [test.manager.member, test.mediator.member, test.sequencer.member])
        #expect(!after.isActive(test.participant1.member))
    }

    @Test func participantOnboardingNeedsItsKeysAndTheDomainsAdmission() throws {
        let test = try TestDomain()
        var state = test.newState()
        let p1 = test.participant1
        for transaction in try test.bootstrap() { try state.add(transaction, sequencedAt: TestDomain.start) }

        // The participant's own identity: known keys, but not admitted.
        let t1 = TestDomain.start.adding(micros: 1_000_000)
        for transaction in try test.identity(of: p1) { try state.add(transaction, sequencedAt: t1) }
        var snapshot = state.snapshot(at: TestDomain.visible(t1))
        #expect(snapshot.signingKeys(of: p1.member) == [p1.signing.publicKey])
        #expect(snapshot.encryptionKeys(of: p1.member) == [p1.encryption.publicKey])
        #expect(snapshot.participantState(p1.id) == nil)
        #expect(!snapshot.isActive(p1.member))

        // Admitted by the domain: active.
        let t2 = t1.adding(micros: 1_000_000)
        try state.add(try test.admit(p1, trust: .vip), sequencedAt: t2)
        snapshot = state.snapshot(at: TestDomain.visible(t2))
        #expect(
            snapshot.participantState(p1.id)
                == ParticipantAttributes(participant: p1.id, permission: .submission, trustLevel: .vip))
        #expect(snapshot.participants.map(\.participant) == [p1.id])
        #expect(snapshot.isActive(p1.member))

        // The seed's order: allow-listed first, while the domain knows nothing of its namespace…
        let p2 = test.participant2
        let t3 = t2.adding(micros: 1_000_000)
        try state.add(try test.admit(p2), sequencedAt: t3)
        snapshot = state.snapshot(at: TestDomain.visible(t3))
        #expect(snapshot.participantState(p2.id)?.permission == .submission)
        #expect(!snapshot.isActive(p2.member))
        // …then it presents its identity and becomes active.
        let t4 = t3.adding(micros: 1_000_000)
        for transaction in try test.identity(of: p2) { try state.add(transaction, sequencedAt: t4) }
        #expect(!state.snapshot(at: t4).isActive(p2.member))
        #expect(state.snapshot(at: TestDomain.visible(t4)).isActive(p2.member))
    }

    @Test func partyAllocationAndTheReverseLookup() throws {
        let test = try TestDomain()
        let onboarded = try test.onboarded()
        var state = onboarded.state
        let times = onboarded.times
        let alice = try UniqueIdentifier(name: "alice", namespace: test.participant1.namespace)
        var snapshot = state.snapshot(at: TestDomain.visible(times[3]))
        #expect(
            snapshot.hostingParticipants(of: alice) == [
                PartyHosting(party: alice, participant: test.participant1.id, permission: .submission)
            ])
        #expect(snapshot.hostedParties(on: test.participant1.id).map(\.party) == [alice])
        #expect(snapshot.hostedParties(on: test.participant2.id).isEmpty)
        #expect(state.snapshot(at: TestDomain.visible(times[2])).hostingParticipants(of: alice).isEmpty)

        // alice also on participant2 (which only confirms): both participants consent, since
        // alice's namespace is participant1's. The effective permission is participant2's.
        let t = times[3].adding(micros: 1_000_000)
        let both = try test.replace(
            .hosting(party: alice, on: test.participant2.id, permission: .submission),
            by: [test.participant1.namespaceKey, test.participant2.namespaceKey])
        try state.add(both, sequencedAt: t)
        snapshot = state.snapshot(at: TestDomain.visible(t))
        #expect(
            snapshot.hostingParticipants(of: alice).map(\.participant)
                == [test.participant1.id, test.participant2.id].sorted { $0.description < $1.description })
        #expect(
            snapshot.hostingParticipants(of: alice).first { $0.participant == test.participant2.id }?.permission
                == .confirmation)
        #expect(snapshot.hostedParties(on: test.participant2.id).map(\.party) == [alice])
    }

    @Test func disablingAParticipantChangesTheSnapshotExactlyAtItsEffectiveTime() throws {
        let test = try TestDomain()
        let onboarded = try test.onboarded()
        var state = onboarded.state
        let times = onboarded.times
        let alice = try UniqueIdentifier(name: "alice", namespace: test.participant1.namespace)
        let t = times[3].adding(micros: 10_000_000)
        let change = try #require(
            try state.add(try test.admit(test.participant1, permission: .disabled, serial: 2), sequencedAt: t))
        let effective = t.adding(micros: TestDomain.delayMicros)
        #expect(change.added.validFrom == effective)
        #expect(change.superseded?.validUntil == effective)
        #expect(change.superseded?.serial == 1)

        // Everything up to and including the effective time sees the participant active…
        for time in [times[3].adding(micros: 5_000_000), t, effective] {
            let snapshot = state.snapshot(at: time)
            #expect(snapshot.isActive(test.participant1.member), "\(time)")
            #expect(snapshot.hostingParticipants(of: alice).count == 1)
        }
        // …and one microsecond later it is cut off, its parties with it.
        let before = state.snapshot(at: effective)
        let after = state.snapshot(at: effective.adding(micros: 1))
        #expect(!after.isActive(test.participant1.member))
        #expect(after.participantState(test.participant1.id)?.permission == .disabled)
        #expect(after.hostingParticipants(of: alice).isEmpty)
        #expect(after.isActive(test.participant2.member))

        // The canonical dumps differ in exactly the lines of that change.
        let beforeLines = Set(before.canonicalDump.split(separator: "\n").dropFirst().map(String.init))
        let afterLines = Set(after.canonicalDump.split(separator: "\n").dropFirst().map(String.init))
        let p1 = test.participant1.id
        #expect(
            beforeLines.subtracting(afterLines) == [
                "in-force participant-domain-state/\(p1) serial 1",
                "participant \(p1) permission submission trust ordinary active true",
                "hosting alice::\(p1.namespace) on \(p1) permission submission",
            ])
        #expect(
            afterLines.subtracting(beforeLines) == [
                "in-force participant-domain-state/\(p1) serial 2",
                "participant \(p1) permission disabled trust ordinary active false",
            ])

        // In-force listing follows the same boundary.
        #expect(
            state.transactions(inForceAt: effective).contains {
                $0.key == .participantDomainState(participant: p1) && $0.serial == 1
            })
        #expect(
            state.transactions(inForceAt: effective.adding(micros: 1)).contains {
                $0.key == .participantDomainState(participant: p1) && $0.serial == 2
            })
    }

    @Test func removingAMappingAndAddingItAgainContinuesTheSerial() throws {
        let test = try TestDomain()
        let onboarded = try test.onboarded()
        var state = onboarded.state
        let times = onboarded.times
        let alice = try UniqueIdentifier(name: "alice", namespace: test.participant1.namespace)
        let hosting = Weft.V1.TopologyMapping.Mapping.hosting(
            party: alice, on: test.participant1.id, permission: .submission)
        let key = TopologyMappingKey.partyToParticipant(party: alice, participant: test.participant1.id)
        #expect(state.nextSerial(for: key) == 2)
        let t1 = times[3].adding(micros: 1_000_000)
        let removal = try #require(
            try state.add(try test.remove(hosting, serial: 2, by: [test.participant1.namespaceKey]), sequencedAt: t1))
        #expect(removal.added.validUntil == removal.added.validFrom)
        #expect(state.snapshot(at: TestDomain.visible(t1)).hostingParticipants(of: alice).isEmpty)

        #expect(throws: TopologyError.nothingToRemove(mapping: "party-to-participant/\(alice)/\(test.participant1.id)"))
        {
            try state.add(try test.remove(hosting, serial: 3, by: [test.participant1.namespaceKey]), sequencedAt: t1)
        }
        // The original serial-1 transaction again is a replay, hence a no-op; a new one with serial 1 is stale.
        #expect(
            try state.add(try test.replace(hosting, serial: 1, by: [test.participant1.namespaceKey]), sequencedAt: t1)
                == nil)
        let observing = Weft.V1.TopologyMapping.Mapping.hosting(
            party: alice, on: test.participant1.id, permission: .observation)
        #expect(
            throws: TopologyError.unexpectedSerial(
                mapping: "party-to-participant/\(alice)/\(test.participant1.id)", serial: 1, expected: 3)
        ) {
            try state.add(try test.replace(observing, serial: 1, by: [test.participant1.namespaceKey]), sequencedAt: t1)
        }
        #expect(state.nextSerial(for: key) == 3)
        let t2 = t1.adding(micros: 1_000_000)
        try state.add(try test.replace(hosting, serial: 3, by: [test.participant1.namespaceKey]), sequencedAt: t2)
        #expect(state.snapshot(at: TestDomain.visible(t2)).hostingParticipants(of: alice).count == 1)
    }

    @Test func addingTheSameTransactionAgainIsANoOp() throws {
        let test = try TestDomain()
        let onboarded = try test.onboarded()
        var state = onboarded.state
        let times = onboarded.times
        let count = state.transactions.count
        let dump = state.snapshot(at: TestDomain.visible(times[3])).canonicalDump
        // The whole stream replayed, at its own times and at a later one.
        for transaction in try test.bootstrap() {
            #expect(try state.add(transaction, sequencedAt: times[0]) == nil)
            #expect(try state.add(transaction, sequencedAt: times[3].adding(micros: 5_000_000)) == nil)
        }
        #expect(state.transactions.count == count)
        #expect(state.snapshot(at: TestDomain.visible(times[3])).canonicalDump == dump)
    }

    @Test func aBroadcastAcceptsAndRefusesEachTransactionOnItsOwn() throws {
        let test = try TestDomain()
        var state = test.newState()
        var transactions = try test.bootstrap()
        transactions.insert(try test.replace(.mediator(test.mediator.member), serial: 5, by: [test.domainKey]), at: 3)
        let broadcast = Weft.V1.TopologyTransactionsBroadcast(
            domain: test.domain.description,
            transactions: transactions.map(\.wire) + [.init(transaction: [0xFF], signatures: [])])
        let outcome = state.add(broadcast, sequencedAt: TestDomain.start)
        #expect(outcome.changes.count == 7)
        #expect(outcome.refused.map(\.index) == [3, 8])
        #expect(outcome.refused.map(\.error.id) == ["TOPOLOGY_SERIAL_MISMATCH", "TOPOLOGY_MALFORMED_TRANSACTION"])
        #expect(state.snapshot(at: TestDomain.visible(TestDomain.start)).mediators == [test.mediator.member])
    }

    @Test func aDelegationChainAuthorizesUntilItsLinkIsRemoved() throws {
        let test = try TestDomain()
        let onboarded = try test.onboarded()
        var state = onboarded.state
        let times = onboarded.times
        let p1 = test.participant1
        let intermediate = try signingKey("p1/intermediate")
        let leaf = try signingKey("p1/leaf")
        var t = times[3].adding(micros: 1_000_000)
        try state.add(
            try test.replace(
                .delegation(of: p1.namespace, to: intermediate.publicKey, mayDelegate: true), by: [p1.namespaceKey]),
            sequencedAt: t)
        try state.add(
            try test.replace(.delegation(of: p1.namespace, to: leaf.publicKey, mayDelegate: false), by: [intermediate]),
            sequencedAt: t)
        let bob = try UniqueIdentifier(name: "bob", namespace: p1.namespace)
        let bobHosting = Weft.V1.TopologyMapping.Mapping.hosting(party: bob, on: p1.id, permission: .observation)
        try state.add(try test.replace(bobHosting, by: [leaf]), sequencedAt: t)
        #expect(
            state.snapshot(at: TestDomain.visible(t)).hostingParticipants(of: bob).map(\.permission) == [.observation])

        // A leaf key cannot delegate further.
        let other = try signingKey("p1/other")
        let byLeaf = try test.replace(
            .delegation(of: p1.namespace, to: other.publicKey, mayDelegate: false), by: [leaf])
        #expect(
            throws: TopologyError.missingSignature(
                mapping: "namespace-delegation/\(p1.namespace)/\(other.publicKey.fingerprint)",
                namespace: p1.namespace.description,
                signers: [leaf.publicKey.fingerprint.description], delegating: true)
        ) { try state.add(byLeaf, sequencedAt: t) }

        // Revoking the intermediate key also revokes what it delegated.
        t = t.adding(micros: 1_000_000)
        try state.add(
            try test.remove(
                .delegation(of: p1.namespace, to: intermediate.publicKey, mayDelegate: true), serial: 2,
                by: [p1.namespaceKey]),
            sequencedAt: t)
        let carol = try UniqueIdentifier(name: "carol", namespace: p1.namespace)
        #expect(
            throws: TopologyError.missingSignature(
                mapping: "party-to-participant/\(carol)/\(p1.id)", namespace: p1.namespace.description,
                signers: [leaf.publicKey.fingerprint.description], delegating: false)
        ) {
            try state.add(
                try test.replace(.hosting(party: carol, on: p1.id, permission: .observation), by: [leaf]),
                sequencedAt: t)
        }
        // What it authorized before stays in force: topology is never rewritten retroactively.
        #expect(state.snapshot(at: TestDomain.visible(t)).hostingParticipants(of: bob).count == 1)
    }

    @Test func twoStatesFedTheSameTransactionsAnswerIdentically() throws {
        let test = try TestDomain()
        let (first, times) = try test.onboarded()
        var second = test.newState()
        for stored in first.transactions { try second.add(stored.transaction, sequencedAt: stored.sequencedAt) }
        var probes = times.flatMap { [$0, $0.adding(micros: TestDomain.delayMicros), TestDomain.visible($0)] }
        probes.append(SequencingTimestamp(microsSinceEpoch: 0))
        for time in probes {
            let a = first.snapshot(at: time)
            let b = second.snapshot(at: time)
            #expect(a == b)
            #expect(a.canonicalDump == b.canonicalDump)
        }
        // A state restored from a copy's wire forms agrees too.
        var third = test.newState()
        for stored in first.transactions {
            try third.add(
                try SignedTopologyTransaction(.init(serializedBytes: stored.transaction.wire.serializedBytes())),
                sequencedAt: stored.sequencedAt)
        }
        #expect(
            third.snapshot(at: TestDomain.visible(times[3])).canonicalDump
                == first.snapshot(at: TestDomain.visible(times[3])).canonicalDump)
        #expect(third.transactions == first.transactions)
    }

    @Test func copiesOfAStateDoNotShareSnapshots() throws {
        let test = try TestDomain()
        let (state, times) = try test.onboarded()
        let probe = TestDomain.visible(times[3].adding(micros: 1_000_000))
        _ = state.snapshot(at: probe)  // fills the shared cache
        var disabled = state
        var confirming = state
        try disabled.add(
            try test.admit(test.participant1, permission: .disabled, serial: 2),
            sequencedAt: times[3].adding(micros: 1_000_000))
        try confirming.add(
            try test.admit(test.participant1, permission: .confirmation, serial: 2),
            sequencedAt: times[3].adding(micros: 1_000_000))
        #expect(disabled.snapshot(at: probe).participantState(test.participant1.id)?.permission == .disabled)
        #expect(confirming.snapshot(at: probe).participantState(test.participant1.id)?.permission == .confirmation)
        #expect(state.snapshot(at: probe).participantState(test.participant1.id)?.permission == .submission)
    }

    @Test func snapshotDumpIsSortedAndComplete() throws {
        let test = try TestDomain()
        let (state, times) = try test.onboarded()
        let dump = state.snapshot(at: TestDomain.visible(times[3])).canonicalDump
        let lines = dump.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("topology of \(test.domain) at 2025-06-15T15:06:43.250001Z"))
        let inForce = lines.filter { $0.hasPrefix("in-force ") }
        #expect(inForce == inForce.sorted())
        #expect(inForce.count == state.transactions.count)
        #expect(lines.contains("participant \(test.participant2.id) permission confirmation trust vip active true"))
        #expect(lines.contains("mediator \(test.mediator.member) active true"))
    }
}

@Suite struct SequencingTimestampTests {
    @Test func descriptionIsISO8601InUTCWithMicroseconds() {
        #expect(SequencingTimestamp(microsSinceEpoch: 0).description == "1970-01-01T00:00:00.000000Z")
        #expect(SequencingTimestamp(microsSinceEpoch: -1).description == "1969-12-31T23:59:59.999999Z")
        #expect(SequencingTimestamp(microsSinceEpoch: 951_782_400_000_250).description == "2000-02-29T00:00:00.000250Z")
        #expect(
            SequencingTimestamp(microsSinceEpoch: 4_102_444_800_000_000).description == "2100-01-01T00:00:00.000000Z")
    }

    @Test func addingSaturatesInsteadOfTrapping() {
        #expect(SequencingTimestamp(microsSinceEpoch: .max - 1).adding(micros: 10).microsSinceEpoch == .max)
        #expect(SequencingTimestamp(microsSinceEpoch: .min + 1).adding(micros: -10).microsSinceEpoch == .min)
        #expect(SequencingTimestamp(Weft.V1.Timestamp(microsSinceEpoch: 42)).wire.microsSinceEpoch == 42)
    }
}
