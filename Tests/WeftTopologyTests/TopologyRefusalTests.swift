import Testing
import WeftCrypto
import WeftTopology
import WeftWire

/// Every way a topology transaction can be refused: each with its typed error and a message
/// that tells the operator what to do, and none changing the state.
@Suite struct TopologyRefusalTests {
    let test: TestDomain
    let state: TopologyState
    let later: SequencingTimestamp
    let p1: Node

    init() throws {
        test = try TestDomain()
        let (state, times) = try test.onboarded()
        self.state = state
        later = times[3].adding(micros: 1_000_000)
        p1 = test.participant1
    }

    /// Adds `transaction` to a copy of the state and returns the error it is refused with.
    func refusal(_ transaction: SignedTopologyTransaction, at time: SequencingTimestamp? = nil) -> TopologyError? {
        var copy = state
        do throws(TopologyError) {
            try copy.add(transaction, sequencedAt: time ?? later)
        } catch {
            #expect(copy.transactions == state.transactions, "a refused transaction changes nothing")
            if error.id != "TOPOLOGY_OUT_OF_ORDER" {
                #expect(throws: error) { try state.validate(transaction) }
            }
            return error
        }
        Issue.record("accepted, but should have been refused")
        return nil
    }

    var keysKey: String { "owner-to-key-mapping/\(p1.member)" }

    /// Participant1 registering a new signing key (serial 2), signed as given.
    func newKeys(serial: UInt64 = 2, by keys: [SigningPrivateKey]) throws -> SignedTopologyTransaction {
        let rotated = try signingKey("participant1/rotated")
        return try test.replace(
            .keys(of: p1.member, signing: [rotated.publicKey], encryption: [p1.encryption.publicKey]), serial: serial,
            by: keys)
    }

    @Test func theControlIsAccepted() throws {
        var copy = state
        try copy.add(try newKeys(by: [p1.namespaceKey]), sequencedAt: later)
        let rotated = try signingKey("participant1/rotated")
        #expect(copy.snapshot(at: TestDomain.visible(later)).signingKeys(of: p1.member) == [rotated.publicKey])
    }

    @Test func unsigned() throws {
        let error = refusal(try newKeys(by: []))
        #expect(error == .unsigned(mapping: keysKey))
        #expect(error?.id == "TOPOLOGY_UNSIGNED")
    }

