import ArgumentParser
import Foundation
import WeftCrypto
import WeftTopology
import WeftTransport
import WeftWire

/// `weft commitments …`: a participant's ACS commitments (docs/participant.md, "ACS
/// commitments"; docs/operator-guide.md, "Commitments").
struct CommitmentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commitments",
        abstract: "A participant's ACS commitments: mismatches with counter-participants, the safe point, narrowing.",
        subcommands: [Mismatches.self, SafePoint.self, Inspect.self])

    /// A sequencing time as text: ISO 8601 and the microseconds the APIs use.
    static func time(_ timestamp: Weft.V1.Timestamp?) -> String {
        guard let timestamp else { return "none" }
        return "\(SequencingTimestamp(timestamp)) (\(timestamp.microsSinceEpoch) µs)"
    }

    /// A sequencing time an operator types: microseconds since the epoch, as the JSON output
    /// gives them, or ISO 8601 in UTC with up to six fractional digits, as the text output
    /// prints it (`2026-12-02T14:00:05.000250Z`). Nil for anything else.
    static func micros(_ text: String) -> Int64? {
        if let micros = Int64(text) { return micros }
        guard text.hasSuffix("Z") else { return nil }
        var seconds = Substring(text.dropLast())
        var fraction: Int64 = 0
        if let dot = seconds.firstIndex(of: ".") {
            let digits = seconds[seconds.index(after: dot)...]
            guard (1...6).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(digits) else { return nil }
            fraction = value * Int64(pow(10, Double(6 - digits.count)))
            seconds = seconds[..<dot]
        }
        guard let date = ISO8601DateFormatter().date(from: seconds + "Z") else { return nil }
        return Int64(date.timeIntervalSince1970) * 1_000_000 + fraction
    }

    struct Mismatches: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mismatches",
            abstract: "List the periods whose commitments differ from a counter-participant's.")
        @OptionGroup var remote: RemoteOptions
        @Option(name: .customLong("counter-participant"), help: "Only those with this participant (name::1220…).")
        var counterParticipant: String?
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let mismatches = try await client.participantAdministration.listCommitmentMismatches(
                .init(counterParticipant: counterParticipant ?? "")
            ).mismatches
            switch output {
            case .json:
                try printJSON(
                    mismatches.map {
                        [
                            "counter_participant": $0.counterParticipant,
                            "from_exclusive_micros": $0.fromExclusive?.microsSinceEpoch ?? 0,
                            "to_inclusive_micros": $0.toInclusive?.microsSinceEpoch ?? 0,
                            "own_commitment": hexString($0.ownCommitment), "received_commitment": hexString($0.receivedCommitment),
                        ] as [String: Any]
                    })
            case .text:
                if mismatches.isEmpty { print("no commitment mismatches") }
                for mismatch in mismatches {
                    print(
                        "\(mismatch.counterParticipant) at \(CommitmentsCommand.time(mismatch.toInclusive)): "
                            + "own \(mismatch.ownCommitment.isEmpty ? "(nothing shared)" : hexString(mismatch.ownCommitment)), "
                            + "received \(hexString(mismatch.receivedCommitment))")
                }
                if !mismatches.isEmpty {
                    print("narrow it down: weft commitments inspect --counter-participant <participant> --remote \(remote.remote)")
                }
            }
        }
    }

    struct SafePoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "safe-point",
            abstract: "The latest period end up to which every commitment sent was matched (how far pruning may go).")
        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let point = try await client.participantAdministration.getCommitmentSafePoint(.init())
            switch output {
            case .json:
                try printJSON(
                    [
                        "safe_point_micros": point.safePoint.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "first_unmatched_micros": point.firstUnmatched.map { $0.microsSinceEpoch as Any } ?? NSNull(),
                        "first_unmatched_counter_participant": point.firstUnmatchedCounterParticipant,
                    ] as [String: Any])
            case .text:
                print("safe point: \(CommitmentsCommand.time(point.safePoint))")
                if point.firstUnmatched != nil {
                    print(
                        "oldest unmatched commitment: \(CommitmentsCommand.time(point.firstUnmatched)) to \(point.firstUnmatchedCounterParticipant)"
                    )
                }
            }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect",
            abstract: "Exchange the shared contracts with a counter-participant and list those that differ.",
            discussion: """
                Both participants list the contracts they share as of the same sequencing time (the
                request's), first per stakeholder group, then per contract in the groups that differ.
                """)
        @OptionGroup var remote: RemoteOptions
        @Option(name: .customLong("counter-participant"), help: "The participant whose commitments differ (name::1220…).")
        var counterParticipant: String
        @Option(name: .customLong("group"), help: "Only this stakeholder group (party ids joined with ,); repeatable.")
        var groups: [String] = []
        @Option(help: "How long to wait for the counter-participant's answer, in seconds.")
        var timeout: Int = 30
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard (try? UniqueIdentifier(parsing: counterParticipant)) != nil else {
                throw ValidationError("--counter-participant must be a participant id (name::1220…), as `weft participant id` prints it")
            }
            guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 3600 seconds") }
        }

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let result = try await client.participantAdministration.inspectCommitment(
                .init(counterParticipant: counterParticipant, stakeholderGroups: groups, timeoutMillis: UInt32(timeout * 1000)),
                timeout: .seconds(Int64(timeout + 10)))
            switch output {
            case .json:
                try printJSON(
                    [
                        "as_of_micros": result.asOf?.microsSinceEpoch ?? 0, "groups_compared": Int(result.groupsCompared),
                        "differing_groups": result.differingGroups, "contracts_omitted": result.contractsOmitted,
                        "contracts": result.contracts.map {
                            ["contract_id": $0.contractID, "stakeholder_group": $0.stakeholderGroup, "kind": Self.kind($0.kind)]
                        },
                    ] as [String: Any])
            case .text:
                print("as of \(CommitmentsCommand.time(result.asOf)): \(result.groupsCompared) shared stakeholder groups compared")
                if result.differingGroups.isEmpty { print("no difference: the shared contracts are the same now") }
                for group in result.differingGroups { print("differing group: \(group)") }
                for contract in result.contracts {
                    print("\(contract.contractID) [\(contract.stakeholderGroup)]: \(Self.kind(contract.kind))")
                }
                if result.contractsOmitted {
                    print("too many contracts to list: run again with --group for each differing group")
                }
            }
        }

        static func kind(_ kind: Weft.V1.ContractDifferenceKind) -> String {
            switch kind {
            case .missingThere: "active here, missing at the counter-participant"
            case .missingHere: "missing here, active at the counter-participant"
            case .differentData: "different data"
            default: "unknown"
            }
        }
    }
}

private func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
