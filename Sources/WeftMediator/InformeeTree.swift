public import WeftContracts
public import WeftWire

/// What the mediator reads from a request's informee tree (`weft.v1.InformeeMessage`): the
/// root hash, the common metadata, and for every view its hash, informees, confirming parties
/// with their weights and its threshold. The participant data stays blinded and unread.
///
/// Hashes are recomputed from the content (docs/contracts.md §13), so the root hash here is the
/// one the tree commits to, whatever the submitter claims elsewhere.
public struct InformeeTree: Sendable, Equatable {
    /// One view as the mediator sees it.
    public struct View: Sendable, Equatable {
        /// Index among the root views, then among each parent's subviews.
        public let position: [Int]
        /// Purpose `TRANSACTION_VIEW`: the view's id in confirmation responses.
        public let hash: Digest32
        /// Sorted, without duplicates.
        public let informees: [Party]
        /// The informees whose approval counts, with their weight (> 0).
        public let weights: [Party: Int]
        /// The sum of approving weights the view needs.
        public let threshold: Int

        /// The confirming parties, sorted.
        public var confirmingParties: [Party] { weights.keys.sorted() }
        /// The sum of all confirming weights.
        public var totalWeight: Int { weights.values.reduce(0, +) }
    }

    public let rootHash: Digest32
    /// `CommonMetadata.domain`.
    public let domain: String
    /// `CommonMetadata.mediator`: the member id of the mediator that must decide the request.
    public let mediator: String
    /// `CommonMetadata.uuid`: makes the request unique, so a replay is recognised.
    public let uuid: [UInt8]
    public let policy: ConfirmationPolicy.Kind
    /// Every view, in pre-order (a view before its subviews).
    public let views: [View]

    /// Reads `tree`; throws `malformedRequest` for a tree the mediator cannot decide: one whose
    /// hashes do not compute, with its common metadata, a view or a view's common data
    /// blinded, an informee listed twice, or more than `viewCountMax` views.
    public init(_ tree: Weft.V1.TransactionTree, viewCountMax: Int = MediatorConfiguration().viewCountMax)
        throws(MediatorError)
    {
        do throws(ViewError) {
            rootHash = try MerkleTree.rootHash(of: tree)
        } catch {
            throw .malformedRequest("the informee tree's hashes do not compute: \(error)")
        }
        guard case .unblinded(let common)? = tree.commonMetadata?.node else {
            throw .malformedRequest("the informee tree's common metadata is blinded")
        }
        switch common.confirmationPolicy {
        case .signatory: policy = .signatory
        case .vip: policy = .vip
        case .unspecified, .unrecognized:
            throw .malformedRequest("the informee tree has no known confirmation policy")
        }
        domain = common.domain
        mediator = common.mediator
        uuid = common.uuid
        var views: [View] = []
        var stack: [(Weft.V1.BlindableTransactionView, [Int])] = tree.rootViews.enumerated().reversed().map {
            ($0.element, [$0.offset])
        }
        while let (view, position) = stack.popLast() {
            guard views.count < viewCountMax else {
                throw .malformedRequest("the informee tree has more than \(viewCountMax) views")
            }
            views.append(try Self.view(view, at: position))
            if case .unblinded(let message)? = view.node {
                for (index, subview) in message.subviews.enumerated().reversed() {
                    stack.append((subview, position + [index]))
                }
            }
        }
        guard !views.isEmpty else { throw .malformedRequest("the informee tree has no views") }
        self.views = views
    }

    private static func view(_ view: Weft.V1.BlindableTransactionView, at position: [Int]) throws(MediatorError)
        -> View
    {
        guard case .unblinded(let message)? = view.node else {
            throw .malformedRequest("view \(positionText(position)) is blinded in the informee tree")
        }
        guard case .unblinded(let common)? = message.commonData?.node else {
            throw .malformedRequest("the common data of view \(positionText(position)) is blinded")
        }
        let hash: Digest32
        do throws(ViewError) {
            hash = try MerkleTree.hash(of: view)
        } catch {
            throw .malformedRequest("view \(positionText(position)): \(error)")
        }
        var informees: [Party] = []
        var weights: [Party: Int] = [:]
        for informee in common.informees {
            let party: Party
            do throws(ContractError) {
                party = try Party(informee.party)
            } catch {
                throw .malformedRequest("view \(positionText(position)): \(error)")
            }
            informees.append(party)
            if informee.weight > 0 { weights[party] = Int(informee.weight) }
        }
        let sorted = informees.sorted()
        guard zip(sorted, sorted.dropFirst()).allSatisfy({ $0 != $1 }) else {
            throw .malformedRequest("view \(positionText(position)) lists an informee twice")
        }
        return View(
            position: position, hash: hash, informees: sorted, weights: weights, threshold: Int(common.threshold))
    }

    /// The index of the view with `hash`.
    public func viewIndex(hash: Digest32) -> Int? { views.firstIndex { $0.hash == hash } }

    /// Every informee of every view, sorted.
    public var informees: [Party] { Set(views.flatMap(\.informees)).sorted() }

    /// Every confirming party of any view, sorted.
    public var confirmingParties: [Party] { Set(views.flatMap(\.weights.keys)).sorted() }
}
