public import WeftWire

/// `name::fingerprint`: a participant (`participant1::1220…`), a party
/// (`alice::1220…`, in its participant's namespace) or a domain.
public struct UniqueIdentifier: Hashable, Sendable, CustomStringConvertible {
    /// The display name: 1 to 100 of `A-Z a-z 0-9 _ - .`.
    public let name: String
    /// The namespace: the fingerprint of the owner's namespace key.
    public let namespace: Fingerprint

    public static let nameLengthMax = 100

    public init(name: String, namespace: Fingerprint) throws(CryptoError) {
        try Self.checkName(name, in: name + "::" + namespace.description)
        self.name = name
        self.namespace = namespace
    }

    /// Parses `name::1220…`, saying what is wrong.
    public init(parsing text: String) throws(CryptoError) {
        let parts = Self.split(text)
        guard parts.count >= 2 else {
            throw .invalidIdentifier("'\(text.prefix(120))' has no '::'; expected name::fingerprint, e.g. participant1::1220…")
        }
        let name = parts[0]
        let rest = parts[1]
        guard parts.count == 2 else {
            throw .invalidIdentifier("'\(text.prefix(120))' has more than one '::'; a member id such as PAR::… is a MemberID")
        }
        try Self.checkName(name, in: text)
        let namespace: Fingerprint
        do throws(CryptoError) {
            namespace = try Fingerprint(parsing: rest)
        } catch {
            throw .invalidIdentifier("in '\(text.prefix(120))': \(error)")
        }
        self.name = name
        self.namespace = namespace
    }

    /// `text` split at each `::`.
    static func split(_ text: String) -> [String] {
        var parts: [String] = []
        var current: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: ":"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: ":") {
                parts.append(String(decoding: current, as: UTF8.self))
                current = []
                index += 2
            } else {
                current.append(bytes[index])
                index += 1
            }
        }
        parts.append(String(decoding: current, as: UTF8.self))
        return parts
    }

    private static func checkName(_ name: String, in text: String) throws(CryptoError) {
        guard !name.isEmpty else { throw .invalidIdentifier("'\(text.prefix(120))' has an empty name before '::'") }
        guard name.utf8.count <= nameLengthMax else {
            throw .invalidIdentifier("the name in '\(text.prefix(120))' has \(name.utf8.count) characters; at most \(nameLengthMax) are allowed")
        }
        for (offset, byte) in name.utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                continue
            default:
                let character = name.utf8.count == name.count ? String(Array(name)[offset]) : "a non-ASCII character"
                throw .invalidIdentifier("the name in '\(text.prefix(120))' has \(character) at position \(offset + 1); allowed are A-Z a-z 0-9 _ - .")
            }
        }
    }

    public var description: String { name + "::" + namespace.description }
}

/// A domain member: its role and its unique identifier, written
/// `PAR::participant1::1220…`, `MED::…`, `SEQ::…` or `DOM::…`.
public struct MemberID: Hashable, Sendable, CustomStringConvertible {
    public let role: Weft.V1.MemberRole
    public let identifier: UniqueIdentifier

    public init(role: Weft.V1.MemberRole, identifier: UniqueIdentifier) {
        precondition(Self.prefixes[role] != nil, "a member has a role")
        self.role = role
        self.identifier = identifier
    }

    static let prefixes: [Weft.V1.MemberRole: String] = [
        .participant: "PAR", .mediator: "MED", .sequencer: "SEQ", .domainManager: "DOM",
    ]

    /// Parses `PAR::name::1220…` and the like.
    public init(parsing text: String) throws(CryptoError) {
        let code = String(text.prefix(3))
        guard text.dropFirst(3).hasPrefix("::"), let role = Self.prefixes.first(where: { $0.value == code })?.key else {
            throw .invalidIdentifier("'\(text.prefix(120))' does not start with PAR::, MED::, SEQ:: or DOM::")
        }
        self.role = role
        identifier = try UniqueIdentifier(parsing: String(text.dropFirst(5)))
    }

    public var description: String { Self.prefixes[role]! + "::" + identifier.description }
}
