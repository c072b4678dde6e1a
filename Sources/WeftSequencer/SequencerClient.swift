import Synchronization
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
    /// The session's token (internal: `SequencerConnection` tells a renewed session from the one that ended).
    let token: [UInt8]
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
    /// Sends `batch`. `traceparent` travels with the event to its recipients; empty means the
    /// task's `TraceContext.current` (the call or event being processed), so a node's sends
    /// continue the trace they belong to. It is also the call's `traceparent` header, so the
    /// sequencer logs the submission under the same trace. `omitReceipt` asks for no receipt
    /// on this member's stream when the batch is delivered (a deliver error still comes), for
    /// messages whose sequencing the member does not follow.
    public func send(
        _ batch: Weft.V1.Batch, messageID: String, maxSequencingTime: Int64? = nil, traceparent: String = "", omitReceipt: Bool = false
    ) async throws {
        let trace = traceparent.isEmpty ? TraceContext.current?.traceparent ?? "" : traceparent
        let submission = Weft.V1.SubmissionRequest(
            sender: member, messageID: messageID, batch: batch,
            maxSequencingTime: .init(microsSinceEpoch: maxSequencingTime ?? SequencerWriter.now() + 60_000_000), traceparent: trace,
            omitReceipt: omitReceipt)
        var metadata = authorization
        if !trace.isEmpty { metadata.append(.init(key: "traceparent", value: .textValue(trace))) }
        _ = try await rpc.sequencer.send(.init(submissionRequest: try submission.serializedBytes()), metadata: metadata)
    }

    /// Tells the sequencer the member has processed (and persisted) its events up to `timestamp`:
    /// they may be pruned once every member has.
    public func acknowledge(upTo timestamp: Weft.V1.Timestamp) async throws {
        _ = try await rpc.sequencer.acknowledge(.init(member: member, timestamp: timestamp), metadata: authorization)
    }

    /// The member's events from `counter` on, verified: each signed by a sequencer key (on its own
    /// or through its block), for this member and domain, counters consecutive from `counter`,
    /// timestamps increasing.
    ///
    /// Pull-based: an event is taken from the call only when the consumer asks for the next one,
    /// so the stream's flow-control window bounds what the server sends ahead of the consumer (a
    /// member catching up on a long backlog holds at most a window of it). One consumer iterates.
    /// Dropping the stream, or cancelling the task iterating it, cancels the call at the server.
    public func subscribe(from counter: UInt64) throws -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error> {
        let responses = try rpc.sequencer.subscribe(.init(member: member, fromCounter: counter), metadata: authorization)
        let events = VerifiedEvents(
            responses: responses.makeAsyncIterator(), from: counter, keys: sequencerKeys, member: member, domain: domain)
        return AsyncThrowingStream(unfolding: { try await events.next() })
    }

    /// Checks a signed event's signature (its own or its block's) and decodes it.
    public static func verify(_ signed: Weft.V1.SignedSequencedEvent?, keys: [SigningPublicKey]) throws -> Weft.V1.SequencedEvent {
        var verifier = SequencedEventVerifier(keys: keys)
        return try verifier.verify(signed)
    }
}

/// The verified events of one subscription, read from its call one at a time as they are asked
/// for (`SequencerClient.subscribe`). A reference type, so that the stream's closure can keep the
/// call's iterator; `next` is called by one consumer at a time, which `ExclusiveIteration` checks.
private final class VerifiedEvents: @unchecked Sendable {
    private var responses: RPCMessageStream<Weft.V1.SubscribeResponse>.AsyncIterator
    private var verifier: SequencedEventVerifier
    private var expected: UInt64
    private var previous = Int64.min
    private let member: String
    private let domain: String
    /// Set once the stream ended or failed: it stays over.
    private var over = false
    private let iteration = ExclusiveIteration()

    init(
        responses: RPCMessageStream<Weft.V1.SubscribeResponse>.AsyncIterator, from counter: UInt64, keys: [SigningPublicKey],
        member: String, domain: String
    ) {
        self.responses = responses
        verifier = SequencedEventVerifier(keys: keys)
        expected = counter
        self.member = member
        self.domain = domain
    }

    func next() async throws -> Weft.V1.SequencedEvent? {
        iteration.begin()
        defer { iteration.end() }
        guard !over else { return nil }
        do {
            guard let response = try await responses.next() else {
                over = true
                return nil
            }
            let event = try verifier.verify(response.signedEvent)
            guard event.counter == expected else {
                throw SequencerClientError.counterGap(expected: expected, received: event.counter)
            }
            // Signed, unlike the counter of an event in a block: the order is the sequencer's.
            let timestamp = event.timestamp?.microsSinceEpoch ?? Int64.min
            guard timestamp > previous else {
                throw SequencerClientError.timestampNotIncreasing(previous: previous, received: timestamp)
            }
            previous = timestamp
            guard event.recipient == member, event.domain == domain else {
                throw SequencerClientError.wrongRecipient(event.recipient, event.domain)
            }
            expected += 1
            return event
        } catch {
            over = true
            throw error
        }
    }
}

