import ArgumentParser
import Foundation
import WeftTransport
import WeftWire

/// `weft prune …`: a participant's ledger pruning, bounded by what ACS commitments confirmed
/// (docs/participant.md, "Pruning"; docs/operator-guide.md, "Pruning"), and a sequencer's,
/// bounded by what its members acknowledged.
struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune a participant's ledger history or a sequencer's events, never past the safe point unless forced.",
        subcommands: [SafePoint.self, Participant.self, SequencerSafePoint.self, Sequencer.self])

    struct SafePoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "safe-point",
            abstract: "How far the participant's ledger may be pruned: the commitment safe point and its offset.")
        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let point = try await client.participantAdministration.getPruningSafePoint(.init())
            switch output {
            case .json:
                try printJSON(
                    [
                        "safe_point_micros": point.safePoint.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "safe_offset": point.safeOffset, "pruned_offset": point.prunedOffset,
                    ] as [String: Any])
            case .text:
                print("safe point: \(CommitmentsCommand.time(point.safePoint))")
                print("safe offset: \(point.safeOffset == 0 ? "none" : "\(point.safeOffset)")")
                print("pruned up to offset: \(point.prunedOffset == 0 ? "never pruned" : "\(point.prunedOffset)")")
            }
        }
    }

    struct Participant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "participant",
            abstract: "Remove the participant's ledger history up to an offset; active contracts stay.",
            discussion: """
                Refused when the offset was committed (its verdict sequenced) after the commitment
                safe point (`weft prune safe-point`). --force-unsafe prunes anyway: a later commitment mismatch in the
                unconfirmed range can then no longer be narrowed down or repaired from this node.
                """)
        @OptionGroup var remote: RemoteOptions
        @Option(help: "Prune up to and including this ledger offset.")
        var offset: Int64
        @Flag(name: .customLong("force-unsafe"), help: "Prune even past the commitment safe point (logged as a warning).")
        var forceUnsafe = false
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard offset > 0 else { throw ValidationError("--offset must be a ledger offset, 1 or more (`weft prune safe-point` prints the safe one)") }
        }

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let result = try await client.participantAdministration.pruneParticipant(
                .init(offset: UInt64(offset), ignoreCommitments: forceUnsafe))
            switch output {
            case .json:
                try printJSON(
                    [
                        "pruned_offset": result.prunedOffset, "forced": result.forced,
                        "record_time_micros": result.recordTime.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "safe_point_micros": result.safePoint.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "transactions_removed": result.transactionsRemoved,
                        "archived_contracts_removed": result.archivedContractsRemoved,
                        "unconfirmed": result.unconfirmed.map {
                            [
                                "counter_participant": $0.counterParticipant,
                                "oldest_period_end_micros": $0.oldestPeriodEnd?.microsSinceEpoch ?? 0,
                            ] as [String: Any]
                        },
                    ] as [String: Any])
            case .text:
                print(
                    "pruned up to offset \(result.prunedOffset): \(result.transactionsRemoved) transactions, "
                        + "\(result.archivedContractsRemoved) archived contracts removed")
                if result.forced {
                    print("forced past the commitment safe point \(CommitmentsCommand.time(result.safePoint)); unconfirmed:")
                    for item in result.unconfirmed {
                        print("  \(item.counterParticipant) from \(CommitmentsCommand.time(item.oldestPeriodEnd))")
                    }
                }
            }
        }
    }

    struct SequencerSafePoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sequencer-safe-point",
            abstract: "How far a sequencer's events may be pruned: the oldest acknowledgement among its enabled members.",
            discussion: """
                Participants acknowledge their events when they prune their own ledger (`weft prune
                participant`), the mediator and the domain manager as they process them. A member that never
                acknowledged holds the safe point back (none).
                """)
        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let status = try await ledgerCall { try await client.sequencerAdministration.getSequencerStatus(.init()) }
            let point = Self.safePoint(status)
            switch output {
            case .json:
                try printJSON(
                    [
                        "safe_point_micros": point.map { $0 as Any } ?? NSNull(),
                        "lower_bound_micros": status.lowerBound.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "upper_bound_micros": status.upperBound.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "members": status.members.map {
                            [
                                "member": $0.member, "enabled": $0.enabled,
                                "acknowledged_micros": $0.acknowledged.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                            ] as [String: Any]
                        },
                    ] as [String: Any])
            case .text:
                print("safe point: \(CommitmentsCommand.time(point.map { .init(microsSinceEpoch: $0) }))")
                print("stored events: \(CommitmentsCommand.time(status.lowerBound)) to \(CommitmentsCommand.time(status.upperBound))")
                for member in status.members {
                    print("  \(member.member): acknowledged \(CommitmentsCommand.time(member.acknowledged))\(member.enabled ? "" : " (disabled)")")
                }
            }
        }

        /// The oldest acknowledgement among enabled members; nil when one never acknowledged.
        static func safePoint(_ status: Weft.V1.GetSequencerStatusResponse) -> Int64? {
            let enabled = status.members.filter(\.enabled)
            let acknowledged = enabled.compactMap { $0.acknowledged?.microsSinceEpoch }
            guard !enabled.isEmpty, acknowledged.count == enabled.count else { return nil }
            return acknowledged.min()
        }
    }

    struct Sequencer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sequencer",
            abstract: "Remove a sequencer's events up to a time; refused past what every member acknowledged unless forced.",
            discussion: """
                `weft prune sequencer-safe-point` prints how far it may go. --force prunes anyway and cuts off
                the members that had not acknowledged (printed, and logged by the sequencer): each of them can
                then only recover from its peers' snapshots (`weft repair`), not by replay.
                """)
        @OptionGroup var remote: RemoteOptions
        @Option(name: .customLong("up-to"), help: "Prune events up to and including this time: µs since the epoch or ISO 8601 (…Z).")
        var upTo: String
        @Flag(help: "Prune even past members' acknowledgements, cutting those members off.")
        var force = false
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard CommitmentsCommand.micros(upTo) != nil else {
                throw ValidationError("--up-to must be µs since the epoch or an ISO 8601 time in UTC (2026-12-02T14:00:05Z); `weft prune sequencer-safe-point` prints the safe one")
            }
        }

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let micros = CommitmentsCommand.micros(upTo) ?? 0
            let result = try await ledgerCall {
                try await client.sequencerAdministration.prune(.init(upToInclusive: .init(microsSinceEpoch: micros), force: force))
            }
            switch output {
            case .json:
                try printJSON(
                    ["up_to_micros": micros, "events_removed": result.eventsRemoved, "members_cut_off": result.membersCutOff] as [String: Any])
            case .text:
                print("pruned events up to \(CommitmentsCommand.time(.init(microsSinceEpoch: micros))): \(result.eventsRemoved) removed")
                if !result.membersCutOff.isEmpty {
                    print("forced: cut off \(result.membersCutOff.joined(separator: ", ")); they recover only from their peers' snapshots (weft repair)")
                }
            }
        }
    }
}
