/// 32 bytes held as four words, so ids and seeds compare, hash and copy
/// without a heap allocation.
public struct Digest32: Hashable, Comparable, Sendable, CustomStringConvertible {
    var w0: UInt64
    var w1: UInt64
    var w2: UInt64
    var w3: UInt64

    /// `bytes` must be exactly 32 bytes (big-endian words).
    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        func word(_ at: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in at..<(at + 8) { value = value << 8 | UInt64(bytes[index]) }
            return value
        }
        w0 = word(0)
        w1 = word(8)
        w2 = word(16)
        w3 = word(24)
    }

    /// Parses 64 lower- or upper-case hex digits.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == 64 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        var index = 0
        while index < 64 {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.init(bytes)
    }

    /// The 32 bytes, big-endian.
    public var bytes: [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(32)
        for word in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) {
                result.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
        return result
    }

    /// Lower-case hex.
    public var description: String { hexString(bytes) }

    public static func < (lhs: Digest32, rhs: Digest32) -> Bool {
        (lhs.w0, lhs.w1, lhs.w2, lhs.w3) < (rhs.w0, rhs.w1, rhs.w2, rhs.w3)
    }
}

private func hexValue(_ digit: UInt8) -> UInt8? {
    switch digit {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
    default: nil
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var result = [UInt8]()
    result.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        result.append(digits[Int(byte >> 4)])
        result.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: result, as: UTF8.self)
}

/// A contract's id: a hash of the node seed of the create that made it and
/// of the contract itself (docs/contracts.md, "Contract ids").
public struct ContractID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let digest: Digest32

    public init(_ digest: Digest32) { self.digest = digest }

    /// Parses the text form: 64 hex digits.
    public init?(hex: String) {
        guard let digest = Digest32(hex: hex) else { return nil }
        self.digest = digest
    }

    /// Lower-case hex, as in `weft.v1.Value.contract_id`.
    public var description: String { digest.description }

    public static func < (lhs: ContractID, rhs: ContractID) -> Bool { lhs.digest < rhs.digest }

    /// The id the create with node seed `seed` gives `contract`
    /// (docs/contracts.md §6).
    public init(seed: NodeSeed, contract: ContractInstance) { self = Derivation.contractID(seed, contract) }

    /// Whether this id is the one the create with node seed `seed` gives
    /// `contract`: proof that contract data shown for the id is the data it
    /// was created with.
    public func authenticates(_ contract: ContractInstance, seed: NodeSeed) -> Bool {
        Derivation.contractID(seed, contract) == self
    }
}

/// A package's id: the purpose-tagged SHA-256 of its canonical form, so the
/// same templates always have the same id however the file was formatted.
public struct PackageID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let digest: Digest32

    public init(_ digest: Digest32) { self.digest = digest }

    /// Parses the text form: 64 hex digits.
    public init?(hex: String) {
        guard let digest = Digest32(hex: hex) else { return nil }
        self.digest = digest
    }

    /// Lower-case hex, as in `weft.v1.TemplateId.package_id`.
    public var description: String { digest.description }

    public static func < (lhs: PackageID, rhs: PackageID) -> Bool { lhs.digest < rhs.digest }
}

/// Names a template: the package that defines it and its name there.
public struct TemplateID: Hashable, Sendable, CustomStringConvertible {
    public let package: PackageID
    public let name: String

    public init(package: PackageID, name: String) {
        self.package = package
        self.name = name
    }

    /// `Name@` and the first 8 hex digits of the package id.
    public var description: String { name + "@" + String(package.description.prefix(8)) }
}

/// The secret a submitter draws for each transaction; every node seed and
/// so every contract id of the transaction derives from it.
public struct TransactionSeed: Hashable, Sendable, CustomStringConvertible {
    public let digest: Digest32

    public init(_ digest: Digest32) { self.digest = digest }

    /// `bytes` must be exactly 32 bytes.
    public init?(_ bytes: [UInt8]) {
        guard let digest = Digest32(bytes) else { return nil }
        self.digest = digest
    }

    public var description: String { digest.description }
}

/// The seed of one create or exercise node, derived from its parent's seed
/// (or the transaction seed) and its index there. A view carries the seed of
/// its root action, so a validator that sees only that view can re-derive
/// the same contract ids.
public struct NodeSeed: Hashable, Sendable, CustomStringConvertible {
    public let digest: Digest32

    public init(_ digest: Digest32) { self.digest = digest }

    public var description: String { digest.description }
}

/// A party: an ASCII id such as `alice::1220ab…` (or a short test name such
/// as `Alice`).
///
/// Parties are restricted to ASCII letters, digits and `: _ - .` so that
/// equality and order are plain byte comparisons on every platform
/// (Swift's `String` equality is Unicode canonical equivalence).
public struct Party: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let id: String

    /// Longest party id accepted, in bytes.
    public static let idBytesMax = 255

    /// Checks `id`; throws `ContractError.invalidParty` saying what is wrong.
    public init(_ id: String) throws(ContractError) {
        let bytes = id.utf8
        guard !bytes.isEmpty else { throw .invalidParty(id: id, reason: "a party id is not empty") }
        guard bytes.count <= Party.idBytesMax else {
            throw .invalidParty(
                id: String(id.prefix(40)) + "…", reason: "a party id has at most \(Party.idBytesMax) bytes")
        }
        for byte in bytes where !Party.allowed(byte) {
            throw .invalidParty(id: id, reason: "a party id has only ASCII letters, digits and ':', '_', '-', '.'")
        }
        self.id = id
    }

    init(unchecked id: String) { self.id = id }

    static func allowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: ":"), UInt8(ascii: "_"), UInt8(ascii: "-"),
            UInt8(ascii: "."):
            true
        default: false
        }
    }

    public var description: String { id }

    public static func < (lhs: Party, rhs: Party) -> Bool { lhs.id.utf8.lexicographicallyPrecedes(rhs.id.utf8) }
}
