import Foundation
import WeftContracts
import WeftCrypto
@_spi(Benchmarks) import WeftParticipant
import WeftStore
import WeftTestSupport

/// `weft-bench commitments`: what one ACS commitment period costs a participant when 1,000
/// contracts changed in it, with 10,000 and with 1,000,000 active contracts. The target is
/// that the cost follows the changes, not the ACS: ratio ≤ 1.5 between the two sizes.
///
/// A period here is the participant's real path: the 1,000 changes applied to the running
/// state (500 archives, 500 creates: one SHA-256 and one SHAKE128 expansion each), the
/// commitment per counter-participant summed over the shared stakeholder groups, and the
/// period recorded with its commitments in PostgreSQL (`CommitmentStore.recordPeriod`, on a
/// throw-away server unless `--url`) — the statements a period runs; they touch only the
/// commitment tables, never the contracts. The baseline, measured in the same run, is what
/// the incremental state avoids: hashing the whole ACS again (also what a restart costs, as
/// the running state is rebuilt from the stored contracts then).
///
///   swift run -c release weft-bench commitments [--rounds N] [--groups G] [--counter-participants C] [--url postgres://…]
enum CommitmentBenchmark {
    static func run(_ arguments: [String]) async throws {
        func value(_ name: String, _ fallback: Int) -> Int {
            guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count,
                let value = Int(arguments[index + 1]), value > 0
            else { return fallback }
            return value
        }
        let rounds = value("--rounds", 7)
        let groupCount = value("--groups", 100)
        let counterCount = value("--counter-participants", 10)
        var fixture: PostgresFixture?
        let url: String
        if let index = arguments.firstIndex(of: "--url"), index + 1 < arguments.count {
            url = arguments[index + 1]
        } else {
            let started = try await PostgresFixture.startThrowAwayServer()
            fixture = started
            url = started.url
        }
        do {
            try await measure(url: url, rounds: rounds, groupCount: groupCount, counterCount: counterCount)
            try await fixture?.stop()
        } catch {
            try? await fixture?.stop()
            throw error
        }
    }

