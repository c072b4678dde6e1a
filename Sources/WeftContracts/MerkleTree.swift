internal import WeftCrypto
internal import WeftWire

// The hashes of a transaction's Merkle tree (docs/contracts.md §13). A leaf
// (view common data, view participant data, each metadata node) hashes its
// salt and its canonical encoding under its own purpose; a view hashes its
// two leaves' hashes and its subviews' hashes; the root hashes the three
// metadata hashes and the root views' hashes. Blinding a node replaces it by
// its hash, which leaves every hash above it, and so the root, unchanged.

extension CanonicalWriter {
    mutating func commonData(_ data: ViewCommonData) {
        parties(data.informees)
        parties(data.confirmingParties)
        int64(Int64(data.threshold))
    }

    mutating func participantData(_ data: ViewParticipantData) {
        switch data.action {
        case .create(let id, let seed):
            byte(1)
            digest(seed.digest)
            digest(id.digest)
        case .exercise(let id, let template, let choice, let argument, let actors, let seed, let consuming):
            byte(2)
            digest(seed.digest)
            digest(id.digest)
            templateID(template)
            string(choice)
            value(argument)
            parties(actors)
            byte(consuming ? 1 : 0)
        case .fetch(let id, let actors):
            byte(3)
            digest(id.digest)
            parties(actors)
        }
        count(data.coreInputs.count)
        for input in data.coreInputs {
            digest(input.id.digest)
            contract(input.contract)
            byte(input.consumed ? 1 : 0)
            if let seed = input.creationSeed {
                byte(1)
                digest(seed.digest)
            } else {
                byte(0)
            }
        }
        count(data.createdCore.count)
        for created in data.createdCore {
            digest(created.id.digest)
            contract(created.contract)
            byte(created.consumedInCore ? 1 : 0)
            digest(created.creationSeed.digest)
        }
        count(data.createdInSubviewArchivedInCore.count)
        for id in data.createdInSubviewArchivedInCore { digest(id.digest) }
    }

    mutating func submitterMetadata(_ metadata: SubmitterMetadata) {
        parties(metadata.actAs)
        string(metadata.submittingParticipant)
        string(metadata.commandID)
        string(metadata.applicationID)
        string(metadata.submissionID)
        int64(metadata.maxSequencingTime)
        int64(metadata.deduplicationPeriod)
    }

    mutating func commonMetadata(_ metadata: CommonMetadata) {
        string(metadata.domain)
        string(metadata.mediator)
        count(metadata.uuid.count)
        raw(metadata.uuid)
        uint32(metadata.policy.rawValue)
    }

    mutating func participantMetadata(_ metadata: ParticipantMetadata) {
        int64(metadata.ledgerTime)
        int64(metadata.submissionTime)
        string(metadata.workflowID)
    }
}

/// The hash of each kind of Merkle node.
enum MerkleHash {
    /// `PurposeHash(purpose, salt, body)`.
    static func leaf(_ purpose: Weft.V1.HashPurpose, _ salt: Digest32, _ body: [UInt8]) -> Digest32 {
        var hasher = PurposeHasher(purpose)
        hasher.append(salt.bytes)
        hasher.append(body)
        return Digest32(hasher.finalize().digest)!
    }

    static func of(_ data: ViewCommonData) -> Digest32 {
        var writer = CanonicalWriter(capacity: 128)
        writer.commonData(data)
        return leaf(.viewCommonData, data.salt, writer.bytes)
    }

    static func of(_ data: ViewParticipantData) -> Digest32 {
        var writer = CanonicalWriter(capacity: 512)
        writer.participantData(data)
        return leaf(.viewParticipantData, data.salt, writer.bytes)
    }

    static func of(_ metadata: SubmitterMetadata, salt: Digest32) -> Digest32 {
        var writer = CanonicalWriter(capacity: 128)
        writer.submitterMetadata(metadata)
        return leaf(.submitterMetadata, salt, writer.bytes)
    }

    static func of(_ metadata: CommonMetadata, salt: Digest32) -> Digest32 {
        var writer = CanonicalWriter(capacity: 128)
        writer.commonMetadata(metadata)
        return leaf(.commonMetadata, salt, writer.bytes)
    }

