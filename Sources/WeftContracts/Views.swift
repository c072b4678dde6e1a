// Cutting a transaction into views (DESIGN.md §7, docs/contracts.md §13):
// each root action starts a view, and a child action whose informees differ
// from its parent's starts a subview. A view holds its common data (what the
// mediator sees: informees, confirming parties, threshold) and its
// participant data (what its informees' participants see: the root action,
// the contracts it reads, creates and archives).

/// Whose approval a view needs, and how many approvals (Canton's
/// confirmation policies). The mediator aggregates confirmations per view by
/// the view's confirming parties and threshold.
public enum ConfirmationPolicy: Sendable, Equatable {
    /// Every confirming party of the view's actions must approve: the
    /// signatories of the contracts acted on and the actors
    /// (docs/contracts.md §5). The threshold is all of them.
    case signatory
    /// Only informees hosted on a VIP participant confirm, and one approval
    /// suffices: for domains where a trusted operator validates on
    /// everyone's behalf. `vipHosted` are the parties hosted with VIP trust
    /// at the request's topology time. Every view needs at least one.
    case vip(vipHosted: [Party])

    /// The policy's kind, as `weft.v1.CommonMetadata` carries it.
    public var kind: Kind {
        switch self {
        case .signatory: .signatory
        case .vip: .vip
        }
    }

    /// The kind of a policy, without the topology it is applied with.
    public enum Kind: UInt32, Sendable, Equatable {
        /// `CONFIRMATION_POLICY_SIGNATORY`.
        case signatory = 1
        /// `CONFIRMATION_POLICY_VIP`.
        case vip = 2
    }
}

/// What went wrong cutting a transaction into views, or reading views and
/// trees received from elsewhere.
public enum ViewError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Under the VIP policy a view has no informee hosted on a VIP
    /// participant, so nobody could confirm it.
    case noVIPInformee(position: [Int], informees: [Party])
    /// A message that is not a well-formed view, tree or proof.
    case malformed(String)

    public var description: String {
        switch self {
        case .noVIPInformee(let position, let informees):
            "the VIP confirmation policy does not apply: view \(positionText(position)) has no informee hosted on a "
                + "VIP participant (its informees: \(informees.map(\.id).joined(separator: ", ")))"
        case .malformed(let message): "malformed view data: \(message)"
        }
    }
}

/// The part of a view the mediator sees: who is told of it, whose approval
/// it needs and how many approvals (`weft.v1.ViewCommonData`).
public struct ViewCommonData: Sendable, Equatable {
    /// The informees of the view's actions (the same for all of them);
    /// sorted.
    public let informees: [Party]
    /// The informees whose approval counts (weight 1 on the wire; the others
    /// weigh 0); sorted.
    public let confirmingParties: [Party]
    /// Approvals needed: all confirming parties under the signatory policy,
    /// one under the VIP policy.
    public let threshold: Int
    /// Blinds the node's hash: without it, a hash of a guessable view would
    /// reveal the view.
    public let salt: Digest32

    public init(informees: [Party], confirmingParties: [Party], threshold: Int, salt: Digest32) {
        self.informees = informees
        self.confirmingParties = confirmingParties
        self.threshold = threshold
        self.salt = salt
    }

    func salted(_ salt: Digest32) -> ViewCommonData {
        ViewCommonData(informees: informees, confirmingParties: confirmingParties, threshold: threshold, salt: salt)
    }
}

/// What a view's root action is: enough for a validator to re-interpret it
/// (`weft.v1.ActionDescription`).
public enum ActionDescription: Sendable, Equatable {
    /// A create; the contract is the view's first created contract.
    case create(contract: ContractID, seed: NodeSeed)
    /// An exercise of `choice` with `argument` (the choice's record) on a
    /// contract of `template`, by `actors` (the controllers).
    case exercise(
        contract: ContractID, template: TemplateID, choice: String, argument: Value, actors: [Party], seed: NodeSeed,
        consuming: Bool)
    /// A fetch by `actors` (the authorizers that are stakeholders); the
    /// contract is among the view's inputs.
    case fetch(contract: ContractID, actors: [Party])

