import Synchronization
public import WeftCrypto
import WeftStore
import WeftWire

/// The Merkle tree of one block of sequenced events (docs/sequencer.md §5): one leaf per
/// delivery (an event as one member receives it), signed once by the sequencer through its root.
///
/// Why: an Ed25519 signature per delivered event was the largest single cost of sequencing
/// (a sign ~27 µs per recipient, and a verify ~66 µs in every member). A group commit signs its
/// block once; each delivered event carries the few sibling hashes that lead from its leaf to
/// the signed root, which a member checks with SHA-256 alone (and one signature per block).
///
/// Shape: leaves are hashed in pairs level by level; a level's last node without a partner is
/// promoted unchanged. Leaves (`HASH_PURPOSE_SEQUENCED_BLOCK_LEAF`) and inner nodes
/// (`HASH_PURPOSE_SEQUENCED_BLOCK_NODE`) have different purposes, and the leaf count is signed
/// with the root, so no node can pass for a leaf and no proof for another shape.
public struct SequencedBlockTree: Sendable {
    /// `levels[0]` are the leaves, the last level is the root alone.
    private let levels: [[[UInt8]]]

    /// The most leaves a proof may claim: far above any group commit (2,000 submissions to all
    /// members), low enough that a hostile count cannot make a verifier loop for long.
    public static let leafCountMaximum: UInt64 = 1 << 32

    /// The tree over `leaves` (32-byte leaf hashes, at least one).
    public init(leaves: [[UInt8]]) {
        precondition(!leaves.isEmpty, "a block has at least one event")
        var levels = [leaves]
        while let level = levels.last, level.count > 1 {
            var next: [[UInt8]] = []
            next.reserveCapacity((level.count + 1) / 2)
            for index in stride(from: 0, to: level.count, by: 2) {
                next.append(index + 1 < level.count ? Self.node(level[index], level[index + 1]) : level[index])
            }
            levels.append(next)
        }
        self.levels = levels
    }

    public var root: [UInt8] { levels[levels.count - 1][0] }
    public var leafCount: Int { levels[0].count }
    public var leaves: [[UInt8]] { levels[0] }

    /// The sibling hashes from leaf `index` up to the root (none where the path's node was promoted).
    public func siblings(of index: Int) -> [[UInt8]] {
        precondition(index >= 0 && index < leafCount, "leaf \(index) of a block of \(leafCount)")
        var siblings: [[UInt8]] = []
        var position = index
        for level in levels.dropLast() {
            if position % 2 == 1 {
                siblings.append(level[position - 1])
            } else if position + 1 < level.count {
                siblings.append(level[position + 1])
            }
            position /= 2
        }
        return siblings
    }

    /// The leaf of an event as one member receives it: its serialized `SequencedEvent` (counter 0).
    public static func leaf(_ event: [UInt8]) -> [UInt8] {
        PurposeHasher.hash(.sequencedBlockLeaf, event).digest
    }

    static func node(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        PurposeHasher.hash(.sequencedBlockNode, left, right).digest
    }

    /// What the sequencer signs for a block: the leaf count and the root. (The domain and the
    /// recipient are in every leaf's event, so a block cannot be passed off elsewhere either.)
    public static func signedHash(leafCount: UInt64, root: [UInt8]) -> PurposeHash {
        var hasher = PurposeHasher(.sequencedBlock)
        hasher.append(leafCount)
        hasher.append(root)
        return hasher.finalize()
    }

    /// The root that `leaf` at `index` of `count` leaves leads to through `siblings`; throws if
    /// the proof's shape is impossible (wrong number or size of siblings, index out of range).
    public static func root(leaf: [UInt8], index: UInt64, count: UInt64, siblings: [[UInt8]]) throws(SequencerClientError) -> [UInt8] {
        guard count >= 1, count <= leafCountMaximum else { throw .malformedBlockProof("a block of \(count) leaves") }
        guard index < count else { throw .malformedBlockProof("leaf \(index) of a block of \(count)") }
        var hash = leaf
        var position = index
        var width = count
        var used = 0
        while width > 1 {
            let hasSibling = position % 2 == 1 || position + 1 < width
            if hasSibling {
                guard used < siblings.count else { throw .malformedBlockProof("too few sibling hashes (\(siblings.count))") }
                let sibling = siblings[used]
                guard sibling.count == 32 else { throw .malformedBlockProof("a sibling hash of \(sibling.count) bytes") }
                hash = position % 2 == 1 ? node(sibling, hash) : node(hash, sibling)
                used += 1
            }
            position /= 2
            width = (width + 1) / 2
        }
        guard used == siblings.count else { throw .malformedBlockProof("\(siblings.count - used) sibling hashes too many") }
        return hash
    }
}

