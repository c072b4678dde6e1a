import Foundation
public import WeftContracts
public import WeftCrypto
public import WeftTopology
import WeftStore
import WeftWire

/// One command's completion as the participant decides it: what the Ledger API's completion
/// stream carries.
public struct CommandCompletion: Sendable, Equatable {
    /// The command and the parties it acted as (none for a record from before participant
    /// migration 16 whose request's views are not at hand).
    public let change: ChangeID
    public let completion: Completion
    /// The submission completed, when the participant knows it; else empty.
    public let submissionID: String

    public init(change: ChangeID, completion: Completion, submissionID: String = "") {
        self.change = change
        self.completion = completion
        self.submissionID = submissionID
    }

    public var command: CommandKey { change.command }
    public var actAs: [Party] { change.actAs }
}

/// A package as stored: what the Ledger API lists and hands back.
public struct StoredPackage: Sendable, Equatable {
    public let id: PackageID
    public let source: String
    /// Microseconds since the epoch.
    public let uploadedAtMicros: Int64
}

/// Followers of the participant for the Ledger API: a stream of completions and a stream of
/// cursor moves. Both are registered before a reader replays what is stored, so nothing that
/// happens between the replay and the first live element is missed (a reader drops what it
/// has already seen by offset).
extension ParticipantNode {
    /// Every completion from now on (successes, rejections, sequencer refusals), in the order
    /// the participant decides them. Ends when the caller stops iterating, or when the node's
    /// processing has ended (a stop, or a failure that needs a restart).
    public func completionEvents() -> AsyncStream<CommandCompletion> {
        let (stream, continuation) = AsyncStream<CommandCompletion>.makeStream(bufferingPolicy: .unbounded)
        if processingEnded {
            continuation.finish()
            return stream
        }
        let id = nextSubscriberID
        nextSubscriberID += 1
        completionSubscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.removeCompletionSubscriber(id) }
        }
        return stream
    }

    /// The participant's next sequencer counter each time it moves (one element per processed
    /// event; a slow reader sees only the newest): how a reader waits for "something changed"
    /// — a transaction committed, a topology change applied — without polling. Ends, as
    /// `completionEvents`, when the node's processing has ended.
    public func progressEvents() -> AsyncStream<UInt64> {
        let (stream, continuation) = AsyncStream<UInt64>.makeStream(bufferingPolicy: .bufferingNewest(1))
        if processingEnded {
            continuation.finish()
            return stream
        }
        let id = nextSubscriberID
        nextSubscriberID += 1
        progressSubscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.removeProgressSubscriber(id) }
        }
        return stream
    }

    private func removeCompletionSubscriber(_ id: UInt64) { completionSubscribers[id] = nil }
    private func removeProgressSubscriber(_ id: UInt64) { progressSubscribers[id] = nil }

    func publish(_ completion: CommandCompletion) {
        for subscriber in completionSubscribers.values { subscriber.yield(completion) }
    }

    func cursorMoved(to nextCounter: UInt64) {
        for subscriber in progressSubscribers.values { subscriber.yield(nextCounter) }
    }

    /// Whether this participant hosts `party` now, and with which permission.
    public func hosting(of party: UniqueIdentifier) async -> PartyHosting? {
        await hostedParties().first { $0.party == party }
    }

    /// The packages uploaded here, with their sources, oldest first.
    public func storedPackages() async throws -> [StoredPackage] {
        try await store.packages()
    }
}

extension ParticipantStore {
    /// Every uploaded package with its source and upload time, oldest first.
    func packages() async throws -> [StoredPackage] {
        let me = PostgresValue.text(participant.description)
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT package_id, source, (extract(epoch FROM uploaded_at) * 1000000)::bigint
                FROM participant_packages WHERE participant = $1 ORDER BY uploaded_at, package_id
                """, [me]
            ).rows.map { row in
                let text = try Self.require(row[0].string, "package_id")
                guard let id = PackageID(hex: text) else {
                    throw ParticipantError.inconsistentStore("package id '\(text)' is not hex")
                }
                return StoredPackage(
                    id: id, source: try Self.require(row[1].string, "source"),
                    uploadedAtMicros: try Self.require(row[2].int64, "uploaded_at"))
            }
        }
    }
}

/// The active contracts of several parties as of one ledger offset.
public struct ActiveContractSnapshot: Sendable {
    /// Each contract once, with the requested parties that are its stakeholders, oldest first.
    public let contracts: [(contract: ActiveContract, parties: [Party])]
    /// The ledger offset the set is valid at.
    public let offset: Int64
}

extension ParticipantNode {
    /// The active contracts `parties` are stakeholders of and the ledger offset they are valid
    /// at, read in one database snapshot: a commit racing the read is either wholly in the
    /// set (and its offset) or not at all.
    public func activeContracts(of parties: [Party]) async throws -> ActiveContractSnapshot {
        try await store.activeContractSnapshot(of: parties)
    }
}

extension ParticipantStore {
    func activeContractSnapshot(of parties: [Party]) async throws -> ActiveContractSnapshot {
        let me = PostgresValue.text(participant.description)
        // A text[] literal with every element quoted (party ids are validated, but quoting
        // keeps the literal's meaning independent of which characters they allow).
        let literal = "{" + parties.map { "\"" + $0.id.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
        let (offset, rows) = try await database.transaction { connection in
            // Both reads see the same snapshot of the database.
            _ = try connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            // A prune up to the ledger end leaves no transaction behind: the end is then the
            // pruned offset, as at a start (`load`), not 0, from which no stream may begin.
            let offset = max(
                try connection.execute(
                    "SELECT coalesce(max(ledger_offset), 0)::bigint FROM participant_transactions WHERE participant = $1", [me]
                ).rows.first?.first?.int64 ?? 0,
                try Self.prunedOffset(connection, me))
            let rows = try connection.execute(
                """
                SELECT contract, created_offset FROM participant_contracts
                WHERE participant = $1 AND archived_offset IS NULL AND stakeholders && $2::text[]
                ORDER BY created_offset, contract_id
                """, [me, .text(literal)]
            ).rows.map { row in (try Self.require(row[0].bytes, "contract"), try Self.require(row[1].int64, "offset")) }
            return (offset, rows)
        }
        let requested = Set(parties)
        var contracts: [(contract: ActiveContract, parties: [Party])] = []
        for (bytes, createdAt) in rows {
            let (id, contract, seed) = try ContractInstance.fromWire(try Weft.V1.ContractInstance(serializedBytes: bytes))
            contracts.append(
                (
                    ActiveContract(id: id, contract: contract, createdAt: createdAt, creationSeed: seed),
                    contract.stakeholders.filter(requested.contains)
                ))
        }
        return ActiveContractSnapshot(contracts: contracts, offset: offset)
    }
}
