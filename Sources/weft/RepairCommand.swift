import ArgumentParser
import Foundation
import WeftCrypto
import WeftParticipant
import WeftTransport
import WeftWire

/// `weft repair …`: a participant that lost its database after the sequencer pruned its stream
/// is repaired from its peers' ACS snapshots (docs/operator-guide.md §7.2); the participants of
/// a domain whose sequencer database was lost move to a new domain (§7.3,
/// RepairMigrateDomainCommand.swift).
struct RepairCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Recover participants after data loss: repair one from its peers' ACS snapshots, or move one to a new domain.",
        discussion: """
            Repair from peers (docs/operator-guide.md §7.2): on each peer, weft repair export-acs \
            --counter-participant <the lost participant> --file FILE; on the lost participant, started on an \
            empty database and connected with `weft participant connect-multi … --repair`: weft repair \
            import-acs FILE…. Domain migration (§7.3): weft repair migrate-domain OLD NEW host:port… on \
            every participant of a domain whose sequencer database was lost.
            """,
        subcommands: [ExportAcs.self, ImportAcs.self, MigrateDomain.self])

    struct ExportAcs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-acs",
            abstract: "Write the contracts this participant shares with another to a snapshot file, for its repair.",
            discussion: """
                The snapshot is as of the end of a commitment period (default: the latest this participant
                sent the counter-participant a commitment for); the importer checks it against that
                commitment on the sequencer. Every peer's snapshot of one import must be for the same
                period: give the first export's period end to the others with --at.
                """)
        @OptionGroup var remote: RemoteOptions
        @Option(name: .customLong("counter-participant"), help: "The participant to be repaired (name::1220…).")
        var counterParticipant: String
        @Option(help: "The commitment period's end: µs since the epoch or ISO 8601 (…Z), as `weft commitments` prints it.")
        var at: String?
        @Option(help: "The snapshot file to write (mode 0600: it holds contract data).")
        var file: String
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard (try? UniqueIdentifier(parsing: counterParticipant)) != nil else {
                throw ValidationError("--counter-participant must be a participant id (name::1220…), as `weft participant id` prints it")
            }
            if let at, CommitmentsCommand.micros(at) == nil {
                throw ValidationError("--at must be µs since the epoch or an ISO 8601 time in UTC (2026-12-02T14:00:05Z)")
            }
        }

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            var wire: Weft.V1.AcsSnapshot?
            try await ledgerCall {
                let request = Weft.V1.ExportAcsRequest(
                    counterParticipant: counterParticipant, periodEnd: at.flatMap(CommitmentsCommand.micros).map { .init(microsSinceEpoch: $0) })
                for try await response in try client.participantAdministration.exportAcs(request, timeout: .seconds(300)) {
                    if let header = response.header {
                        wire = header
                    } else if wire != nil {
                        wire?.contracts += response.snapshotContracts
                    }
                }
            }
            guard let wire else { throw RepairFileError("the participant sent no snapshot; is it a Weft participant of this release?") }
            // The file is checked as the importer will read it before it is written.
            let snapshot = try AcsSnapshot(wire: wire)
            try Self.write(try wire.serializedBytes(), to: file)
            switch output {
            case .json:
                try printJSON(
                    [
                        "file": file, "exporter": snapshot.exporter, "counter_participant": snapshot.counterParticipant,
                        "from_exclusive_micros": snapshot.fromExclusive, "to_inclusive_micros": snapshot.toInclusive,
                        "contracts": snapshot.contracts.count,
                    ] as [String: Any])
            case .text:
                print(
                    "wrote \(file): \(snapshot.contracts.count) contracts shared with \(snapshot.counterParticipant), period "
                        + "\(CommitmentsCommand.time(.init(microsSinceEpoch: snapshot.fromExclusive)))..\(CommitmentsCommand.time(.init(microsSinceEpoch: snapshot.toInclusive)))"
                )
            }
        }

        /// Writes `bytes` to `path` through a temporary file renamed into place, mode 0600: a
        /// reader never sees half a snapshot, and other local users cannot read its contracts.
        static func write(_ bytes: [UInt8], to path: String) throws {
            let temporary = path + ".partial"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
                throw RepairFileError("cannot write \(temporary): check the directory exists and is writable")
            }
            guard rename(temporary, path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(atPath: temporary)
                throw RepairFileError("cannot move the snapshot to \(path): \(reason)")
            }
        }
    }

    struct ImportAcs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-acs",
            abstract: "Import peers' snapshot files into a participant connected with --repair; it then processes its stream.",
            discussion: """
                Give one file per peer the participant shares contracts with, all for the same period. Each is
                checked against the commitment its exporter sent through the sequencer; one that does not
                match is refused with its error id and nothing of it is stored.
                """)
        @Argument(help: "Snapshot files written by `weft repair export-acs` on the peers.")
        var files: [String]
        @OptionGroup var remote: RemoteOptions
        @Option(help: "How long the participant may wait for each exporter's commitment on the sequencer, in seconds (it waits 30 s at most per snapshot).")
        var timeout: Int = 120
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard !files.isEmpty else { throw ValidationError("give at least one snapshot file (written by `weft repair export-acs`)") }
            guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 3600 seconds") }
        }

        func run() async throws {
            // Every file is read and checked before anything is sent.
            var snapshots: [AcsSnapshot] = []
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw RepairFileError("cannot read \(file); give the file `weft repair export-acs` wrote")
                }
                do {
                    snapshots.append(try AcsSnapshot(serializedBytes: Array(data)))
                } catch {
                    throw RepairFileError("\(file): \(error)")
                }
            }
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let batchBytes = AcsSnapshot.streamBatchBytes(messageLimit: RPCConfiguration().maximumMessageBytes)
            let streamed = snapshots.map { $0.streamed(batchBytes: batchBytes) }
            let result = try await ledgerCall {
                try await client.participantAdministration.importAcs(timeout: .seconds(Int64(timeout))) { writer in
                    for (header, batches) in streamed {
                        try await writer.send(.init(header: header))
                        for batch in batches { try await writer.send(.init(snapshotContracts: batch)) }
                    }
                }
            }
            switch output {
            case .json:
                try printJSON(
                    [
                        "contracts_added": result.imported, "next_counter": result.nextCounter,
                        "snapshots": zip(files, result.snapshots).map { file, snapshot in
                            [
                                "file": file, "exporter": snapshot.exporter,
                                "from_exclusive_micros": snapshot.fromExclusive?.microsSinceEpoch ?? 0,
                                "to_inclusive_micros": snapshot.toInclusive?.microsSinceEpoch ?? 0,
                                "contracts_in_snapshot": snapshot.contractsInSnapshot, "contracts_added": snapshot.contractsAdded,
                            ] as [String: Any]
                        },
                    ] as [String: Any])
            case .text:
                for (file, snapshot) in zip(files, result.snapshots) {
                    print(
                        "\(file): from \(snapshot.exporter), period \(CommitmentsCommand.time(snapshot.fromExclusive))..\(CommitmentsCommand.time(snapshot.toInclusive)): "
                            + "\(snapshot.contractsInSnapshot) contracts, \(snapshot.contractsAdded) added")
                }
                print("\(result.imported) contracts imported; the participant processes its stream from counter \(result.nextCounter)")
            }
        }
    }
}

/// A snapshot file that cannot be read, checked or written; exit status 1 with what to do.
struct RepairFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
