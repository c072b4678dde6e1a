/// The result of interpreting commands: a tree of actions, Daml's ledger
/// model. Nodes are stored flat in pre-order (a parent before its children,
/// children in execution order), so node `i`'s index is its id and walking
/// the tree for views needs no recursion over pointers.
public struct Transaction: Sendable, Equatable {
    /// All nodes, in pre-order.
    public let nodes: [Node]
    /// Indexes of the root nodes (one per command), in command order.
    public let roots: [Int]
    /// The contracts the transaction read from the contract lookup (not
    /// those it created), in the order it first used them. A validator
    /// needs them to re-interpret; views carry them as inputs.
    public let inputContracts: [InputContract]

    /// The position of node `index`: child indexes from its root command
    /// down (`[1, 0]` is the first child of the second command).
    public func position(of index: Int) -> [Int] {
        var path: [Int] = []
        var current = index
        while true {
            path.append(nodes[current].childIndex)
            guard let parent = nodes[current].parent else { break }
            current = parent
        }
        return path.reversed()
    }

    /// Contracts the transaction creates, with whether it also archives
    /// them again (a view's `created_core` / `consumed_in_core`).
    public var createdContracts: [(id: ContractID, contract: ContractInstance, consumed: Bool)] {
        let consumed = Set(consumedContracts)
        return nodes.compactMap { node in
            guard case .create(let create) = node.action else { return nil }
            return (create.contractID, create.instance, consumed.contains(create.contractID))
        }
    }

    /// Contracts archived by consuming exercises, in execution order.
    public var consumedContracts: [ContractID] {
        nodes.compactMap { node in
            guard case .exercise(let exercise) = node.action, exercise.consuming else { return nil }
            return exercise.contractID
        }
    }
}

/// A contract read from the lookup.
public struct InputContract: Sendable, Equatable {
    public let id: ContractID
    public let contract: ContractInstance
    /// The seed of the create that made it, if the lookup knows it.
    public let creationSeed: NodeSeed?
}

/// One action of a transaction, with the parties Daml's ledger model
/// derives from it.
public struct Node: Sendable, Equatable {
    public internal(set) var action: Action
    /// Seed of a create or exercise (children derive theirs from it); nil
    /// for a fetch.
    public let seed: NodeSeed?
    /// The parent exercise's node index; nil for a root.
    public let parent: Int?
    /// Index among the parent's children (or among the roots).
    public let childIndex: Int
    /// Parties told of this action: create — its stakeholders; consuming
    /// exercise — stakeholders, actors and choice observers; non-consuming
    /// exercise — signatories, actors and choice observers; fetch —
    /// signatories and actors. Sorted.
    public internal(set) var informees: [Party]
    /// Informees whose approval the action needs (Canton's signatory
    /// confirmation policy): the contract's signatories and the actors.
    /// Sorted.
    public internal(set) var confirmingParties: [Party]
}

/// What a node does.
public enum Action: Sendable, Equatable {
    case create(Create)
    case exercise(Exercise)
    case fetch(Fetch)
}

/// A contract's data as the ledger stores it.
public struct ContractInstance: Sendable, Equatable {
    public let template: TemplateID
    /// The template's record (`Value.record`, fields in declaration order).
    public let argument: Value
    /// As computed at creation; sorted.
    public let signatories: [Party]
    /// Stakeholders that are not signatories, as computed at creation;
    /// sorted.
    public let observers: [Party]

    public init(template: TemplateID, argument: Value, signatories: [Party], observers: [Party]) {
        self.template = template
        self.argument = argument
        self.signatories = signatories
        self.observers = observers
    }

    /// Signatories and observers, sorted.
    public var stakeholders: [Party] { signatories.union(observers) }
}

/// A create action.
public struct Create: Sendable, Equatable {
    public let contractID: ContractID
    public let instance: ContractInstance
}

/// An exercise of a choice on a contract.
public struct Exercise: Sendable, Equatable {
    public let contractID: ContractID
    /// The exercised contract, as the transaction saw it.
    public let contract: ContractInstance
    public let choice: String
    /// The choice's argument record.
    public let argument: Value
    /// The controllers, evaluated; sorted.
    public let actingParties: [Party]
    public let consuming: Bool
    /// Sorted.
    public let choiceObservers: [Party]
    /// Node indexes of the actions the choice body performed, in order.
    public internal(set) var children: [Int]
    /// What the choice returned.
    public internal(set) var result: Value
}

/// A fetch of a contract inside a choice.
public struct Fetch: Sendable, Equatable {
    public let contractID: ContractID
    public let contract: ContractInstance
    /// The authorizers that are stakeholders of the contract; sorted.
    public let actingParties: [Party]
}