/// Traps when two tasks iterate one pull-based stream at once, as `AsyncStream` does: its state
/// (an iterator, counters) is not shared safely, and two readers would each miss events.
final class ExclusiveIteration: Sendable {
    private let busy = Atomic<Bool>(false)

    func begin() {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            fatalError("attempt to await next() on more than one task")
        }
    }

    func end() { busy.store(false, ordering: .releasing) }
}

/// Checks the events of one stream: each signed by a sequencer key, on its own or through the
/// block it belongs to (docs/sequencer.md §5). Remembers the blocks whose signature it checked,
/// so that a block costs one signature verification however many of its events the member gets.
public struct SequencedEventVerifier: Sendable {
    private let keys: [SigningPublicKey]
    /// Signed hashes (domain, leaf count, root) of recently verified blocks, newest last.
    private var verifiedBlocks: [[UInt8]] = []
    /// Blocks remembered: a member's events interleave the blocks of every sequencer node
    /// (at most 32), each of which it passes through once.
    static let verifiedBlocksMaximum = 64

    public init(keys: [SigningPublicKey]) { self.keys = keys }

    /// The event, decoded, with its counter, if its signature or block proof verifies.
    public mutating func verify(_ signed: Weft.V1.SignedSequencedEvent?) throws -> Weft.V1.SequencedEvent {
        guard let signed else { throw SequencerClientError.unsigned }
        switch (signed.signature, signed.blockProof) {
        case (let signature?, nil):
            try check(signature, over: PurposeHasher.hash(.sequencedEvent, signed.event))
            return try Weft.V1.SequencedEvent(serializedBytes: signed.event)
        case (nil, let proof?):
            let root = try SequencedBlockTree.root(
                leaf: SequencedBlockTree.leaf(signed.event), index: proof.leafIndex, count: proof.leafCount, siblings: proof.siblings)
            let hash = SequencedBlockTree.signedHash(leafCount: proof.leafCount, root: root)
            if !verifiedBlocks.contains(hash.digest) {
                guard let signature = proof.blockSignature else { throw SequencerClientError.unsigned }
                try check(signature, over: hash)
                if verifiedBlocks.count == Self.verifiedBlocksMaximum { verifiedBlocks.removeFirst() }
                verifiedBlocks.append(hash.digest)
            }
            var event = try Weft.V1.SequencedEvent(serializedBytes: signed.event)
            // The counter is not signed (it is derived after the block was); one inside the signed
            // bytes would contradict the one beside them.
            guard event.counter == 0 else { throw SequencerClientError.malformedBlockProof("the signed event carries counter \(event.counter)") }
            event.counter = signed.counter
            return event
        case (nil, nil):
            throw SequencerClientError.unsigned
        case (_?, _?):
            throw SequencerClientError.malformedBlockProof("both a signature of its own and a block proof")
        }
    }

    private func check(_ signature: Weft.V1.Signature, over hash: PurposeHash) throws(SequencerClientError) {
        guard let key = keys.first(where: { $0.fingerprint.description == signature.signedBy }) else { throw .unsigned }
        do {
            try key.verify(signature, over: hash)
        } catch {
            throw .badSignature
        }
    }
}

/// An event stream that cannot be trusted; the member stops reading and reports it.
public enum SequencerClientError: Error, Equatable, CustomStringConvertible {
    case unsigned
    case badSignature
    /// A block proof that cannot be right whatever the signature (its shape, or its counters).
    case malformedBlockProof(String)
    case counterGap(expected: UInt64, received: UInt64)
    case timestampNotIncreasing(previous: Int64, received: Int64)
    case wrongRecipient(String, String)

    public var description: String {
        switch self {
        case .unsigned: "an event is not signed by a key of the domain's sequencers"
        case .badSignature: "an event's sequencer signature does not verify: the event (or its block proof) was altered"
        case .malformedBlockProof(let reason): "an event's block proof is malformed (\(reason)): the event cannot be checked, so it is refused"
        case .counterGap(let expected, let received): "expected event counter \(expected), received \(received): events are missing or repeated"
        case .timestampNotIncreasing(let previous, let received):
            "an event at \(received) follows one at \(previous): the stream is out of order, so it is refused"
        case .wrongRecipient(let recipient, let domain): "an event for \(recipient) on \(domain) arrived on this member's stream"
        }
    }
}