    @Test func signedByAnotherNamespacesKey() throws {
        let error = refusal(try newKeys(by: [test.participant2.namespaceKey]))
        #expect(
            error
                == .missingSignature(
                    mapping: keysKey, namespace: p1.namespace.description,
                    signers: [test.participant2.namespace.description], delegating: false))
        #expect(error?.description.contains("missing a signature from namespace \(p1.namespace)") == true)
    }

    @Test func signedByTheDomainForAParticipantsMapping() throws {
        // The domain key is powerful, but not over participant1's namespace.
        #expect(
            refusal(try newKeys(by: [test.domainKey]))
                == .missingSignature(
                    mapping: keysKey, namespace: p1.namespace.description,
                    signers: [test.domainKey.publicKey.fingerprint.description],
                    delegating: false))
    }

    @Test func signedByAMembersSigningKeyRatherThanANamespaceKey() throws {
        // Signing keys authenticate a member; they never authorize topology.
        #expect(
            refusal(try newKeys(by: [p1.signing]))
                == .unknownSigningKey(mapping: keysKey, key: p1.signing.publicKey.fingerprint.description))
    }

    @Test func aCorruptedSignatureByte() throws {
        for index in [0, 31, 63] {
            var wire = try newKeys(by: [p1.namespaceKey]).wire
            wire.signatures[0].signature[index] ^= 0x01
            let error = refusal(try SignedTopologyTransaction(wire))
            #expect(error == .invalidSignature(mapping: keysKey, key: p1.namespace.description))
            #expect(error?.description.contains("bad signature by key \(p1.namespace)") == true)
        }
    }

    @Test func aCorruptedTransactionByte() throws {
        // One altered byte of the signed transaction: still decodes (a different serial), no longer verifies.
        var wire = try newKeys(by: [p1.namespaceKey]).wire
        let serialTag = try #require(wire.transaction.firstIndex(of: 0x10))  // field 2, varint
        wire.transaction[serialTag + 1] = 3
        #expect(
            refusal(try SignedTopologyTransaction(wire))
                == .invalidSignature(mapping: keysKey, key: p1.namespace.description))
    }

    @Test func aSignatureThatNamesAnotherKey() throws {
        var wire = try newKeys(by: [p1.namespaceKey]).wire
        wire.signatures[0].signedBy = test.participant2.namespace.description
        #expect(
            refusal(try SignedTopologyTransaction(wire))
                == .invalidSignature(mapping: keysKey, key: test.participant2.namespace.description))
    }

    @Test func staleAndSkippedSerials() throws {
        let stale = refusal(try newKeys(serial: 1, by: [p1.namespaceKey]))
        #expect(stale == .unexpectedSerial(mapping: keysKey, serial: 1, expected: 2))
        #expect(stale?.description.contains("stale serial 1 (expected 2)") == true)
        let skipped = refusal(try newKeys(serial: 4, by: [p1.namespaceKey]))
        #expect(skipped == .unexpectedSerial(mapping: keysKey, serial: 4, expected: 2))
        #expect(skipped?.description.contains("serial 4 skips ahead (expected 2)") == true)
        #expect(
            refusal(try newKeys(serial: 0, by: [p1.namespaceKey]))
                == .unexpectedSerial(mapping: keysKey, serial: 0, expected: 2))
    }

    @Test func aMappingInANamespaceNobodyDelegated() throws {
        let stranger = try Node("stranger", role: .participant)
        let error = refusal(try test.replace(stranger.keysMapping, by: [stranger.namespaceKey]))
        #expect(
            error
                == .unknownNamespace(
                    mapping: "owner-to-key-mapping/\(stranger.member)", namespace: stranger.namespace.description))
        #expect(error?.description.contains("nobody has added its root delegation") == true)
    }

    @Test func aDelegationSignedByAKeyThatWasNeverDelegated() throws {
        let rogue = try signingKey("rogue")
        let target = try signingKey("rogue/target")
        let error = refusal(
            try test.replace(.delegation(of: p1.namespace, to: target.publicKey, mayDelegate: true), by: [rogue]))
        #expect(
            error
                == .unknownSigningKey(
                    mapping: "namespace-delegation/\(p1.namespace)/\(target.publicKey.fingerprint)",
                    key: rogue.publicKey.fingerprint.description))
        // Nor may a key delegate authority to itself.
        #expect(
            refusal(
                try test.replace(.delegation(of: p1.namespace, to: rogue.publicKey, mayDelegate: true), by: [rogue]))
                == .missingSignature(
                    mapping: "namespace-delegation/\(p1.namespace)/\(rogue.publicKey.fingerprint)",
                    namespace: p1.namespace.description,
                    signers: [rogue.publicKey.fingerprint.description], delegating: true))
    }

    @Test func aRootDelegationNotSignedByItsOwnKey() throws {
        let stranger = try Node("stranger", role: .participant)
        #expect(
            refusal(try test.replace(.rootDelegation(stranger.namespaceKey.publicKey), by: [test.domainKey]))
                == .missingSignature(
                    mapping: "namespace-delegation/\(stranger.namespace)/\(stranger.namespace)",
                    namespace: stranger.namespace.description,
                    signers: [test.domainKey.publicKey.fingerprint.description], delegating: true))
    }

    @Test func hostingWithoutTheParticipantsConsent() throws {
        // dave's own namespace asks to be hosted on participant1; participant1 has not agreed.
        let daveKey = try signingKey("dave")
        let dave = try UniqueIdentifier(name: "dave", namespace: daveKey.publicKey.fingerprint)
        var copy = state
        try copy.add(try test.replace(.rootDelegation(daveKey.publicKey), by: [daveKey]), sequencedAt: later)
        let hosting = Weft.V1.TopologyMapping.Mapping.hosting(party: dave, on: p1.id, permission: .confirmation)
        #expect(
            throws: TopologyError.missingSignature(
                mapping: "party-to-participant/\(dave)/\(p1.id)", namespace: p1.namespace.description,
                signers: [daveKey.publicKey.fingerprint.description], delegating: false)
        ) {
            try copy.add(try test.replace(hosting, by: [daveKey]), sequencedAt: later)
        }
        try copy.add(try test.replace(hosting, by: [daveKey, p1.namespaceKey]), sequencedAt: later)
        #expect(
            copy.snapshot(at: TestDomain.visible(later)).hostingParticipants(of: dave).map(\.permission) == [
                .confirmation
            ])
    }

    @Test func admissionSignedByTheParticipantItself() throws {
        #expect(
            refusal(
                try test.replace(
                    .participantState(p1.id, permission: .submission, trustLevel: .vip), serial: 2,
                    by: [p1.namespaceKey]))
                == .missingSignature(
                    mapping: "participant-domain-state/\(p1.id)", namespace: test.domain.namespace.description,
                    signers: [p1.namespace.description], delegating: false))
    }

    @Test func aTransactionForAnotherDomain() throws {
        let otherDomain = try UniqueIdentifier(name: "domain2", namespace: test.domain.namespace)
        let transaction = try SignedTopologyTransaction(
            signing: .init(replace: .participantState(p1.id, permission: .submission), serial: 2, domain: otherDomain),
            with: [test.domainKey])
        #expect(
            refusal(transaction)
                == .wrongDomain(
                    mapping: "participant-domain-state/\(p1.id)", expected: test.domain.description,
                    actual: otherDomain.description))
    }

    @Test func invalidMappings() throws {
        // A participant without an encryption key.
        let noEncryption = try test.replace(
            .keys(of: p1.member, signing: [p1.signing.publicKey]), serial: 2, by: [p1.namespaceKey])
        #expect(refusal(noEncryption)?.id == "TOPOLOGY_INVALID_MAPPING")
        // A sequencer list naming a participant.
        #expect(
            refusal(try test.replace(.sequencers([p1.member]), serial: 2, by: [test.domainKey]))?.id
                == "TOPOLOGY_INVALID_MAPPING")
        // Incomplete parameters.
        var parameters = TestDomain.parameters
        parameters.reconciliationInterval = nil
        let error = refusal(try test.replace(.parameters(parameters, of: test.domain), serial: 2, by: [test.domainKey]))
        #expect(error == .invalidMapping(mapping: "domain-parameters", reason: "reconciliation_interval is missing"))
        // The mediator reaction timeout may be left out (no decision time), but not set to nothing.
        var noReaction = TestDomain.parameters
        noReaction.mediatorReactionTimeout = .init(micros: 0)
        #expect(
            refusal(try test.replace(.parameters(noReaction, of: test.domain), serial: 2, by: [test.domainKey]))
                == .invalidMapping(
                    mapping: "domain-parameters", reason: "mediator_reaction_timeout is 0µs; it must be positive (or unset: no decision time)"))
        #expect(TestDomain.parameters.mediatorReactionTimeout == nil)
        var accepted = state
        var withReaction = TestDomain.parameters
        withReaction.mediatorReactionTimeout = .init(micros: 5_000_000)
        for parameters in [TestDomain.parameters, withReaction] {
            #expect(throws: Never.self) {
                try accepted.add(
                    try test.replace(.parameters(parameters, of: test.domain), serial: 2, by: [test.domainKey]), sequencedAt: later)
            }
            accepted = state
        }
        // An unspecified permission.
        #expect(
            refusal(
                try test.replace(.participantState(p1.id, permission: .unspecified), serial: 2, by: [test.domainKey]))?
                .id == "TOPOLOGY_INVALID_MAPPING")
    }

    @Test func aRequestsDecisionTimeAddsBothTimeouts() {
        var parameters = TestDomain.parameters
        parameters.participantResponseTimeout = .init(micros: 10_000_000)
        #expect(parameters.decisionTime(ofRequestAt: 1_000) == nil)  // unset: none
        parameters.mediatorReactionTimeout = .init(micros: 2_000_000)
        #expect(parameters.decisionTime(ofRequestAt: 1_000) == Int64(1_000 + 12_000_000))
        #expect(parameters.decisionTime(ofRequestAt: .max - 1) == .max)
        parameters.participantResponseTimeout = nil
        #expect(parameters.decisionTime(ofRequestAt: 1_000) == nil)
    }

    @Test func malformedTransactions() throws {
        #expect(throws: TopologyError.self) {
            try SignedTopologyTransaction(.init(transaction: [0x0A, 0x05], signatures: []))
        }
        let empty = try SignedTopologyTransaction(
            signing: Weft.V1.TopologyTransaction(operation: .replace, serial: 1, domain: test.domain.description),
            with: [test.domainKey])
        #expect(refusal(empty) == .malformed("the transaction has no mapping"))
        let tooMany = Weft.V1.SignedTopologyTransaction(
            transaction: try newKeys(by: []).transactionBytes,
            signatures: Array(repeating: .init(), count: TopologyLimits.signaturesPerTransactionMax + 1))
        #expect(throws: TopologyError.malformed("the transaction has 9 signatures; at most 8 are allowed")) {
            try SignedTopologyTransaction(tooMany)
        }
    }

    @Test func transactionsOutOfSequencingOrder() throws {
        #expect(refusal(try newKeys(by: [p1.namespaceKey]), at: TestDomain.start)?.id == "TOPOLOGY_OUT_OF_ORDER")
    }
}