    /// The contract the action creates, exercises or fetches.
    public var contractID: ContractID {
        switch self {
        case .create(let id, _), .exercise(let id, _, _, _, _, _, _), .fetch(let id, _): id
        }
    }

    /// The node seed (nil for a fetch).
    public var seed: NodeSeed? {
        switch self {
        case .create(_, let seed), .exercise(_, _, _, _, _, let seed, _): seed
        case .fetch: nil
        }
    }
}

/// A contract the core of a view uses that the view did not create itself
/// (`weft.v1.InputContract`).
public struct CoreInput: Sendable, Equatable {
    public let id: ContractID
    public let contract: ContractInstance
    /// Whether the view's core archives it.
    public let consumed: Bool
    /// The seed of the create that made it (`ContractInstance.salt` on the
    /// wire), when the submitter knows it: with it a validator that has
    /// never seen the contract can check that the data belongs to the id.
    public let creationSeed: NodeSeed?

    public init(id: ContractID, contract: ContractInstance, consumed: Bool, creationSeed: NodeSeed?) {
        self.id = id
        self.contract = contract
        self.consumed = consumed
        self.creationSeed = creationSeed
    }

    /// Whether the creation seed is known and proves the data belongs to the id.
    public var isAuthenticated: Bool { creationSeed.map { id.authenticates(contract, seed: $0) } ?? false }
}

/// A contract the core of a view creates (`weft.v1.CreatedContract`).
public struct CreatedContract: Sendable, Equatable {
    public let id: ContractID
    public let contract: ContractInstance
    /// Whether the view's core archives it again.
    public let consumedInCore: Bool
    /// The seed of its create node, which its id derives from: what its
    /// stakeholders store to authenticate it when it is an input later.
    public let creationSeed: NodeSeed

    public init(id: ContractID, contract: ContractInstance, consumedInCore: Bool, creationSeed: NodeSeed) {
        self.id = id
        self.contract = contract
        self.consumedInCore = consumedInCore
        self.creationSeed = creationSeed
    }
}

/// The part of a view only its informees' participants see
/// (`weft.v1.ViewParticipantData`). The view's *core* is its root action
/// and the descendants that belong to no subview.
public struct ViewParticipantData: Sendable, Equatable {
    /// The root action.
    public let action: ActionDescription
    /// Contracts the core uses (exercises or fetches) that were not created
    /// within the view or its subviews, in first-use order, with their data:
    /// what a validator re-interprets against.
    public let coreInputs: [CoreInput]
    /// Contracts the core creates, in creation order.
    public let createdCore: [CreatedContract]
    /// Contracts a subview creates that the core archives, in archive order.
    public let createdInSubviewArchivedInCore: [ContractID]
    /// Blinds the node's hash.
    public let salt: Digest32

    public init(
        action: ActionDescription, coreInputs: [CoreInput], createdCore: [CreatedContract],
        createdInSubviewArchivedInCore: [ContractID], salt: Digest32
    ) {
        self.action = action
        self.coreInputs = coreInputs
        self.createdCore = createdCore
        self.createdInSubviewArchivedInCore = createdInSubviewArchivedInCore
        self.salt = salt
    }

    func salted(_ salt: Digest32) -> ViewParticipantData {
        ViewParticipantData(
            action: action, coreInputs: coreInputs, createdCore: createdCore,
            createdInSubviewArchivedInCore: createdInSubviewArchivedInCore, salt: salt)
    }

    /// The parties whose authority the root action needs: a create's
    /// signatories, an exercise's or a fetch's actors. For a root view the
    /// participant checks that the submitters (`act_as`) include them; for a
    /// subview, re-interpreting the parent view checks it, and a participant
    /// hosting one of them that did not receive the parent rejects the view.
    public var requiredAuthorizers: [Party] {
        switch action {
        case .create(let id, _): createdCore.first { $0.id == id }?.contract.signatories ?? []
        case .exercise(_, _, _, _, let actors, _, _), .fetch(_, let actors): actors
        }
    }
}