    static func of(_ metadata: ParticipantMetadata, salt: Digest32) -> Digest32 {
        var writer = CanonicalWriter(capacity: 64)
        writer.participantMetadata(metadata)
        return leaf(.participantMetadata, salt, writer.bytes)
    }

    /// `PurposeHash(TRANSACTION_VIEW, common, participant, u64be(n), subview₁, …, subviewₙ)`.
    static func view(_ common: Digest32, _ participant: Digest32, _ subviews: [Digest32]) -> Digest32 {
        var hasher = PurposeHasher(.transactionView)
        hasher.append(common.bytes)
        hasher.append(participant.bytes)
        hasher.append(UInt64(subviews.count))
        for subview in subviews { hasher.append(subview.bytes) }
        return Digest32(hasher.finalize().digest)!
    }

    /// `PurposeHash(MERKLE_TREE_NODE, submitter, common, participant, u64be(n), root view₁, …, root viewₙ)`.
    static func root(_ submitter: Digest32, _ common: Digest32, _ participant: Digest32, _ rootViews: [Digest32])
        -> Digest32
    {
        var hasher = PurposeHasher(.merkleTreeNode)
        hasher.append(submitter.bytes)
        hasher.append(common.bytes)
        hasher.append(participant.bytes)
        hasher.append(UInt64(rootViews.count))
        for view in rootViews { hasher.append(view.bytes) }
        return Digest32(hasher.finalize().digest)!
    }
}

/// The proof that a view belongs to a transaction with a given root hash:
/// the hashes along the path from the view up to the root. A participant
/// that checks it knows the view it decrypted is part of the transaction
/// whose root hash every informee participant received, and so that all of
/// them validate the same transaction.
public struct MerkleProof: Sendable, Equatable {
    /// One view on the path, above the proven view.
    public struct Step: Sendable, Equatable {
        public let commonDataHash: Digest32
        public let participantDataHash: Digest32
        /// The hashes of this view's other subviews, in order (all but the
        /// one on the path).
        public let siblings: [Digest32]
        /// The place of the path's subview among this view's subviews.
        public let index: Int

        public init(commonDataHash: Digest32, participantDataHash: Digest32, siblings: [Digest32], index: Int) {
            self.commonDataHash = commonDataHash
            self.participantDataHash = participantDataHash
            self.siblings = siblings
            self.index = index
        }
    }

    /// The hash of the proven view.
    public let viewHash: Digest32
    /// The proven view's ancestors, its parent first.
    public let ancestors: [Step]
    public let submitterMetadataHash: Digest32
    public let commonMetadataHash: Digest32
    public let participantMetadataHash: Digest32
    /// The hashes of the other root views, in order.
    public let rootSiblings: [Digest32]
    /// The place of the path's root view among the root views.
    public let rootIndex: Int

    public init(
        viewHash: Digest32, ancestors: [Step], submitterMetadataHash: Digest32, commonMetadataHash: Digest32,
        participantMetadataHash: Digest32, rootSiblings: [Digest32], rootIndex: Int
    ) {
        self.viewHash = viewHash
        self.ancestors = ancestors
        self.submitterMetadataHash = submitterMetadataHash
        self.commonMetadataHash = commonMetadataHash
        self.participantMetadataHash = participantMetadataHash
        self.rootSiblings = rootSiblings
        self.rootIndex = rootIndex
    }

    /// The position of the proven view.
    public var position: [Int] { [rootIndex] + ancestors.reversed().map(\.index) }

    /// The root hash the path leads to; nil when an index is out of range.
    public var computedRoot: Digest32? {
        func inserting(_ hash: Digest32, into siblings: [Digest32], at index: Int) -> [Digest32]? {
            guard index >= 0, index <= siblings.count else { return nil }
            var all = siblings
            all.insert(hash, at: index)
            return all
        }
        var hash = viewHash
        for step in ancestors {
            guard let subviews = inserting(hash, into: step.siblings, at: step.index) else { return nil }
            hash = MerkleHash.view(step.commonDataHash, step.participantDataHash, subviews)
        }
        guard let rootViews = inserting(hash, into: rootSiblings, at: rootIndex) else { return nil }
        return MerkleHash.root(submitterMetadataHash, commonMetadataHash, participantMetadataHash, rootViews)
    }

