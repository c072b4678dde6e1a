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

/// One page of the active contracts as of an offset (`ParticipantNode.activeContracts(of:at:after:limit:)`).
public struct ActiveContractPage: Sendable {
    /// Each contract once, with the requested parties that are its stakeholders, oldest first.
    public let contracts: [(contract: ActiveContract, parties: [Party])]
    /// Where the next page starts; nil when this page is the last.
    public let next: Cursor?

    /// The position after the last contract of a page: its creation offset and id.
    public struct Cursor: Sendable, Equatable {
        let createdOffset: Int64
        let contractID: String
    }
}

extension ParticipantNode {
    /// The active contracts `parties` are stakeholders of and the ledger offset they are valid
    /// at, read a page at a time as of one offset (`activeContracts(of:at:after:limit:)`): a
    /// commit racing the read is either wholly in the set (and its offset) or not at all.
    public func activeContracts(of parties: [Party]) async throws -> ActiveContractSnapshot {
        let offset = try await activeContractsOffset()
        var contracts: [(contract: ActiveContract, parties: [Party])] = []
        var cursor: ActiveContractPage.Cursor?
        repeat {
            let page = try await activeContracts(of: parties, at: offset, after: cursor, limit: 1_000)
            contracts += page.contracts
            cursor = page.next
        } while cursor != nil
        return ActiveContractSnapshot(contracts: contracts, offset: offset)
    }

    /// The offset an active contract set read now is valid at: the ledger end as stored.
    public func activeContractsOffset() async throws -> Int64 {
        // Never past the ledger end streams are checked against: a commit is stored before
        // this node's end moves (`apply` resumes after the write), and an application that
        // reads the set and then the transactions from its offset would be refused in between.
        // The set as of the smaller offset is as consistent: pages are read as of it.
        min(try await store.activeContractsOffset(), ledgerEndOffset)
    }

    /// Up to `limit` of the contracts `parties` are stakeholders of that are active as of
    /// `offset` (created at or before it, not archived by then), oldest first, after `cursor`.
    /// Pages read as of one offset make one set however many transactions commit between them:
    /// each page is its own statement, so no database transaction stays open while a client
    /// reads slowly. A prune past `offset` since (it deletes contracts archived up to the
    /// pruned offset, some of which were active then) fails the page with `activeContractsPruned`: read
    /// the set again.
    public func activeContracts(of parties: [Party], at offset: Int64, after cursor: ActiveContractPage.Cursor?, limit: Int)
        async throws -> ActiveContractPage
    {
        try await store.activeContracts(of: parties, at: offset, after: cursor, limit: limit)
    }
}

extension ParticipantStore {
    func activeContractsOffset() async throws -> Int64 {
        let me = PostgresValue.text(participant.description)
        return try await database.withConnection { connection in
            // A prune up to the ledger end leaves no transaction behind: the end is then the
            // pruned offset, as at a start (`load`), not 0, from which no stream may begin.
            // One statement: both read the same snapshot.
            try Self.require(
                try connection.execute(
                    """
                    SELECT greatest(
                        (SELECT coalesce(max(ledger_offset), 0) FROM participant_transactions WHERE participant = $1),
                        (\(Self.prunedOffsetQuery)))::bigint
                    """, [me]
                ).rows.first?.first?.int64, "ledger end")
        }
    }

    /// One page of the active contracts as of an offset: ($1 participant, $2 offset, $3 and $4
    /// the cursor's created offset and contract id, $5 the parties (text[]), $6 the
    /// limit). The pruned offset comes first in every row (one row with the page's columns NULL
    /// when the page is empty).
    ///
    /// The page ends at the creation offset of the `$6`-th contract after the cursor, found by
    /// an ordered scan of `participant_contracts_by_creation` that stops there; the page is then
    /// every contract after the cursor up to that offset (one transaction's creates are not cut
    /// apart), sorted. So a page reads about its own rows, whatever the planner thinks of the
    /// table: sorting "everything after the cursor" and keeping the first `$6` read every later
    /// row on every page (StoreQueryPlanTests).
    static let activeContractsPageSQL = """
        SELECT pruned.pruned_offset, page.* FROM (\(prunedOffsetQuery)) pruned
        LEFT JOIN LATERAL (
            SELECT contract, created_offset, contract_id FROM participant_contracts
            WHERE participant = $1 AND created_offset <= $2 AND (archived_offset IS NULL OR archived_offset > $2)
                AND created_offset >= $3 AND (created_offset, contract_id) > ($3, $4) AND stakeholders && $5::text[]
                AND created_offset <= coalesce((
                    SELECT created_offset FROM participant_contracts
                    WHERE participant = $1 AND created_offset <= $2 AND (archived_offset IS NULL OR archived_offset > $2)
                        AND created_offset >= $3 AND (created_offset, contract_id) > ($3, $4) AND stakeholders && $5::text[]
                    ORDER BY created_offset
                    OFFSET $6::bigint - 1 LIMIT 1), $2)
        ) page ON true
        ORDER BY page.created_offset, page.contract_id
        """

