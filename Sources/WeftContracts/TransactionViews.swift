internal import WeftCrypto

/// Who submitted a transaction and how to deduplicate it
/// (`weft.v1.SubmitterMetadata`). Revealed to the informees of root views.
public struct SubmitterMetadata: Sendable, Equatable {
    /// The parties the transaction acts as; sorted.
    public var actAs: [Party]
    public var submittingParticipant: String
    public var commandID: String
    public var applicationID: String
    public var submissionID: String
    /// Microseconds since the epoch; the request is void if not sequenced by then.
    public var maxSequencingTime: Int64
    /// Microseconds.
    public var deduplicationPeriod: Int64

    public init(
        actAs: [Party], submittingParticipant: String = "", commandID: String = "", applicationID: String = "",
        submissionID: String = "", maxSequencingTime: Int64 = 0, deduplicationPeriod: Int64 = 0
    ) {
        self.actAs = actAs.normalized()
        self.submittingParticipant = submittingParticipant
        self.commandID = commandID
        self.applicationID = applicationID
        self.submissionID = submissionID
        self.maxSequencingTime = maxSequencingTime
        self.deduplicationPeriod = deduplicationPeriod
    }
}

/// What every node involved in a request sees (`weft.v1.CommonMetadata`).
public struct CommonMetadata: Sendable, Equatable {
    public var domain: String
    public var mediator: String
    /// 16 random bytes that make the request unique.
    public var uuid: [UInt8]
    /// Set from the policy the views are built with.
    public internal(set) var policy: ConfirmationPolicy.Kind

    public init(domain: String = "", mediator: String = "", uuid: [UInt8] = []) {
        self.domain = domain
        self.mediator = mediator
        self.uuid = uuid
        policy = .signatory
    }

    init(domain: String, mediator: String, uuid: [UInt8], policy: ConfirmationPolicy.Kind) {
        self.domain = domain
        self.mediator = mediator
        self.uuid = uuid
        self.policy = policy
    }
}

/// The transaction's times, for participants only
/// (`weft.v1.ParticipantMetadata`).
public struct ParticipantMetadata: Sendable, Equatable {
    /// Microseconds since the epoch.
    public var ledgerTime: Int64
    /// Microseconds since the epoch.
    public var submissionTime: Int64
    public var workflowID: String

    public init(ledgerTime: Int64 = 0, submissionTime: Int64 = 0, workflowID: String = "") {
        self.ledgerTime = ledgerTime
        self.submissionTime = submissionTime
        self.workflowID = workflowID
    }
}

/// The metadata nodes of a transaction's Merkle tree.
public struct TransactionMetadata: Sendable, Equatable {
    public var submitter: SubmitterMetadata
    public var common: CommonMetadata
    public var participant: ParticipantMetadata

    public init(
        submitter: SubmitterMetadata, common: CommonMetadata = CommonMetadata(),
        participant: ParticipantMetadata = ParticipantMetadata()
    ) {
        self.submitter = submitter
        self.common = common
        self.participant = participant
    }
}

/// A transaction cut into views and hashed as a Merkle tree: what a
/// submitting participant builds before it encrypts each view for its
/// informees' participants, sends the informee tree to the mediator and the
/// root hash to every informee participant (DESIGN.md §7, §8).
///
/// Views are in pre-order of the view tree: a view before its subviews,
/// subviews in the order of their actions. Every node of the tree is salted
/// with `HMAC-SHA256(transaction seed, index)`, so a blinded node's hash
/// reveals nothing of its content (docs/contracts.md §13).
public struct TransactionViews: Sendable {
    public let transaction: Transaction
    public let metadata: TransactionMetadata
    public let policy: ConfirmationPolicy
    /// All views, in pre-order.
    public let views: [View]
    /// Indexes of the root views (one per root action).
    public let rootViews: [Int]
    /// Each view's parent (an index into `views`); nil for a root view.
    public let parents: [Int?]
    /// Each view's subviews (indexes into `views`), in order.
    public let subviews: [[Int]]
    /// Each view's core: the transaction's node indexes it holds, in
    /// pre-order (the root action first).
    public let coreNodes: [[Int]]
    /// Salts of the submitter, common and participant metadata.
    public let metadataSalts: [Digest32]
    /// Purposes `SUBMITTER_METADATA`, `COMMON_METADATA`,
    /// `PARTICIPANT_METADATA`.
    public let submitterMetadataHash: Digest32
    public let commonMetadataHash: Digest32
    public let participantMetadataHash: Digest32
    /// The Merkle root (purpose `MERKLE_TREE_NODE`): commits to every node of
    /// the tree. The submitter signs it; every informee participant receives
    /// it in a root hash message.
    public let rootHash: Digest32
    /// For record labels on the wire; templates of other packages get
    /// empty labels.
    let packages: [PackageID: Package]

