internal import WeftCrypto
internal import WeftWire

/// The canonical byte encoding of values, contracts and transaction trees
/// (docs/contracts.md §8): big-endian fixed-width integers, length-prefixed
/// strings and lists, a tag byte before each value and node. Equal trees
/// encode to equal bytes and different trees to different bytes, so these
/// bytes are what determinism is checked on and what hashes commit to.
struct CanonicalWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func uint32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    mutating func uint64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    mutating func int64(_ value: Int64) { uint64(UInt64(bitPattern: value)) }

    mutating func count(_ value: Int) { uint32(UInt32(value)) }

    /// Bytes as they are (the caller writes their length where it is not fixed).
    mutating func raw(_ data: [UInt8]) { bytes.append(contentsOf: data) }

    mutating func digest(_ digest: Digest32) {
        uint64(digest.w0)
        uint64(digest.w1)
        uint64(digest.w2)
        uint64(digest.w3)
    }

    mutating func string(_ text: String) {
        count(text.utf8.count)
        bytes.append(contentsOf: text.utf8)
    }

    mutating func parties(_ parties: [Party]) {
        count(parties.count)
        for party in parties { string(party.id) }
    }

    mutating func value(_ value: Value) {
        switch value {
        case .unit: byte(0)
        case .bool(let flag):
            byte(1)
            byte(flag ? 1 : 0)
        case .int(let number):
            byte(2)
            uint64(UInt64(bitPattern: number))
        case .decimal(let number):
            byte(3)
            let units = UInt128(bitPattern: number.units)
            uint64(UInt64(truncatingIfNeeded: units >> 64))
            uint64(UInt64(truncatingIfNeeded: units))
        case .text(let text):
            byte(4)
            string(text)
        case .party(let party):
            byte(5)
            string(party.id)
        case .time(let microseconds):
            byte(6)
            uint64(UInt64(bitPattern: microseconds))
        case .contractID(let id):
            byte(7)
            digest(id.digest)
        case .list(let elements):
            byte(8)
            count(elements.count)
            for element in elements { self.value(element) }
        case .record(let fields):
            byte(9)
            count(fields.count)
            for field in fields { self.value(field) }
        }
    }

    mutating func templateID(_ id: TemplateID) {
        digest(id.package.digest)
        string(id.name)
    }

    mutating func contract(_ contract: ContractInstance) {
        templateID(contract.template)
        value(contract.argument)
        parties(contract.signatories)
        parties(contract.observers)
    }

    /// Node `index` of `transaction` and, for an exercise, its subtree.
    mutating func node(_ index: Int, of transaction: Transaction, withChildren: Bool = true) {
        let node = transaction.nodes[index]
        switch node.action {
        case .create(let create):
            byte(1)
            digest(node.seed!.digest)
            digest(create.contractID.digest)
            contract(create.instance)
        case .exercise(let exercise):
            byte(2)
            digest(node.seed!.digest)
            digest(exercise.contractID.digest)
            contract(exercise.contract)
            string(exercise.choice)
            value(exercise.argument)
            parties(exercise.actingParties)
            byte(exercise.consuming ? 1 : 0)
            parties(exercise.choiceObservers)
            value(exercise.result)
            if withChildren {
                count(exercise.children.count)
                for child in exercise.children { self.node(child, of: transaction) }
            }
        case .fetch(let fetch):
            byte(3)
            digest(fetch.contractID.digest)
            contract(fetch.contract)
            parties(fetch.actingParties)
        }
    }
}

extension Transaction {
    /// Format version of `canonicalBytes`.
    public static let canonicalVersion: UInt32 = 1

    /// The whole tree, canonically encoded: the version, the number of
    /// roots, then each root with its subtree. Informees and confirming
    /// parties are not encoded: they follow from the nodes.
    public var canonicalBytes: [UInt8] {
        var writer = CanonicalWriter(capacity: 256 * nodes.count)
        writer.uint32(Self.canonicalVersion)
        writer.count(roots.count)
        for root in roots { writer.node(root, of: self) }
        return writer.bytes
    }

    /// Node `index` alone (an exercise without its children): what a view's
    /// action description commits to.
    public func canonicalBytes(ofNode index: Int) -> [UInt8] {
        var writer = CanonicalWriter()
        writer.node(index, of: self, withChildren: false)
        return writer.bytes
    }
}

extension Value {
    /// The value, canonically encoded.
    public var canonicalBytes: [UInt8] {
        var writer = CanonicalWriter()
        writer.value(self)
        return writer.bytes
    }
}

/// How node seeds and contract ids derive from the transaction seed
/// (docs/contracts.md §6). All use purpose `CONTRACT_ID`, with a label
/// field that keeps the three derivations apart.
enum Derivation {
    private static let rootLabel = Array("weft/root-node-seed/v1".utf8)
    private static let childLabel = Array("weft/child-node-seed/v1".utf8)
    private static let contractLabel = Array("weft/contract-id/v1".utf8)

    static func rootSeed(_ seed: TransactionSeed, _ index: Int) -> NodeSeed {
        NodeSeed(derive(rootLabel, seed.digest, index))
    }

    static func childSeed(_ seed: NodeSeed, _ index: Int) -> NodeSeed {
        NodeSeed(derive(childLabel, seed.digest, index))
    }

    private static func derive(_ label: [UInt8], _ seed: Digest32, _ index: Int) -> Digest32 {
        var hasher = PurposeHasher(.contractID)
        hasher.append(label)
        hasher.append(seed.bytes)
        hasher.append(UInt64(index))
        return Digest32(hasher.finalize().digest)!
    }

    static func contractID(_ seed: NodeSeed, _ contract: ContractInstance) -> ContractID {
        var writer = CanonicalWriter()
        writer.contract(contract)
        var hasher = PurposeHasher(.contractID)
        hasher.append(contractLabel)
        hasher.append(seed.digest.bytes)
        hasher.append(writer.bytes)
        return ContractID(Digest32(hasher.finalize().digest)!)
    }
}