/// One view of a transaction, with the hashes that place it in the Merkle
/// tree. A view's hash commits to its common data, its participant data and
/// its subviews' hashes, so it commits to the whole subtree below it.
public struct View: Sendable, Equatable {
    /// Index among the root views, then among each view's subviews
    /// (`weft.v1.ViewTree.view_position`).
    public let position: [Int]
    public let commonData: ViewCommonData
    public let participantData: ViewParticipantData
    /// The hashes of the subviews, in order.
    public let subviewHashes: [Digest32]
    /// Purpose `VIEW_COMMON_DATA`.
    public let commonDataHash: Digest32
    /// Purpose `VIEW_PARTICIPANT_DATA`.
    public let participantDataHash: Digest32
    /// Purpose `TRANSACTION_VIEW`: the view's id in confirmation responses
    /// and the associated data of its encryption.
    public let hash: Digest32

    /// A view; its hashes are computed from the data given.
    public init(
        position: [Int], commonData: ViewCommonData, participantData: ViewParticipantData, subviewHashes: [Digest32]
    ) {
        self.position = position
        self.commonData = commonData
        self.participantData = participantData
        self.subviewHashes = subviewHashes
        commonDataHash = MerkleHash.of(commonData)
        participantDataHash = MerkleHash.of(participantData)
        hash = MerkleHash.view(commonDataHash, participantDataHash, subviewHashes)
    }

    /// The position of the parent view; nil for a root view.
    public var parentPosition: [Int]? { position.count > 1 ? Array(position.dropLast()) : nil }
}

// MARK: - Decomposition

/// The cut of a transaction into views, before salts and hashes: which
/// nodes each view holds, and its data. The submitter salts and hashes it;
/// a validator compares the cut of its re-interpretation with the views it
/// received.
struct Decomposition {
    struct Shape {
        /// Node index of the view's root action.
        var root: Int
        var position: [Int]
        var parent: Int?
        /// View indexes.
        var subviews: [Int] = []
        /// Node indexes of the core, in pre-order.
        var core: [Int] = []
    }

    let transaction: Transaction
    /// In pre-order of the view tree (which is the order of their root
    /// nodes in the transaction).
    private(set) var shapes: [Shape] = []
    private(set) var rootViews: [Int] = []
    /// The view whose core holds each node.
    private(set) var viewOfNode: [Int]
    /// One past the last node of each node's subtree (nodes are in
    /// pre-order, so a subtree is a contiguous range).
    private(set) var subtreeEnd: [Int]
    /// The creation seeds of the contracts the transaction creates, and of
    /// the inputs whose seed the lookup knew.
    private(set) var creationSeeds: [ContractID: NodeSeed] = [:]

    init(_ transaction: Transaction) {
        self.transaction = transaction
        viewOfNode = [Int](repeating: -1, count: transaction.nodes.count)
        subtreeEnd = [Int](repeating: 0, count: transaction.nodes.count)
        for index in transaction.nodes.indices.reversed() {
            if case .exercise(let exercise) = transaction.nodes[index].action, let last = exercise.children.last {
                subtreeEnd[index] = subtreeEnd[last]
            } else {
                subtreeEnd[index] = index + 1
            }
        }
        for input in transaction.inputContracts { creationSeeds[input.id] = input.creationSeed }
        for node in transaction.nodes {
            if case .create(let create) = node.action { creationSeeds[create.contractID] = node.seed }
        }
        for (number, root) in transaction.roots.enumerated() {
            rootViews.append(startView(root: root, position: [number], parent: nil))
        }
    }

    private mutating func startView(root: Int, position: [Int], parent: Int?) -> Int {
        let view = shapes.count
        shapes.append(Shape(root: root, position: position, parent: parent))
        var core: [Int] = []
        var subviewRoots: [Int] = []
        var stack = [root]
        while let node = stack.popLast() {
            core.append(node)
            viewOfNode[node] = view
            guard case .exercise(let exercise) = transaction.nodes[node].action else { continue }
            let informees = transaction.nodes[node].informees
            // Children pushed in reverse so that they pop in order: a
            // pre-order walk of the core.
            for child in exercise.children.reversed() {
                if transaction.nodes[child].informees == informees { stack.append(child) }
            }
            for child in exercise.children where transaction.nodes[child].informees != informees {
                subviewRoots.append(child)
            }
        }
        // Subview roots in pre-order of the transaction.
        subviewRoots.sort()
        shapes[view].core = core
        for (number, child) in subviewRoots.enumerated() {
            let subview = startView(root: child, position: position + [number], parent: view)
            shapes[view].subviews.append(subview)
        }
        return view
    }

