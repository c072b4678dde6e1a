/// Where the interpreter finds the contracts a command uses: a participant's
/// active contract set, or the inputs a view carries.
public protocol ContractLookup {
    /// The active contract `id`, or nil when it is unknown or archived.
    func contract(_ id: ContractID) -> ContractInstance?
}

/// Active contracts in memory: for tests, tools and simulations.
public struct ContractStore: ContractLookup, Sendable {
    public private(set) var active: [ContractID: ContractInstance] = [:]

    public init() {}

    public func contract(_ id: ContractID) -> ContractInstance? { active[id] }

    public mutating func insert(_ id: ContractID, _ contract: ContractInstance) { active[id] = contract }

    /// Applies a committed transaction: archives what it consumed, adds what
    /// it created and did not consume.
    public mutating func commit(_ transaction: Transaction) {
        for (id, contract, consumed) in transaction.createdContracts where !consumed { active[id] = contract }
        for id in transaction.consumedContracts { active[id] = nil }
    }
}