/// The bytes of a member's event that a block signs: timestamp, domain, recipient and content,
/// without the counter (derived when the event is read, after its block was signed).
///
/// Built in two parts so that the costly one (the member's envelopes) is serialized when the
/// submission arrives, concurrently, and the writer only prepends the timestamp it assigns:
/// the concatenation of two encodings of a message is the encoding of their fields together,
/// and the timestamp (field 2) precedes the other fields (3 to 6), so the bytes are exactly
/// `SequencedEvent(timestamp:domain:recipient:event:).serializedBytes()`.
enum EventView {
    /// Everything but the counter and the timestamp.
    static func body(domain: String, recipient: String, event: Weft.V1.SequencedEvent.Event?) throws -> [UInt8] {
        var view = Weft.V1.SequencedEvent(domain: domain, recipient: recipient)
        view.event = event
        return try view.serializedBytes()
    }

    /// `body` preceded by `timestamp`.
    static func bytes(timestamp: Int64, body: [UInt8]) throws -> [UInt8] {
        try Weft.V1.SequencedEvent(timestamp: .init(microsSinceEpoch: timestamp)).serializedBytes() + body
    }

    /// What `recipient` sees of a deliver: only its envelopes (and those to `ALL`).
    static func deliver(sender: String, messageID: String, batch: Weft.V1.Batch, traceparent: String, recipient: String) -> Weft.V1.SequencedEvent.Event {
        var mine = Weft.V1.Batch()
        mine.envelopes = batch.envelopes.filter { $0.recipients.contains(recipient) || $0.recipients.contains(Sequencer.allMembers) }
        return .deliver(.init(sender: sender, messageID: messageID, batch: mine, traceparent: traceparent))
    }

    static func deliverError(messageID: String, code: UInt32, errorID: String, message: String) -> Weft.V1.SequencedEvent.Event {
        .deliverError(.init(messageID: messageID, reason: .init(code: code, message: message, errorID: errorID)))
    }
}

/// The key and domain the writer signs blocks with; set once the node's service knows them.
/// Until then (and in a node used without its service) events are stored unsigned and each is
/// signed when it is served, as before blocks existed.
final class BlockSigning: Sendable {
    struct Signer: Sendable {
        let key: SigningPrivateKey
        let domain: String
    }

    private let signer = Mutex<Signer?>(nil)

    var current: Signer? { signer.withLock { $0 } }

    func set(_ value: Signer) { signer.withLock { $0 = value } }
}

/// Where a stored event's leaf is: its writer's block (node and the block's timestamp, the
/// watermark of its group commit) and the leaf's position in it.
struct BlockPlace: Sendable, Equatable, Hashable {
    let node: Int16
    let timestamp: Int64
    let leaf: Int
}

/// A signed block, as readers need it to prove its events: the tree and the signature.
struct SignedBlock: Sendable {
    let tree: SequencedBlockTree
    let signature: Weft.V1.Signature

    func proof(leaf: Int) -> Weft.V1.SequencedBlockProof {
        .init(blockSignature: signature, leafCount: UInt64(tree.leafCount), leafIndex: UInt64(leaf), siblings: tree.siblings(of: leaf))
    }
}

/// The node's recent signed blocks, so that the subscriptions reading a block build its tree
/// once: the writer adds its own blocks as it commits them, blocks of other nodes are read from
/// `sequencer_blocks` on first use. Bounded: the oldest go first.
final class BlockCache: Sendable {
    struct Key: Hashable, Sendable {
        let node: Int16
        let timestamp: Int64
    }

    /// Blocks kept; at 10,000 submissions/s and a group commit every few milliseconds this is
    /// more than a second of blocks, so live subscriptions always hit.
    static let capacity = 1024

    private let state = Mutex<(blocks: [Key: SignedBlock], order: [Key], next: Int)>(([:], [], 0))
    /// Loads under way: the subscriptions of a node reach another node's block at about the
    /// same time, and one of them reading it is enough.
    private let loading = Mutex<[Key: Task<SignedBlock?, any Error>]>([:])
    private let database: PostgresDatabase

    init(database: PostgresDatabase) { self.database = database }

    /// Blocks whose events' bytes are kept too: the latest few of this node's own, which its
    /// subscriptions serve within milliseconds of the commit (about 200 KB per block of 80
    /// submissions), up to `eventsBytesCapacity` in all: a block of large batches to many
    /// recipients (each member's event holds its own copy of an envelope to `ALL`) can be
    /// hundreds of MiB, and its events are then read from the database instead.
    static let eventsCapacity = 64
    static let eventsBytesCapacity = 64 << 20

