public import WeftContracts
public import WeftCrypto
import WeftWire

/// The parties a contract's stakeholders are, as one key: the sorted party ids joined with
/// `,`. Contracts of one group are stored by exactly the same participants (those hosting any
/// of its parties), so the group is the unit two participants' shared state is made of.
public struct StakeholderGroup: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The sorted party ids.
    public let parties: [String]

    public init(_ parties: some Sequence<String>) { self.parties = Set(parties).sorted() }

    /// A group named by its `description` (as the admin API and narrowing messages carry it).
    public init(text: String) { self.init(text.split(separator: ",").map(String.init)) }

    public var description: String { parties.joined(separator: ",") }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.description < rhs.description }
}

/// The running state of ACS commitments (docs/participant.md, "ACS commitments"): one
/// `LtHash16` per stakeholder group over the active contracts of that group, updated as
/// contracts are created and archived, so that a period's commitments cost one hash per change
/// plus one sum per shared group — never a pass over the active contract set.
///
/// A pure value: the participant actor owns it and feeds it its commits; nothing here does
/// I/O or reads a clock.
public struct CommitmentTracker: Sendable {
    /// Each stakeholder group's hash of its active contracts.
    public private(set) var groups: [StakeholderGroup: LtHash16] = [:]
    /// Each active contract's group and element hash, to remove it again on archive.
    public private(set) var contracts: [ContractID: (group: StakeholderGroup, element: [UInt8])] = [:]

    public init() {}

    /// The element hash of a contract: SHA-256 for purpose `ACS_COMMITMENT_CONTRACT` over its
    /// id and its stored `weft.v1.ContractInstance` bytes, so that two participants agree on it
    /// exactly when they store the same data for the same id.
    public static func element(id: ContractID, stored: [UInt8]) -> [UInt8] {
        var hasher = PurposeHasher(.acsCommitmentContract)
        hasher.append(id.description)
        hasher.append(stored)
        return hasher.finalize().digest
    }

    /// Adds an active contract (created, or loaded at start). Adding one already there
    /// changes nothing.
    public mutating func add(id: ContractID, stakeholders: [String], stored: [UInt8]) {
        guard contracts[id] == nil else { return }
        let group = StakeholderGroup(stakeholders)
        let element = Self.element(id: id, stored: stored)
        contracts[id] = (group, element)
        groups[group, default: LtHash16()].add(element: element)
    }

    /// Removes an archived contract; one not tracked changes nothing.
    public mutating func remove(id: ContractID) {
        guard let (group, element) = contracts.removeValue(forKey: id) else { return }
        groups[group]?.remove(element: element)
        if groups[group]?.isEmpty == true { groups[group] = nil }
    }

    /// The commitment for each counter-participant that shares at least one group with this
    /// one: the digest of the sum of the shared groups' hashes. `hosts(group)` names the
    /// participants hosting any party of the group (this participant among them or not).
    public func commitments(
        me: String, hosts: (StakeholderGroup) -> Set<String>
    ) -> [String: [UInt8]] {
        var sums: [String: LtHash16] = [:]
        for (group, hash) in groups {
            // A group is shared only while this participant hosts one of its stakeholders, as
            // its counter-participants see it in the same topology: it may hold contracts of
            // parties it does not host (yet) — after a domain migration, until its parties are
            // hosted on the new domain, it did send commitments its peers could only refuse.
            let hosting = hosts(group)
            guard hosting.contains(me) else { continue }
            for participant in hosting where participant != me {
                sums[participant, default: LtHash16()].add(hash)
            }
        }
        return sums.compactMapValues { $0.isEmpty ? nil : $0.digest }
    }

    /// The groups shared with `counterParticipant` (restricted to `only` unless empty), each
    /// with its digest and its contracts' element hashes: what narrowing compares.
    public func shared(
        with counterParticipant: String, me: String, only: Set<StakeholderGroup>, hosts: (StakeholderGroup) -> Set<String>
    ) -> [StakeholderGroup: (digest: [UInt8], contracts: [ContractID: [UInt8]])] {
        var result: [StakeholderGroup: (digest: [UInt8], contracts: [ContractID: [UInt8]])] = [:]
        for (group, hash) in groups where only.isEmpty || only.contains(group) {
            let hosting = hosts(group)
            guard hosting.contains(me), hosting.contains(counterParticipant) else { continue }
            result[group] = (hash.digest, [:])
        }
        for (id, entry) in contracts where result[entry.group] != nil {
            result[entry.group]!.contracts[id] = entry.element
        }
        return result
    }
}