    static func measure(url: String, rounds: Int, groupCount: Int, counterCount: Int) async throws {
        let database = PostgresDatabase(url: url, maximumConnections: 2)
        let me = "participant0::1220" + String(repeating: "0", count: 64)
        try await ParticipantStore(database: database, participant: try UniqueIdentifier(parsing: me)).migrate()

        print("weft-bench commitments: one period with 1,000 changed contracts (500 archived, 500 created),")
        print("  \(groupCount) stakeholder groups, \(counterCount) counter-participants each sharing a tenth of the groups;")
        print("  a period = apply the changes + a commitment per counter-participant + recordPeriod in PostgreSQL;")
        print("  \(rounds) rounds alternating the two sizes (a shared machine's drift hits both alike): medians, and the")
        print("  median of the per-round ratios; baseline: rehashing the whole ACS (what a restart does)")
        print()
        var subjects: [Subject] = []
        for (index, size) in [10_000, 1_000_000].enumerated() {
            let participant = "participant\(index)::1220" + String(repeating: "\(index)", count: 64)
            var subject = Subject(
                size: size, participant: participant, store: CommitmentStore(database: database, participant: participant),
                workload: Workload(groups: groupCount, counterParticipants: counterCount, me: participant))
            subject.contracts = (0..<size).map { subject.workload.contract($0) }
            let rebuildStart = now()
            for contract in subject.contracts {
                subject.tracker.add(id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored)
            }
            subject.rebuild = Double(now() - rebuildStart) / 1e6
            subjects.append(subject)
        }
        var ratios: [Double] = []
        for round in 0..<rounds {
            for index in subjects.indices { try await subjects[index].period(round: round, counterCount: counterCount) }
            ratios.append(subjects[1].periods[round] / subjects[0].periods[round])
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        for subject in subjects {
            print(
                "ACS \(pad(String(subject.size), 9, right: true)): period \(format(median(subject.periods), 2)) ms"
                    + " (in memory \(format(median(subject.memoryOnly), 2)) ms, PostgreSQL the rest);"
                    + " baseline rehash of the ACS \(format(subject.rebuild, 1)) ms")
            print(
                "  rounds (ms, remove 500 / add 500 / commitments / PostgreSQL): "
                    + subject.phases.map {
                        "\(format($0.remove, 1))/\(format($0.add, 1))/\(format($0.commit, 1))/\(format($0.database, 1))"
                    }.joined(separator: " "))
        }
        let ratio = median(ratios)
        print()
        print(
            "ratio 1,000,000 / 10,000 contracts: \(format(ratio, 2))x (median of the per-round ratios "
                + ratios.map { format($0, 2) }.joined(separator: " ") + ") -> target <= 1.5x \(ratio <= 1.5 ? "met" : "NOT met")")
        print(
            "baseline ratio (rehash): \(format(subjects[1].rebuild / subjects[0].rebuild, 1))x; a period at 1,000,000 costs "
                + "\(format(median(subjects[1].periods) / subjects[1].rebuild * 100, 2)) % of a rehash")
        await database.shutdown()
    }

    /// One ACS size: its running state and its periods so far.
    struct Subject {
        let size: Int
        let participant: String
        let store: CommitmentStore
        var workload: Workload
        var contracts: [Workload.Contract] = []
        var tracker = CommitmentTracker()
        var rebuild = 0.0
        var periods: [Double] = []
        var memoryOnly: [Double] = []
        var phases: [(remove: Double, add: Double, commit: Double, database: Double)] = []

        init(size: Int, participant: String, store: CommitmentStore, workload: Workload) {
            self.size = size
            self.participant = participant
            self.store = store
            self.workload = workload
        }

        /// Period `round`: archive 500 contracts (none archived before), create 500, compute
        /// and record the commitments.
        mutating func period(round: Int, counterCount: Int) async throws {
            let archived = (0..<500).map { contracts[(round * 500 + $0 * 7) % size].id }
            let created = (0..<500).map { workload.contract(size + round * 500 + $0) }
            let start = now()
            for id in archived { tracker.remove(id: id) }
            let removed = now()
            for contract in created { tracker.add(id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored) }
            let added = now()
            let own = tracker.commitments(me: participant, hosts: workload.hosts)
            let computed = now()
            let end = Int64(round + 1) * 1_000_000
            _ = try await store.recordPeriod(from: end - 1_000_000, to: end, own: own)
            let recorded = now()
            precondition(own.count == counterCount, "every counter-participant shares groups")
            periods.append(Double(recorded - start) / 1e6)
            memoryOnly.append(Double(computed - start) / 1e6)
            phases.append(
                (
                    Double(removed - start) / 1e6, Double(added - removed) / 1e6, Double(computed - added) / 1e6,
                    Double(recorded - computed) / 1e6
                ))
        }
    }

    /// Seeded contracts spread over stakeholder groups; group `g` is hosted by this
    /// participant and counter-participant `g % counterParticipants`.
    struct Workload {
        struct Contract {
            let id: ContractID
            let stakeholders: [String]
            let stored: [UInt8]
        }
        let groups: [[String]]
        let counterParticipants: [String]
        let hostsOfGroup: [StakeholderGroup: Set<String>]
        var state: UInt64 = 0x5EED

        /// `me`: this participant, a host of every group.
        init(groups count: Int, counterParticipants: Int, me: String) {
            let counters = (0..<counterParticipants).map { "counter\($0)::1220" + String(repeating: "c", count: 64) }
            let groups = (0..<count).map { ["bank::1220" + String(repeating: "b", count: 64), "party\($0)::1220" + String(repeating: "a", count: 64)] }
            var hosts: [StakeholderGroup: Set<String>] = [:]
            for (index, group) in groups.enumerated() { hosts[StakeholderGroup(group)] = [me, counters[index % counterParticipants]] }
            self.groups = groups
            self.counterParticipants = counters
            hostsOfGroup = hosts
        }

        var hosts: (StakeholderGroup) -> Set<String> { { [hostsOfGroup] in hostsOfGroup[$0] ?? [] } }

        /// Contract `number`: a random id, its group by number, ~200 bytes of data.
        mutating func contract(_ number: Int) -> Contract {
            func byte() -> UInt8 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            let id = ContractID(Digest32((0..<32).map { _ in byte() })!)
            return Contract(id: id, stakeholders: groups[number % groups.count], stored: (0..<200).map { _ in byte() })
        }
    }
}
