import Testing
import WeftContracts
import WeftCrypto
@testable import WeftParticipant

/// The running state of ACS commitments without a domain: which counter-participant gets a
/// commitment over which stakeholder groups, and that two participants agree exactly when
/// they store the same shared contracts.
struct CommitmentTrackerTests {
    /// Group {alice, bank}: participants p1 (alice) and p2 (bank); group {bob, bank}: p2 and p3
    /// (bob); group {carol}: p1 only.
    static let hosting: [String: Set<String>] = ["alice": ["p1"], "bank": ["p2"], "bob": ["p3"], "carol": ["p1"]]
    static func hosts(_ group: StakeholderGroup) -> Set<String> {
        group.parties.reduce(into: Set<String>()) { $0.formUnion(hosting[$1] ?? []) }
    }

    static func id(_ number: UInt8) -> ContractID { ContractID(Digest32([UInt8](repeating: number, count: 32))!) }

    @Test func eachCounterParticipantGetsTheGroupsItShares() {
        var p2 = CommitmentTracker()
        p2.add(id: Self.id(1), stakeholders: ["bank", "alice"], stored: [1])
        p2.add(id: Self.id(2), stakeholders: ["bank", "bob"], stored: [2])
        var p1 = CommitmentTracker()
        p1.add(id: Self.id(1), stakeholders: ["alice", "bank"], stored: [1])
        p1.add(id: Self.id(3), stakeholders: ["carol"], stored: [3])
        var p3 = CommitmentTracker()
        p3.add(id: Self.id(2), stakeholders: ["bob", "bank"], stored: [2])

        let fromP2 = p2.commitments(me: "p2", hosts: Self.hosts)
        #expect(Set(fromP2.keys) == ["p1", "p3"])
        // p1 and p2 agree on {alice, bank}; carol's contract (p1 only) is in no commitment.
        #expect(p1.commitments(me: "p1", hosts: Self.hosts) == ["p2": fromP2["p1"]!])
        #expect(p3.commitments(me: "p3", hosts: Self.hosts) == ["p2": fromP2["p3"]!])
        #expect(fromP2["p1"] != fromP2["p3"])
    }

    @Test func oneChangedContractChangesTheCommitmentAndNarrowingFindsIt() {
        var honest = CommitmentTracker()
        var corrupted = CommitmentTracker()
        for number in UInt8(1)...20 {
            honest.add(id: Self.id(number), stakeholders: ["alice", "bank"], stored: [number])
            corrupted.add(id: Self.id(number), stakeholders: ["alice", "bank"], stored: [number == 7 ? 99 : number])
        }
        #expect(honest.commitments(me: "p1", hosts: Self.hosts) != corrupted.commitments(me: "p2", hosts: Self.hosts))
        let mine = honest.shared(with: "p2", me: "p1", only: [], hosts: Self.hosts)
        let theirs = corrupted.shared(with: "p1", me: "p2", only: [], hosts: Self.hosts)
        let group = StakeholderGroup(["bank", "alice"])
        #expect(Set(mine.keys) == [group] && Set(theirs.keys) == [group])
        let differing = mine[group]!.contracts.filter { theirs[group]!.contracts[$0.key] != $0.value }.map(\.key)
        #expect(differing == [Self.id(7)])
        #expect(honest.shared(with: "p2", me: "p1", only: [StakeholderGroup(["carol"])], hosts: Self.hosts).isEmpty)
    }

    /// A participant holding contracts of parties it does not host (after a domain migration,
    /// before its parties are hosted on the new domain) shares nothing: its peers, by the same
    /// topology, count it out, so a commitment from it could only be a mismatch.
    @Test func contractsOfPartiesNotHostedHereAreSharedWithNobody() {
        var p2 = CommitmentTracker()
        p2.add(id: Self.id(1), stakeholders: ["alice", "bank"], stored: [1])
        let bankNotHosted: (StakeholderGroup) -> Set<String> = { group in group.parties.contains("alice") ? ["p1"] : [] }
        #expect(p2.commitments(me: "p2", hosts: bankNotHosted).isEmpty)
        #expect(p2.shared(with: "p1", me: "p2", only: [], hosts: bankNotHosted).isEmpty)
        #expect(p2.commitments(me: "p2", hosts: Self.hosts).keys.sorted() == ["p1"])
        #expect(p2.shared(with: "p1", me: "p2", only: [], hosts: Self.hosts).count == 1)
    }

    @Test func archivingUndoesCreatingAndEmptyGroupsSendNothing() {
        var tracker = CommitmentTracker()
        tracker.add(id: Self.id(1), stakeholders: ["alice", "bank"], stored: [1])
        let one = tracker.commitments(me: "p1", hosts: Self.hosts)
        tracker.add(id: Self.id(2), stakeholders: ["alice", "bank"], stored: [2])
        tracker.add(id: Self.id(2), stakeholders: ["alice", "bank"], stored: [2])  // twice: once
        tracker.remove(id: Self.id(2))
        #expect(tracker.commitments(me: "p1", hosts: Self.hosts) == one)
        tracker.remove(id: Self.id(1))
        tracker.remove(id: Self.id(1))  // not tracked any more: nothing happens
        #expect(tracker.commitments(me: "p1", hosts: Self.hosts).isEmpty)
        #expect(tracker.groups.isEmpty && tracker.contracts.isEmpty)
    }

    @Test func periodsEndAtIntervalBoundariesStrictlyBeforeAnEvent() {
        #expect(ParticipantNode.boundary(before: 5_000_001, interval: 1_000_000) == 5_000_000)
        #expect(ParticipantNode.boundary(before: 5_000_000, interval: 1_000_000) == 4_000_000)
        #expect(ParticipantNode.boundary(before: 5_999_999, interval: 1_000_000) == 5_000_000)
        #expect(StakeholderGroup(text: "bank,alice,bank").description == "alice,bank")
    }
}