    /// One page of the contracts a repair imported (creation offset 0), active as of an offset:
    /// ($1 participant, $2 offset, $3 the cursor's contract id, $4 the parties (text[]), $5 the
    /// limit), in contract id order through `participant_contracts_repaired`; the pruned offset
    /// first in every row, as `activeContractsPageSQL`'s. That statement would take the whole
    /// group at once: a page ends at a creation offset, and the group shares one.
    ///
    /// Run after `repairedPagePlanning` in the same transaction: without statistics the planner
    /// expects the group to be a row or two and takes `participant_contracts_by_creation`, then
    /// sorts the whole group on every page (StoreQueryPlanTests); with sorting priced out it
    /// takes the index that reads the group in id order from the cursor.
    static let activeContractsRepairedPageSQL = """
        SELECT pruned.pruned_offset, page.* FROM (\(prunedOffsetQuery)) pruned
        LEFT JOIN LATERAL (
            SELECT contract, created_offset, contract_id FROM participant_contracts
            WHERE participant = $1 AND created_offset = 0 AND (archived_offset IS NULL OR archived_offset > $2)
                AND contract_id > $3 AND stakeholders && $4::text[]
            ORDER BY created_offset, contract_id LIMIT $5
        ) page ON true
        ORDER BY page.contract_id
        """

    /// The planner setting for `activeContractsRepairedPageSQL`, for its transaction only.
    static let repairedPagePlanning = "SET LOCAL enable_sort = off"

    func activeContracts(of parties: [Party], at offset: Int64, after cursor: ActiveContractPage.Cursor?, limit: Int)
        async throws -> ActiveContractPage
    {
        let me = PostgresValue.text(participant.description)
        let requested = Set(parties)
        var contracts: [(contract: ActiveContract, parties: [Party])] = []
        var last: ActiveContractPage.Cursor?
        // First the contracts a repair imported (creation offset 0), a page at a time by id; then,
        // after them, those transactions created, from offset 1 on.
        var after = cursor
        if (cursor?.createdOffset ?? 0) <= 0 {
            // One round trip; a read, so not counted toward the writes after which the database
            // is analyzed.
            let rows = try await database.pipelinedTransaction(countsAsWrite: false) { connection in
                try connection.enqueue(Self.repairedPagePlanning)
                try connection.enqueue(
                    Self.activeContractsRepairedPageSQL,
                    [me, .int64(offset), .text(cursor?.contractID ?? ""), Self.parties(parties), .int64(Int64(limit))])
            }[1].rows
            try append(rows)
            if contracts.count == limit { return ActiveContractPage(contracts: contracts, next: last) }
            after = .init(createdOffset: 1, contractID: "")
        }
        let rest = limit - contracts.count
        let rows = try await database.withConnection { [after] connection in
            try connection.execute(
                Self.activeContractsPageSQL,
                [
                    me, .int64(offset), .int64(after?.createdOffset ?? 1), .text(after?.contractID ?? ""), Self.parties(parties),
                    .int64(Int64(rest)),
                ]
            ).rows
        }
        try append(rows)
        return ActiveContractPage(contracts: contracts, next: contracts.count < limit ? nil : last)

        /// The contracts of a page's rows, after checking its pruned offset.
        func append(_ rows: [[PostgresCell]]) throws {
            // Contracts archived after `offset` but pruned since would be missing from the set.
            let pruned = try Self.require(rows.first?[0].int64, "pruned_offset")
            guard offset >= pruned else { throw ParticipantError.activeContractsPruned(offset: offset, prunedOffset: pruned) }
            for row in rows where !row[1].isNull {
                let createdAt = try Self.require(row[2].int64, "created_offset")
                let (id, contract, seed) = try ContractInstance.fromWire(
                    try Weft.V1.ContractInstance(serializedBytes: Self.require(row[1].bytes, "contract")))
                contracts.append(
                    (
                        ActiveContract(id: id, contract: contract, createdAt: createdAt, creationSeed: seed),
                        contract.stakeholders.filter(requested.contains)
                    ))
                last = .init(createdOffset: createdAt, contractID: try Self.require(row[3].string, "contract_id"))
            }
        }
    }
}