    /// Cuts `transaction` into views and hashes them. `seed` is the
    /// transaction's seed (the one it was interpreted with): the salts
    /// derive from it. `packages` give record labels when the views are
    /// converted to `weft.v1` messages. Throws only when the VIP policy does
    /// not apply to some view.
    public init(
        _ transaction: Transaction, seed: TransactionSeed, metadata: TransactionMetadata,
        policy: ConfirmationPolicy = .signatory, packages: [Package] = []
    ) throws(ViewError) {
        let decomposition = Decomposition(transaction)
        let salts = MerkleSalts(seed)
        var commons: [ViewCommonData] = []
        commons.reserveCapacity(decomposition.shapes.count)
        for index in decomposition.shapes.indices {
            commons.append(try decomposition.commonData(index, policy: policy))
        }
        var views = [View?](repeating: nil, count: decomposition.shapes.count)
        // Children have larger indexes than their parents: build bottom-up,
        // so each view's subview hashes exist when it is built.
        for index in decomposition.shapes.indices.reversed() {
            let shape = decomposition.shapes[index]
            let participant = decomposition.participantData(index)
            views[index] = View(
                position: shape.position, commonData: commons[index].salted(salts.viewCommonData(index)),
                participantData: participant.salted(salts.viewParticipantData(index)),
                subviewHashes: shape.subviews.map { views[$0]!.hash })
        }
        var metadata = metadata
        metadata.common.policy = policy.kind
        self.transaction = transaction
        self.metadata = metadata
        self.policy = policy
        let built = views.map { $0! }
        self.views = built
        rootViews = decomposition.rootViews
        parents = decomposition.shapes.map(\.parent)
        subviews = decomposition.shapes.map(\.subviews)
        coreNodes = decomposition.shapes.map(\.core)
        metadataSalts = [salts.submitterMetadata, salts.commonMetadata, salts.participantMetadata]
        submitterMetadataHash = MerkleHash.of(metadata.submitter, salt: metadataSalts[0])
        commonMetadataHash = MerkleHash.of(metadata.common, salt: metadataSalts[1])
        participantMetadataHash = MerkleHash.of(metadata.participant, salt: metadataSalts[2])
        rootHash = MerkleHash.root(
            submitterMetadataHash, commonMetadataHash, participantMetadataHash,
            decomposition.rootViews.map { built[$0].hash })
        var index: [PackageID: Package] = [:]
        for package in packages { index[package.id] = package }
        self.packages = index
    }

    /// The view at `position`, if there is one.
    public func index(of position: [Int]) -> Int? {
        guard let first = position.first, rootViews.indices.contains(first) else { return nil }
        var current = rootViews[first]
        for step in position.dropFirst() {
            guard subviews[current].indices.contains(step) else { return nil }
            current = subviews[current][step]
        }
        return current
    }

    /// The views `index` descends from, nearest first.
    public func ancestors(of index: Int) -> [Int] {
        var result: [Int] = []
        var current = parents[index]
        while let view = current {
            result.append(view)
            current = parents[view]
        }
        return result
    }

    /// The views below `index` (its subviews, theirs, …), in pre-order.
    public func descendants(of index: Int) -> [Int] {
        var result: [Int] = []
        var stack = subviews[index].reversed() as [Int]
        while let view = stack.popLast() {
            result.append(view)
            stack.append(contentsOf: subviews[view].reversed())
        }
        return result
    }

    /// The views `party` is entitled to see: those it is an informee of and
    /// their subviews (the consequences of actions it is told of, as in
    /// Daml's ledger model). Its participant receives exactly these, each
    /// encrypted; the rest of the tree reaches it only as hashes.
    public func viewsFor(party: Party) -> [Int] {
        var seen = [Bool](repeating: false, count: views.count)
        for (index, view) in views.enumerated() {
            if let parent = parents[index], seen[parent] {
                seen[index] = true
            } else if view.commonData.informees.containsSorted(party) {
                seen[index] = true
            }
        }
        return views.indices.filter { seen[$0] }
    }

    /// The views any of `parties` is entitled to see, in pre-order.
    public func viewsFor(parties: [Party]) -> [Int] {
        var seen = Set<Int>()
        for party in parties { seen.formUnion(viewsFor(party: party)) }
        return seen.sorted()
    }
}

/// The salts of a transaction's Merkle tree: `HMAC-SHA256(seed, u64be(i))`
/// for node `i`, numbered submitter metadata 0, common metadata 1,
/// participant metadata 2, then for view `v` (pre-order) its common data
/// `3 + 2v` and its participant data `4 + 2v`.
struct MerkleSalts {
    private let key: HMACSHA256.Key

    init(_ seed: TransactionSeed) {
        do throws(CryptoError) {
            key = try HMACSHA256.Key(seed.digest.bytes)
        } catch {
            fatalError("OpenSSL cannot prepare an HMAC-SHA256 key: \(error)")
        }
    }

    func salt(_ index: Int) -> Digest32 {
        var message = CanonicalWriter(capacity: 8)
        message.uint64(UInt64(index))
        return Digest32(key.authenticate(message.bytes))!
    }

    var submitterMetadata: Digest32 { salt(0) }
    var commonMetadata: Digest32 { salt(1) }
    var participantMetadata: Digest32 { salt(2) }
    func viewCommonData(_ view: Int) -> Digest32 { salt(3 + 2 * view) }
    func viewParticipantData(_ view: Int) -> Digest32 { salt(4 + 2 * view) }
}