    /// Whether the path leads from the view hash to `root`.
    public func verify(root: Digest32) -> Bool { computedRoot == root }

    /// Whether `view` — its content, hashed afresh — is the proven view at
    /// the proven position, and the path leads to `root`.
    public func verify(view: View, root: Digest32) -> Bool {
        let hash = MerkleHash.view(
            MerkleHash.of(view.commonData), MerkleHash.of(view.participantData), view.subviewHashes)
        return hash == viewHash && view.position == position && verify(root: root)
    }

    /// Format version of `serializedBytes`.
    public static let version: UInt32 = 1

    /// `u32be(1) view_hash u32be(n) step×n submitter common participant
    /// u32be(root_index) u32be(m) root_sibling×m`, each step
    /// `common participant u32be(index) u32be(k) sibling×k`, hashes 32 bytes.
    public var serializedBytes: [UInt8] {
        var writer = CanonicalWriter(capacity: 32 * (8 + rootSiblings.count) + 96 * ancestors.count)
        writer.uint32(Self.version)
        writer.digest(viewHash)
        writer.count(ancestors.count)
        for step in ancestors {
            writer.digest(step.commonDataHash)
            writer.digest(step.participantDataHash)
            writer.count(step.index)
            writer.count(step.siblings.count)
            for sibling in step.siblings { writer.digest(sibling) }
        }
        writer.digest(submitterMetadataHash)
        writer.digest(commonMetadataHash)
        writer.digest(participantMetadataHash)
        writer.count(rootIndex)
        writer.count(rootSiblings.count)
        for sibling in rootSiblings { writer.digest(sibling) }
        return writer.bytes
    }

    /// Reads `serializedBytes`; throws on anything but exactly one proof.
    public init(serializedBytes bytes: [UInt8]) throws(ViewError) {
        var reader = ByteReader(bytes)
        guard try reader.uint32() == Self.version else { throw .malformed("a Merkle proof of an unknown version") }
        viewHash = try reader.digest()
        var steps: [Step] = []
        for _ in 0..<(try reader.count(elementBytes: 72)) {
            let common = try reader.digest()
            let participant = try reader.digest()
            let index = Int(try reader.uint32())
            var siblings: [Digest32] = []
            for _ in 0..<(try reader.count(elementBytes: 32)) { siblings.append(try reader.digest()) }
            steps.append(
                Step(commonDataHash: common, participantDataHash: participant, siblings: siblings, index: index))
        }
        ancestors = steps
        submitterMetadataHash = try reader.digest()
        commonMetadataHash = try reader.digest()
        participantMetadataHash = try reader.digest()
        rootIndex = Int(try reader.uint32())
        var siblings: [Digest32] = []
        for _ in 0..<(try reader.count(elementBytes: 32)) { siblings.append(try reader.digest()) }
        rootSiblings = siblings
        guard reader.isAtEnd else { throw .malformed("bytes after the end of a Merkle proof") }
    }
}

/// Reads big-endian fields, refusing to read past the end.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func uint32() throws(ViewError) -> UInt32 {
        guard bytes.count - offset >= 4 else { throw .malformed("truncated") }
        var value: UInt32 = 0
        for byte in bytes[offset..<(offset + 4)] { value = value << 8 | UInt32(byte) }
        offset += 4
        return value
    }

    /// A count of elements of at least `elementBytes` each, checked against
    /// the bytes left, so a corrupt count cannot make the reader allocate.
    mutating func count(elementBytes: Int) throws(ViewError) -> Int {
        let count = Int(try uint32())
        guard count <= (bytes.count - offset) / elementBytes else { throw .malformed("a count past the end") }
        return count
    }

    mutating func digest() throws(ViewError) -> Digest32 {
        guard bytes.count - offset >= 32 else { throw .malformed("truncated") }
        let digest = Digest32(Array(bytes[offset..<(offset + 32)]))!
        offset += 32
        return digest
    }
}

