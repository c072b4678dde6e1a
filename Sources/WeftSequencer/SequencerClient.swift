public import WeftCrypto
import WeftTopology
public import WeftTransport
public import WeftWire

/// A member's session with one sequencer node: authenticates with the
/// member's signing key, sends submissions, and reads its events, checking
/// each one's sequencer signature and that counters follow each other
/// without gaps (docs/sequencer.md §5).
public struct SequencerClient: Sendable {
    public let rpc: RPCClient
    public let member: String
    public let domain: String
    private let token: [UInt8]
    /// The sequencers' signing keys: an event must be signed by one of them.
    private let sequencerKeys: [SigningPublicKey]

    /// Authenticates `member` with `key` on `rpc`'s connection (challenge, signature, token).
    public static func authenticate(
        _ rpc: RPCClient, member: String, key: SigningPrivateKey, domain: String, sequencerKeys: [SigningPublicKey]
    ) async throws -> SequencerClient {
        let challenge = try await rpc.sequencer.getChallenge(.init(member: member))
        let signature = try key.sign(SequencerAuthenticator.challengeHash(domain: domain, member: member, nonce: challenge.nonce))
        let session = try await rpc.sequencer.authenticate(.init(member: member, nonce: challenge.nonce, signature: signature))
        return SequencerClient(rpc: rpc, member: member, domain: domain, token: session.token, sequencerKeys: sequencerKeys)
    }

    private init(rpc: RPCClient, member: String, domain: String, token: [UInt8], sequencerKeys: [SigningPublicKey]) {
        self.rpc = rpc
        self.member = member
        self.domain = domain
        self.token = token
        self.sequencerKeys = sequencerKeys
    }

    /// The `authorization` metadata of this session.
    public var authorization: [Weft.V1.MetadataEntry] {
        [.init(key: "authorization", value: .textValue("Bearer " + hex(token)))]
    }

    /// Submits `batch` under `messageID` (unique per member); returns once sequenced.
    public func send(_ batch: Weft.V1.Batch, messageID: String, maxSequencingTime: Int64? = nil, traceparent: String = "") async throws {
        let submission = Weft.V1.SubmissionRequest(
            sender: member, messageID: messageID, batch: batch,
            maxSequencingTime: .init(microsSinceEpoch: maxSequencingTime ?? SequencerWriter.now() + 60_000_000), traceparent: traceparent)
        _ = try await rpc.sequencer.send(.init(submissionRequest: try submission.serializedBytes()), metadata: authorization)
    }

    /// Tells the sequencer the member has processed (and persisted) its events up to `timestamp`:
    /// they may be pruned once every member has.
    public func acknowledge(upTo timestamp: Weft.V1.Timestamp) async throws {
        _ = try await rpc.sequencer.acknowledge(.init(member: member, timestamp: timestamp), metadata: authorization)
    }

    /// The member's events from `counter` on, verified: each signed by a sequencer key, for this
    /// member and domain, counters consecutive from `counter`.
    public func subscribe(from counter: UInt64) throws -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error> {
        let responses = try rpc.sequencer.subscribe(.init(member: member, fromCounter: counter), metadata: authorization)
        let keys = sequencerKeys
        let member = self.member
        let domain = self.domain
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var expected = counter
                    for try await response in responses {
                        let event = try Self.verify(response.signedEvent, keys: keys)
                        guard event.counter == expected else {
                            throw SequencerClientError.counterGap(expected: expected, received: event.counter)
                        }
                        guard event.recipient == member, event.domain == domain else {
                            throw SequencerClientError.wrongRecipient(event.recipient, event.domain)
                        }
                        expected += 1
                        continuation.yield(event)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Checks a signed event's signature and decodes it.
    public static func verify(_ signed: Weft.V1.SignedSequencedEvent?, keys: [SigningPublicKey]) throws -> Weft.V1.SequencedEvent {
        guard let signed, let signature = signed.signature,
            let key = keys.first(where: { $0.fingerprint.description == signature.signedBy })
        else { throw SequencerClientError.unsigned }
        do {
            try key.verify(signature, over: PurposeHasher.hash(.sequencedEvent, signed.event))
        } catch {
            throw SequencerClientError.badSignature
        }
        return try Weft.V1.SequencedEvent(serializedBytes: signed.event)
    }
}

/// An event stream that cannot be trusted; the member stops reading and reports it.
public enum SequencerClientError: Error, Equatable, CustomStringConvertible {
    case unsigned
    case badSignature
    case counterGap(expected: UInt64, received: UInt64)
    case wrongRecipient(String, String)

    public var description: String {
        switch self {
        case .unsigned: "an event is not signed by a key of the domain's sequencers"
        case .badSignature: "an event's sequencer signature does not verify: the event was altered"
        case .counterGap(let expected, let received): "expected event counter \(expected), received \(received): events are missing or repeated"
        case .wrongRecipient(let recipient, let domain): "an event for \(recipient) on \(domain) arrived on this member's stream"
        }
    }
}