    /// The common data of view `index` under `policy`, unsalted.
    func commonData(_ index: Int, policy: ConfirmationPolicy) throws(ViewError) -> ViewCommonData {
        let shape = shapes[index]
        let informees = transaction.nodes[shape.root].informees
        switch policy {
        case .signatory:
            var confirming: [Party] = []
            for node in shape.core { confirming = confirming.union(transaction.nodes[node].confirmingParties) }
            return ViewCommonData(
                informees: informees, confirmingParties: confirming, threshold: confirming.count, salt: .zero)
        case .vip(let vipHosted):
            let confirming = informees.intersection(vipHosted.normalized())
            guard !confirming.isEmpty else { throw .noVIPInformee(position: shape.position, informees: informees) }
            return ViewCommonData(informees: informees, confirmingParties: confirming, threshold: 1, salt: .zero)
        }
    }

    /// The participant data of view `index`, unsalted.
    func participantData(_ index: Int) -> ViewParticipantData {
        let shape = shapes[index]
        let nodes = transaction.nodes
        var inputs: [CoreInput] = []
        var inputIndex: [ContractID: Int] = [:]
        var created: [CreatedContract] = []
        var createdIndex: [ContractID: Int] = [:]
        var createdInSubview: Set<ContractID> = []
        var archivedFromSubviews: [ContractID] = []

        func use(_ id: ContractID, _ contract: ContractInstance) {
            guard inputIndex[id] == nil, createdIndex[id] == nil, !createdInSubview.contains(id) else { return }
            inputIndex[id] = inputs.count
            inputs.append(CoreInput(id: id, contract: contract, consumed: false, creationSeed: creationSeeds[id]))
        }

        func consume(_ id: ContractID) {
            if let at = inputIndex[id] {
                let input = inputs[at]
                inputs[at] = CoreInput(
                    id: id, contract: input.contract, consumed: true, creationSeed: input.creationSeed)
            } else if let at = createdIndex[id] {
                let output = created[at]
                created[at] = CreatedContract(
                    id: id, contract: output.contract, consumedInCore: true, creationSeed: output.creationSeed)
            } else if createdInSubview.contains(id) {
                archivedFromSubviews.append(id)
            }
        }

        for node in shape.root..<subtreeEnd[shape.root] {
            let inCore = viewOfNode[node] == index
            switch nodes[node].action {
            case .create(let create):
                if inCore {
                    createdIndex[create.contractID] = created.count
                    created.append(
                        CreatedContract(
                            id: create.contractID, contract: create.instance, consumedInCore: false,
                            creationSeed: nodes[node].seed!))
                } else {
                    createdInSubview.insert(create.contractID)
                }
            case .exercise(let exercise) where inCore:
                use(exercise.contractID, exercise.contract)
                if exercise.consuming { consume(exercise.contractID) }
            case .fetch(let fetch) where inCore:
                use(fetch.contractID, fetch.contract)
            case .exercise, .fetch:
                break
            }
        }

        let root = nodes[shape.root]
        let action: ActionDescription
        switch root.action {
        case .create(let create):
            action = .create(contract: create.contractID, seed: root.seed!)
        case .exercise(let exercise):
            action = .exercise(
                contract: exercise.contractID, template: exercise.contract.template, choice: exercise.choice,
                argument: exercise.argument, actors: exercise.actingParties, seed: root.seed!,
                consuming: exercise.consuming)
        case .fetch(let fetch):
            action = .fetch(contract: fetch.contractID, actors: fetch.actingParties)
        }
        return ViewParticipantData(
            action: action, coreInputs: inputs, createdCore: created,
            createdInSubviewArchivedInCore: archivedFromSubviews, salt: .zero)
    }
}

extension Digest32 {
    static let zero = Digest32([UInt8](repeating: 0, count: 32))!
}