@Suite struct SignedTopologyTransactionTests {
    @Test func signaturesCoverThePurposeHashOfTheExactBytes() throws {
        let test = try TestDomain()
        let signed = try test.replace(.rootDelegation(test.domainKey.publicKey), by: [test.domainKey])
        #expect(signed.hash == PurposeHasher.hash(.topologyTransaction, signed.transactionBytes))
        #expect(signed.signatures.map(\.signedBy) == [test.domainKey.publicKey.fingerprint.description])
        try test.domainKey.publicKey.verify(signed.signatures[0], over: signed.hash)
        // A signature for the same bytes under another purpose does not verify.
        #expect(throws: CryptoError.invalidSignature) {
            try test.domainKey.publicKey.verify(
                signed.signatures[0], over: PurposeHasher.hash(.submissionRequest, signed.transactionBytes))
        }
        // The wire form round-trips, and adding a signature keeps the first.
        let decoded = try SignedTopologyTransaction(
            Weft.V1.SignedTopologyTransaction(serializedBytes: signed.wire.serializedBytes()))
        #expect(decoded == signed)
        let twice = try signed.adding(signatureBy: test.participant1.namespaceKey)
        #expect(twice.signatures.count == 2 && twice.signatures[0] == signed.signatures[0] && twice.hash == signed.hash)
    }
}
