public import WeftWire

extension ContractInstance {
    /// The contract as `weft.v1.ContractInstance`, with record labels from `packages` and the
    /// creation seed as its salt: how a participant stores a contract and hands it to its
    /// applications.
    public func wire(id: ContractID, packages: [Package], creationSeed: NodeSeed?) -> Weft.V1.ContractInstance {
        var index: [PackageID: Package] = [:]
        for package in packages { index[package.id] = package }
        return wire(id, RecordLabels(packages: index), salt: creationSeed)
    }

    /// A contract read back from `weft.v1.ContractInstance`: its id, data and creation seed
    /// (nil when the salt is empty). Throws `ViewError.malformed` for data that does not decode.
    public static func fromWire(_ wire: Weft.V1.ContractInstance) throws(ViewError) -> (
        id: ContractID, contract: ContractInstance, creationSeed: NodeSeed?
    ) {
        let (id, contract, seed) = try decode(wire)
        return (id, contract, seed)
    }
}