    /// The kept blocks' events, oldest block first in `order`, and their bytes in all.
    private let recentEvents = Mutex<(events: [Key: [[UInt8]]], order: [Key], bytes: Int)>(([:], [], 0))

    /// The bytes of the event at `place` as its member receives them, if the writer of this node
    /// made them recently: exactly what the block's leaf hashes, so nothing needs rebuilding.
    func eventBytes(_ place: BlockPlace) -> [UInt8]? {
        recentEvents.withLock { recent in
            guard let events = recent.events[Key(node: place.node, timestamp: place.timestamp)], place.leaf < events.count else { return nil }
            return events[place.leaf]
        }
    }

    /// The timestamps of `node`'s blocks whose events' bytes are kept (`eventBytes`): the node's
    /// shared reader need not read those events' batches.
    func blocksWithEvents(of node: Int16) -> [Int64] {
        recentEvents.withLock { recent in recent.order.lazy.filter { $0.node == node }.map(\.timestamp) }
    }

    func insert(_ block: SignedBlock, node: Int16, timestamp: Int64, events: [[UInt8]]? = nil) {
        let key = Key(node: node, timestamp: timestamp)
        if let events, events.count == block.tree.leafCount {
            let size = events.reduce(0) { $0 + $1.count }
            recentEvents.withLock { recent in
                guard size <= Self.eventsBytesCapacity, recent.events[key] == nil else { return }
                recent.events[key] = events
                recent.order.append(key)
                recent.bytes += size
                while recent.order.count > Self.eventsCapacity || recent.bytes > Self.eventsBytesCapacity {
                    let oldest = recent.order.removeFirst()
                    recent.bytes -= recent.events.removeValue(forKey: oldest)?.reduce(0) { $0 + $1.count } ?? 0
                }
            }
        }
        state.withLock { state in
            guard state.blocks.updateValue(block, forKey: key) == nil else { return }
            if state.order.count < Self.capacity {
                state.order.append(key)
            } else {
                state.blocks.removeValue(forKey: state.order[state.next])
                state.order[state.next] = key
                state.next = (state.next + 1) % Self.capacity
            }
        }
    }

    /// The block of `place`, from memory or the database; nil if it is not stored (pruned).
    func block(_ place: BlockPlace) async throws -> SignedBlock? {
        let key = Key(node: place.node, timestamp: place.timestamp)
        if let block = state.withLock({ $0.blocks[key] }) { return block }
        let load = loading.withLock { loading in
            if let running = loading[key] { return running }
            let task = Task { try await self.load(place, key: key) }
            loading[key] = task
            return task
        }
        defer { _ = loading.withLock { $0.removeValue(forKey: key) } }
        return try await load.value
    }

    private func load(_ place: BlockPlace, key: Key) async throws -> SignedBlock? {
        if let block = state.withLock({ $0.blocks[key] }) { return block }
        let row = try await database.withConnection { connection in
            try connection.execute(
                "SELECT leaves, signature FROM sequencer_blocks WHERE node = $1::int8::int2 AND block_ts = $2",
                [.int64(Int64(place.node)), .int64(place.timestamp)]
            ).rows.first.map { (try $0[0].bytes ?? [], try $0[1].bytes ?? []) }
        }
        guard let (leafBytes, signatureBytes) = row else { return nil }
        guard !leafBytes.isEmpty, leafBytes.count % 32 == 0 else {
            throw SequencerStoreError.corruptBlock(node: place.node, timestamp: place.timestamp, reason: "leaves of \(leafBytes.count) bytes")
        }
        let signature: Weft.V1.Signature
        do {
            signature = try Weft.V1.Signature(serializedBytes: signatureBytes)
        } catch {
            throw SequencerStoreError.corruptBlock(node: place.node, timestamp: place.timestamp, reason: "signature: \(error)")
        }
        let leaves = stride(from: 0, to: leafBytes.count, by: 32).map { Array(leafBytes[$0..<$0 + 32]) }
        let block = SignedBlock(tree: SequencedBlockTree(leaves: leaves), signature: signature)
        insert(block, node: place.node, timestamp: place.timestamp)
        return block
    }
}

/// Stored data the sequencer cannot serve.
enum SequencerStoreError: Error, CustomStringConvertible {
    case corruptBlock(node: Int16, timestamp: Int64, reason: String)

    var description: String {
        switch self {
        case .corruptBlock(let node, let timestamp, let reason):
            "the stored block of sequencer node \(node) at \(timestamp) is unreadable (\(reason)); restore sequencer_blocks from a backup"
        }
    }
}
