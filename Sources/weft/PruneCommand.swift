import ArgumentParser
import Foundation
import WeftTransport
import WeftWire

/// `weft prune …`: a participant's ledger pruning, bounded by what ACS commitments confirmed
/// (docs/participant.md, "Pruning"; docs/operator-guide.md, "Pruning").
struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune a participant's ledger history, never past what commitments confirmed unless forced.",
        subcommands: [SafePoint.self, Participant.self])

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
                Refused when the offset was sequenced after the commitment safe point (`weft prune
                safe-point`). --force-unsafe prunes anyway: a later commitment mismatch in the
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
}
