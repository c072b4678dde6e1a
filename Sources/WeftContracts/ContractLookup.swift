/// Where the interpreter finds the contracts a command uses: a participant's
/// active contract set, or the inputs a view carries.
public protocol ContractLookup {
    /// The active contract `id`, or nil when it is unknown or archived.
    func contract(_ id: ContractID) -> ContractInstance?

    /// The seed of the create node that made contract `id`, when known. With
    /// it, anyone can check that contract data belongs to the id
    /// (`ContractID.authenticates(_:seed:)`), so views carry it with each
    /// input contract. Nil by default.
    func creationSeed(of id: ContractID) -> NodeSeed?
}

extension ContractLookup {
    public func creationSeed(of id: ContractID) -> NodeSeed? { nil }
}

/// Active contracts in memory: for tests, tools and simulations.
public struct ContractStore: ContractLookup, Sendable {
    public private(set) var active: [ContractID: ContractInstance] = [:]
    /// Creation seeds of the active contracts that have one.
    public private(set) var seeds: [ContractID: NodeSeed] = [:]

    public init() {}

    public func contract(_ id: ContractID) -> ContractInstance? { active[id] }

    public func creationSeed(of id: ContractID) -> NodeSeed? { seeds[id] }

    public mutating func insert(_ id: ContractID, _ contract: ContractInstance, seed: NodeSeed? = nil) {
        active[id] = contract
        seeds[id] = seed
    }

    /// Applies a committed transaction: archives what it consumed, adds what
    /// it created and did not consume, with their creation seeds.
    public mutating func commit(_ transaction: Transaction) {
        for node in transaction.nodes {
            guard case .create(let create) = node.action else { continue }
            active[create.contractID] = create.instance
            seeds[create.contractID] = node.seed
        }
        for id in transaction.consumedContracts {
            active[id] = nil
            seeds[id] = nil
        }
    }
}