extension TransactionViews {
    /// The proof that view `index` belongs to the tree with `rootHash`.
    public func proof(of index: Int) -> MerkleProof {
        var steps: [MerkleProof.Step] = []
        var child = index
        while let parent = parents[child] {
            let place = subviews[parent].firstIndex(of: child)!
            var siblings = views[parent].subviewHashes
            siblings.remove(at: place)
            steps.append(
                MerkleProof.Step(
                    commonDataHash: views[parent].commonDataHash,
                    participantDataHash: views[parent].participantDataHash, siblings: siblings, index: place))
            child = parent
        }
        let place = rootViews.firstIndex(of: child)!
        var siblings = rootViews.map { views[$0].hash }
        siblings.remove(at: place)
        return MerkleProof(
            viewHash: views[index].hash, ancestors: steps, submitterMetadataHash: submitterMetadataHash,
            commonMetadataHash: commonMetadataHash, participantMetadataHash: participantMetadataHash,
            rootSiblings: siblings, rootIndex: place)
    }
}

extension TransactionViews {
    /// The input of every SHA-256 that interpreting the transaction and
    /// building these views computes, as raw bytes: purpose-tagged fields as
    /// `PurposeHasher` feeds them (node seeds and contract ids, leaves, views,
    /// the root), and for each salt the two SHA-256 continuations of an HMAC
    /// with a prepared key. `weft-bench views` hashes them with plain
    /// SHA-256: the hashing floor of the whole pipeline.
    @_spi(Benchmarks) public var hashPreimages: [[UInt8]] {
        func preimage(_ purpose: Weft.V1.HashPurpose, _ fields: [[UInt8]]) -> [UInt8] {
            var writer = CanonicalWriter()
            writer.uint32(UInt32(bitPattern: purpose.rawValue))
            for field in fields {
                writer.count(field.count)
                writer.raw(field)
            }
            return writer.bytes
        }
        func u64(_ value: Int) -> [UInt8] {
            var writer = CanonicalWriter(capacity: 8)
            writer.uint64(UInt64(value))
            return writer.bytes
        }
        var result: [[UInt8]] = []
        let placeholderSeed = [UInt8](repeating: 0, count: 32)
        for node in transaction.nodes {
            guard let seed = node.seed else { continue }
            let label = node.parent == nil ? "weft/root-node-seed/v1" : "weft/child-node-seed/v1"
            result.append(preimage(.contractID, [Array(label.utf8), placeholderSeed, u64(node.childIndex)]))
            if case .create(let create) = node.action {
                var writer = CanonicalWriter()
                writer.contract(create.instance)
                result.append(
                    preimage(.contractID, [Array("weft/contract-id/v1".utf8), seed.digest.bytes, writer.bytes]))
            }
        }
        for _ in 0..<(3 + 2 * views.count) {
            result.append(u64(0))
            result.append(placeholderSeed)
        }
        for view in views {
            var common = CanonicalWriter()
            common.commonData(view.commonData)
            result.append(preimage(.viewCommonData, [view.commonData.salt.bytes, common.bytes]))
            var participant = CanonicalWriter()
            participant.participantData(view.participantData)
            result.append(preimage(.viewParticipantData, [view.participantData.salt.bytes, participant.bytes]))
            result.append(
                preimage(
                    .transactionView,
                    [view.commonDataHash.bytes, view.participantDataHash.bytes, u64(view.subviewHashes.count)]
                        + view.subviewHashes.map(\.bytes)))
        }
        var submitter = CanonicalWriter()
        submitter.submitterMetadata(metadata.submitter)
        result.append(preimage(.submitterMetadata, [metadataSalts[0].bytes, submitter.bytes]))
        var common = CanonicalWriter()
        common.commonMetadata(metadata.common)
        result.append(preimage(.commonMetadata, [metadataSalts[1].bytes, common.bytes]))
        var participant = CanonicalWriter()
        participant.participantMetadata(metadata.participant)
        result.append(preimage(.participantMetadata, [metadataSalts[2].bytes, participant.bytes]))
        result.append(
            preimage(
                .merkleTreeNode,
                [
                    submitterMetadataHash.bytes, commonMetadataHash.bytes, participantMetadataHash.bytes,
                    u64(rootViews.count),
                ]
                    + rootViews.map { views[$0].hash.bytes }))
        return result
    }
}
