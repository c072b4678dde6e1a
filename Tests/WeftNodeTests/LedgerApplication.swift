import Foundation
import Testing
import WeftTransport
import WeftWire

/// An application on one participant's Ledger API, as a real one is written against a node
/// that may die: it follows its completion stream and its parties' transaction stream,
/// resuming each after the last offset it saw whenever the connection breaks, and submits
/// commands with its own command ids, retrying a submission that failed without an answer
/// with the same id (the participant's deduplication makes that safe).
actor LedgerApplication {
    let port: Int
    let applicationID: String
    /// The parties its commands act as (the completion stream's filter).
    let actAs: [String]
    /// The parties whose transactions it follows.
    let readAs: [String]

    /// Every completion the stream delivered, in order (across reconnections).
    private(set) var completions: [Weft.V1.Completion] = []
    /// Every transaction the stream delivered, in order (across reconnections).
    private(set) var transactions: [Weft.V1.Transaction] = []
    /// Times a stream broke and was resumed, or a submission was retried.
    private(set) var reconnections = 0
    private(set) var retriedSubmissions = 0
    /// Waiters by command id (completions) or transaction id, each with a number so its
    /// timeout resumes only itself.
    private var completionWaiters: [String: [(Int, CheckedContinuation<Weft.V1.Completion?, Never>)]] = [:]
    private var transactionWaiters: [String: [(Int, CheckedContinuation<Weft.V1.Transaction?, Never>)]] = [:]
    private var nextWaiter = 0
    private var countWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    private var followers: [Task<Void, Never>] = []
    private var client: RPCClient?
    /// Counts the connections made, so a caller drops only the one that failed it.
    private var generation = 0

    init(port: Int, applicationID: String, actAs: [String], readAs: [String]) {
        self.port = port
        self.applicationID = applicationID
        self.actAs = actAs
        self.readAs = readAs
    }

    /// A connection to the participant, made again after a failure.
    private func connection() async throws -> (RPCClient, Int) {
        if let client { return (client, generation) }
        // One connection attempt at a time: the callers waiting meanwhile share its result.
        if let connecting { return try await connecting.value }
        let port = self.port
        let attempt = Task { try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext) }
        let task = Task { () throws -> (RPCClient, Int) in
            let client = try await attempt.value
            return (client, self.connected(client))
        }
        connecting = task
        defer { connecting = nil }
        return try await task.value
    }

    private var connecting: Task<(RPCClient, Int), any Error>?

    private func connected(_ client: RPCClient) -> Int {
        generation += 1
        self.client = client
        return generation
    }

    private func dropConnection(_ broken: Int?) async {
        guard let broken, broken == generation, let client else { return }
        self.client = nil
        await client.close()
    }

    /// Starts following the completion and transaction streams.
    func follow() {
        followers.append(Task { await self.followCompletions() })
        followers.append(Task { await self.followTransactions() })
    }

    func stop() async {
        for follower in followers { follower.cancel() }
        followers = []
        if let client { await client.close() }
        client = nil
    }

    private func followCompletions() async {
        while !Task.isCancelled {
            var used: Int?
            do {
                let (client, number) = try await connection()
                used = number
                let stream = try client.completion.completionStream(
                    .init(applicationID: applicationID, parties: actAs, beginExclusive: completions.last?.offset ?? 0))
                for try await response in stream {
                    if let completion = response.completion { received(completion) }
                }
            } catch {}
            await dropConnection(used)
            if Task.isCancelled { return }
            reconnections += 1
            // The participant is down or restarting: try again shortly, as an application does.
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    private func followTransactions() async {
        while !Task.isCancelled {
            var used: Int?
            do {
                let (client, number) = try await connection()
                used = number
                let stream = try client.transaction.getTransactions(
                    .init(beginExclusive: transactions.last?.offset ?? 0, filter: .init(parties: readAs)))
                for try await response in stream {
                    if let transaction = response.transaction { received(transaction) }
                }
            } catch {}
            await dropConnection(used)
            if Task.isCancelled { return }
            reconnections += 1
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    private func received(_ completion: Weft.V1.Completion) {
        completions.append(completion)
        for (_, continuation) in completionWaiters.removeValue(forKey: completion.commandID) ?? [] { continuation.resume(returning: completion) }
        let count = completions.count
        countWaiters.removeAll { waiter in
            guard waiter.0 <= count else { return false }
            waiter.1.resume()
            return true
        }
    }

    private func received(_ transaction: Weft.V1.Transaction) {
        transactions.append(transaction)
        for (_, continuation) in transactionWaiters.removeValue(forKey: transaction.transactionID) ?? [] {
            continuation.resume(returning: transaction)
        }
    }

    /// Returns once the completion stream has delivered `count` completions.
    func waitForCompletions(_ count: Int) async {
        if completions.count >= count { return }
        await withCheckedContinuation { countWaiters.append((count, $0)) }
    }

    /// The first completion of `commandID` when the stream delivers it; nil if none within `limit`.
    func completion(of commandID: String, within limit: Duration) async -> Weft.V1.Completion? {
        if let completion = completions.first(where: { $0.commandID == commandID }) { return completion }
        let number = nextWaiter
        nextWaiter += 1
        Task {
            try? await Task.sleep(for: limit)
            self.completionTimedOut(commandID, number)
        }
        return await withCheckedContinuation { completionWaiters[commandID, default: []].append((number, $0)) }
    }

    private func completionTimedOut(_ commandID: String, _ number: Int) {
        guard let index = completionWaiters[commandID]?.firstIndex(where: { $0.0 == number }) else { return }
        completionWaiters[commandID]?.remove(at: index).1.resume(returning: nil)
    }

    /// Transaction `id` of the followed parties when the stream delivers it; nil if not within `limit`.
    func transaction(_ id: String, within limit: Duration) async -> Weft.V1.Transaction? {
        if let transaction = transactions.first(where: { $0.transactionID == id }) { return transaction }
        let number = nextWaiter
        nextWaiter += 1
        Task {
            try? await Task.sleep(for: limit)
            self.transactionTimedOut(id, number)
        }
        return await withCheckedContinuation { transactionWaiters[id, default: []].append((number, $0)) }
    }

    private func transactionTimedOut(_ id: String, _ number: Int) {
        guard let index = transactionWaiters[id]?.firstIndex(where: { $0.0 == number }) else { return }
        transactionWaiters[id]?.remove(at: index).1.resume(returning: nil)
    }

    /// Submits `commands` until the participant answers: accepted, or a duplicate of an earlier
    /// attempt that reached it (ALREADY_EXISTS). Either way the outcome arrives on the
    /// completion stream. Any other refusal is thrown.
    func submit(_ command: Weft.V1.Command, id: String) async throws {
        let commands = Weft.V1.Commands(commandID: id, applicationID: applicationID, actAs: actAs, commands: [command])
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            var used: Int?
            do {
                let (client, number) = try await connection()
                used = number
                _ = try await client.command.submit(.init(commands: commands), timeout: .seconds(30))
                return
            } catch let error as RPCError where error.code == .alreadyExists {
                return
            } catch let error as RPCError where ![.unavailable, .unknown, .cancelled, .deadlineExceeded].contains(error.code) {
                throw error
            } catch {
                if ContinuousClock.now > deadline { throw TestError("command \(id) could not be submitted for 60 s: \(error)") }
            }
            await dropConnection(used)
            retriedSubmissions += 1
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// What the participant stores now, read afresh: the completions from the beginning (as
    /// many as `count`), the transactions up to the ledger end, and the active contracts.
    func reread(completionCount count: Int) async throws -> (
        completions: [Weft.V1.Completion], transactions: [Weft.V1.Transaction], active: [Weft.V1.CreatedEvent]
    ) {
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
        defer { Task { await client.close() } }
        var completions: [Weft.V1.Completion] = []
        if count > 0 {
            for try await response in try client.completion.completionStream(.init(applicationID: applicationID, parties: actAs)) {
                if let completion = response.completion { completions.append(completion) }
                if completions.count >= count { break }
            }
        }
        let end = try await client.transaction.getLedgerEnd(.init()).offset
        var transactions: [Weft.V1.Transaction] = []
        if end > 0 {
            for try await response in try client.transaction.getTransactions(.init(endInclusive: end, filter: .init(parties: readAs))) {
                if let transaction = response.transaction { transactions.append(transaction) }
            }
        }
        var active: [Weft.V1.CreatedEvent] = []
        for try await response in try client.activeContracts.getActiveContracts(.init(filter: .init(parties: readAs))) {
            active += response.activeContracts
        }
        return (completions, transactions, active)
    }
}

/// Ledger API commands for the IOU package (examples/packages/iou.weft), labelled fields.
struct IOUCommands: Sendable {
    let packageID: String

    var template: Weft.V1.TemplateId { .init(packageID: packageID, templateName: "Iou") }

    func issue(_ amount: String, from issuer: String, to owner: String) -> Weft.V1.Command {
        .init(
            kind: .create(
                .init(
                    templateID: template,
                    createArguments: .init(fields: [
                        .init(label: "issuer", value: .init(sum: .party(issuer))),
                        .init(label: "owner", value: .init(sum: .party(owner))),
                        .init(label: "currency", value: .init(sum: .text("USD"))),
                        .init(label: "amount", value: .init(sum: .decimal(amount))),
                    ]))))
    }

    func transfer(_ contract: String, to newOwner: String) -> Weft.V1.Command {
        .init(
            kind: .exercise(
                .init(
                    templateID: template, contractID: contract, choice: "Transfer",
                    choiceArgument: .init(sum: .record(.init(fields: [.init(label: "newOwner", value: .init(sum: .party(newOwner)))]))))))
    }
}

/// One IOU chain of the crash and replay tests: the bank issues alice an IOU, and — if it
/// committed — alice transfers it to bob once her participant has it.
struct IOUChain: Sendable {
    let iou: IOUCommands
    let aliceApp: LedgerApplication
    let bankApp: LedgerApplication
    let alice: String, bank: String, bob: String

    /// Runs chain `number`; returns the command ids submitted.
    func run(_ number: Int) async throws -> [String] {
        let issueID = "issue-\(number)"
        try await bankApp.submit(iou.issue("\(number + 1)", from: bank, to: alice), id: issueID)
        let issued = try await Self.outcome(bankApp, issueID)
        guard issued.status?.code == 0 else { return [issueID] }
        guard let transaction = await aliceApp.transaction(issued.transactionID, within: .seconds(60)) else {
            throw TestError("issue \(number)'s transaction \(issued.transactionID) did not reach participant1's stream within 60 s")
        }
        guard case .created(let created)? = transaction.events.first?.kind, transaction.events.count == 1 else {
            throw TestError("issue \(number)'s transaction on participant1: \(transaction)")
        }
        let transferID = "transfer-\(number)"
        try await aliceApp.submit(iou.transfer(created.contractID, to: bob), id: transferID)
        _ = try await Self.outcome(aliceApp, transferID)
        return [issueID, transferID]
    }

    /// The completion of `id`, or a failure naming it if none arrives within a minute.
    static func outcome(_ app: LedgerApplication, _ id: String) async throws -> Weft.V1.Completion {
        guard let completion = await app.completion(of: id, within: .seconds(60)) else {
            throw TestError("no completion of \(id) within 60 s")
        }
        return completion
    }
}
