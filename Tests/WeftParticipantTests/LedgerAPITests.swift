import Foundation
import Testing
import WeftAuth
import WeftContracts
import WeftCrypto
@testable import WeftLedgerAPI
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

@_spi(Testing) import WeftParticipant

/// Publishes party hostings the way the harness onboards: a broadcast with the domain
/// manager's sequencer credentials (docs/ledger-api.md: the participant → domain manager path
/// does not exist yet).
struct ManagerBroadcastPublisher: PartyHostingPublisher {
    let harness: DomainHarness

    func publish(_ hosting: SignedTopologyTransaction) async throws {
        try await harness.broadcast([hosting.wire], messageID: "hosting-\(hosting.hash)")
    }
}

/// Stops `node`, then publishes a hosting as the domain manager: a participant that stops
/// while AllocateParty waits for the hosting to reach it (stopped first, so that it cannot
/// apply the hosting before it stops).
struct StopThenPublishPublisher: PartyHostingPublisher {
    let harness: DomainHarness
    let node: ParticipantNode

    func publish(_ hosting: SignedTopologyTransaction) async throws {
        await node.stop()
        try await ManagerBroadcastPublisher(harness: harness).publish(hosting)
    }
}

/// The Ledger API of one harness participant, served over TLS on loopback, and a client of it.
struct LedgerAPIEndpoint {
    let api: LedgerAPI
    let server: RPCServer
    let client: RPCClient
    let rootPEM: String

    /// Serves participant `index`'s Ledger API; with `guardian`, each call is authorized by its
    /// authorizer and audited as a node does it (`APIGuard`).
    /// `node`: participant `index` started again (`DomainHarness.restart`), instead of the harness's.
    static func start(
        _ harness: DomainHarness, _ index: Int, guardian: APIGuard? = nil, configuration: LedgerAPIConfiguration = .init(),
        node: ParticipantNode? = nil, publisher: (any PartyHostingPublisher)? = nil
    ) async throws -> LedgerAPIEndpoint {
        let ca = try CertificateAuthority.makeRoot(commonName: "ledger-api-ca")
        let certificate = try CertificateAuthority.issue(
            commonName: "participant", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
        let api = try await LedgerAPI.start(
            participant: node ?? harness.nodes[index], database: PostgresDatabase(url: harness.url),
            namespaceKey: harness.members[index].namespaceKey, publisher: publisher ?? ManagerBroadcastPublisher(harness: harness),
            configuration: configuration, authorizer: guardian?.authorizer ?? .open, logger: quietLogger("weft.test.ledger-api"))
        var router = RPCRouter()
        api.register(on: &router)
        guardian?.install(on: &router, adminPaths: [], auditedPaths: Set(LedgerAPI.methods.map(\.path)))
        let server = try await RPCServer.start(
            host: "127.0.0.1", port: 0,
            security: .tls(try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: certificate))),
            router: router, logger: quietLogger("weft.test.ledger-api-server"))
        let client = try await RPCClient.connect(
            host: "127.0.0.1", port: server.port,
            security: .tls(try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))))
        return LedgerAPIEndpoint(api: api, server: server, client: client, rootPEM: ca.certificatePEM)
    }

    func stop() async {
        await client.close()
        await server.close()
        await api.stop()
    }
}

/// Builds Ledger API commands for the IOU package, as an application would: labelled fields.
struct IOUCommands {
    let packageID: String

    var template: Weft.V1.TemplateId { .init(packageID: packageID, templateName: "Iou") }

    func issue(_ amount: String, from issuer: String, to owner: String) -> Weft.V1.Command {
        .init(
            kind: .create(
                .init(
                    templateID: template,
                    createArguments: .init(fields: [
                        .init(label: "owner", value: .init(sum: .party(owner))),
                        .init(label: "issuer", value: .init(sum: .party(issuer))),
                        .init(label: "amount", value: .init(sum: .decimal(amount))),
                        .init(label: "currency", value: .init(sum: .text("USD"))),
                    ]))))
    }

    func transfer(_ contract: String, to newOwner: String) -> Weft.V1.Command {
        .init(
            kind: .exercise(
                .init(
                    templateID: template, contractID: contract, choice: "Transfer",
                    choiceArgument: .init(
                        sum: .record(.init(fields: [.init(label: "newOwner", value: .init(sum: .party(newOwner)))]))))))
    }

    func commands(_ command: Weft.V1.Command, actAs: String, application: String, id: String) -> Weft.V1.Commands {
        .init(commandID: id, applicationID: application, actAs: [actAs], commands: [command])
    }
}

func rpcError(_ body: () async throws -> Void) async -> RPCError? {
    do {
        try await body()
        return nil
    } catch let error as RPCError {
        return error
    } catch {
        Issue.record("expected an RPCError, got \(error)")
        return nil
    }
}

/// The transaction trees `parties` see on `api`'s participant, up to offset `end`.
func trees(_ api: LedgerAPIEndpoint, parties: [String], end: UInt64) async throws -> [Weft.V1.TransactionTreeView] {
    var result: [Weft.V1.TransactionTreeView] = []
    for try await response in try api.client.transaction.getTransactionTrees(
        .init(beginExclusive: 0, endInclusive: end, filter: .init(parties: parties)))
    {
        result.append(try #require(response.transaction))
    }
    return result
}

/// The Ledger API end to end: two participants on a real domain (DomainHarness), each with its
/// Ledger API over TLS on loopback, used only through the generated client stubs.
@Suite(.timeLimit(.minutes(5))) struct LedgerAPITests {
    /// The active contracts are read as of one offset a page at a time (a participant with
    /// millions of contracts streamed them from one array of them all): a page read after a
    /// commit still shows the set as of the offset (a contract archived since is in it, one
    /// created since is not), the stream sends messages of the configured size with the offset
    /// in the last, and a prune past the offset fails the read rather than leave a contract out.
    @Test func theActiveContractsAreReadAPageAtATimeAsOfOneOffset() async throws {
        try await PostgresFixture.withFixture { fixture in
            let harness = try await DomainHarness.start(url: fixture.url)
            let api2 = try await LedgerAPIEndpoint.start(harness, 1, configuration: .init(activeContractsPerMessage: 2))
            let (bob, bank) = (harness.bob.id, harness.bank.id)
            let packageID = try #require(try await api2.client.packageManagement.listPackages(.init()).packages.first).packageID
            let iou = IOUCommands(packageID: packageID)
            for number in 1...25 {
                _ = try await api2.client.command.submitAndWait(
                    .init(commands: iou.commands(iou.issue("\(number).00", from: bank, to: bob), actAs: bank, application: "bank-app", id: "issue-\(number)")))
            }
            try await harness.p2.waitForLedgerEnd(25)

            // Through the Ledger API: 25 contracts in messages of 2 (the participant read them in
            // pages of 20), oldest first, the offset only in the last message.
            var messages: [Weft.V1.GetActiveContractsResponse] = []
            for try await response in try api2.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [bank]))) {
                messages.append(response)
            }
            #expect(messages.count == 13 && messages.allSatisfy { $0.activeContracts.count <= 2 })
            #expect(messages.dropLast().allSatisfy { $0.offset == 0 } && messages.last?.offset == 25)
            let streamed = messages.flatMap(\.activeContracts)
            #expect(streamed.count == 25)
            #expect(streamed.map { Int($0.eventID.split(separator: ":")[0])! } == Array(1...25), "oldest first, each once")

            // The packages are read from the store once, not again for every stream and page
            // while none is uploaded (a following stream read them per transaction).
            let reloads = await api2.api.packages.reloads
            for try await _ in try api2.client.transaction.getTransactions(
                .init(beginExclusive: 0, endInclusive: 25, filter: .init(parties: [bank]))) {}
            for try await _ in try api2.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [bank]))) {}
            #expect(await api2.api.packages.reloads == reloads, "no package uploaded since")

            // Pages as of offset 25 while the ledger moves on: the first page, then bob transfers
            // the newest IOU (archived at 26, its successor created at 26) …
            let p2 = harness.p2
            let first = try await p2.activeContracts(of: [harness.bank], at: 25, after: nil, limit: 20)
            #expect(first.contracts.count == 20)
            let newest = try #require(streamed.last)
            _ = try await api2.client.command.submitAndWait(
                .init(commands: iou.commands(iou.transfer(newest.contractID, to: bank), actAs: bob, application: "bob-app", id: "transfer-1")))
            try await p2.waitForLedgerEnd(26)
            // … and the second page still has it, and not its successor.
            let second = try await p2.activeContracts(of: [harness.bank], at: 25, after: first.next, limit: 20)
            #expect(second.next == nil)
            #expect(second.contracts.map(\.contract.id.description) == streamed.suffix(5).map(\.contractID))
            let now = try await p2.activeContracts(of: [harness.bank])
            #expect(now.offset == 26 && now.contracts.count == 25 && !now.contracts.contains { $0.contract.id.description == newest.contractID })

            // A prune past 25 deletes what was archived up to it: reading on as of 25 is refused.
            _ = try await p2.prune(upTo: 26, ignoreCommitments: true)
            await #expect {
                _ = try await p2.activeContracts(of: [harness.bank], at: 25, after: first.next, limit: 20)
            } throws: { error in
                if case .activeContractsPruned(25, 26)? = error as? ParticipantError { true } else { false }
            }

            // Contracts a repair imported all have creation offset 0 (here the oldest 12, made so):
            // they come a page at a time too, by id, before the others. Before, the first page
            // held the whole group, whatever the limit.
            _ = try PostgresConnection(url: fixture.url).execute(
                "UPDATE participant_contracts SET created_offset = 0 WHERE participant = $1 AND created_offset <= 12",
                [.text(p2.identity.id.description)])
            let end = try await p2.activeContractsOffset()
            var pages: [[ActiveContract]] = []
            var cursor: ActiveContractPage.Cursor?
            repeat {
                let page = try await p2.activeContracts(of: [harness.bank], at: end, after: cursor, limit: 5)
                pages.append(page.contracts.map(\.contract))
                cursor = page.next
            } while cursor != nil && pages.count < 20
            let read = pages.flatMap { $0 }
            #expect(pages.count >= 5 && pages.allSatisfy { $0.count <= 5 }, "\(pages.map(\.count))")
            #expect(read.count == 25 && Set(read.map(\.id)).count == 25, "each once")
            let repaired = read.prefix(12)
            #expect(repaired.allSatisfy { $0.createdAt == 0 } && read.dropFirst(12).allSatisfy { $0.createdAt > 12 })
            #expect(repaired.map(\.id.description) == repaired.map(\.id.description).sorted(), "the group in id order")

            // A transaction stored but not yet applied in memory (the write-behind's commit has
            // returned, `apply` not yet resumed): the set's offset stays at the ledger end that
            // streams are checked against, so reading on from it is not refused as after the end.
            let me = PostgresValue.text(p2.identity.id.description)
            let stored = try PostgresConnection(url: fixture.url)
            _ = try stored.execute(
                "INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts) VALUES ($1, $2, 'not-yet-applied', 1)",
                [me, .int64(await p2.ledgerEndOffset + 1)])
            let offset = try await p2.activeContractsOffset()
            let ledgerEnd = await p2.ledgerEndOffset
            #expect(offset == ledgerEnd, "\(offset) against the ledger end \(ledgerEnd)")
            _ = try stored.execute("DELETE FROM participant_transactions WHERE participant = $1 AND transaction_id = 'not-yet-applied'", [me])
            await api2.stop()
            await harness.stop()
        }
    }

    @Test func anApplicationIssuesAndTransfersAnIOUThroughTheLedgerAPI() async throws {
        try await PostgresFixture.withFixture { fixture in
            let harness = try await DomainHarness.start(url: fixture.url)
            let api1 = try await LedgerAPIEndpoint.start(harness, 0)
            let api2 = try await LedgerAPIEndpoint.start(harness, 1)
            let (alice, bob, bank) = (harness.alice.id, harness.bob.id, harness.bank.id)

            // Packages: the harness uploaded the IOU package; an upload of the same source is
            // the same package.
            let listed = try await api2.client.packageManagement.listPackages(.init())
            #expect(listed.packages.map(\.templateNames) == [["Iou"]])
            let packageID = try #require(listed.packages.first).packageID
            let uploaded = try await api2.client.packageManagement.uploadPackage(
                .init(source: harness.iouSource, fileName: "iou.weft"))
            #expect(uploaded.packageID == packageID)
            let iou = IOUCommands(packageID: packageID)

            // Alice's transaction stream follows the ledger from its beginning.
            let aliceStream = try api1.client.transaction.getTransactions(.init(filter: .init(parties: [alice])))
            let aliceReader = Task { () throws -> [Weft.V1.Transaction] in
                var seen: [Weft.V1.Transaction] = []
                for try await response in aliceStream {
                    seen.append(try #require(response.transaction))
                    if seen.count == 2 { break }
                }
                return seen
            }

            // The bank issues an IOU to alice and waits for the transaction.
            let issued = try await api2.client.command.submitAndWait(
                .init(commands: iou.commands(iou.issue("100.00", from: bank, to: alice), actAs: bank, application: "bank-app", id: "issue-1")))
            #expect(issued.transactionID.count == 64)
            #expect(issued.offset == 1)

            // Alice sees the IOU in her active contracts once participant1 has committed it.
            try await harness.p1.waitForLedgerEnd(1)
            var acs: [Weft.V1.GetActiveContractsResponse] = []
            for try await response in try api1.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [alice]))) {
                acs.append(response)
            }
            let contracts = acs.flatMap(\.activeContracts)
            #expect(contracts.count == 1)
            #expect(acs.last?.offset == 1)
            let contract = try #require(contracts.first)
            #expect(contract.signatories == [bank] && contract.observers == [alice] && contract.witnessParties == [alice])
            #expect(contract.createArguments?.fields.map(\.label) == ["issuer", "owner", "currency", "amount"])

            // Alice transfers it to bob asynchronously; the completion stream reports it.
            let completions = try api1.client.completion.completionStream(.init(applicationID: "alice-app", parties: [alice]))
            let submitted = try await api1.client.command.submit(
                .init(commands: iou.commands(iou.transfer(contract.contractID, to: bob), actAs: alice, application: "alice-app", id: "transfer-1")))
            #expect(!submitted.submissionID.isEmpty)
            var completion: Weft.V1.Completion?
            for try await response in completions {
                completion = response.completion
                break
            }
            let transferred = try #require(completion)
            #expect(transferred.status?.code == 0)
            #expect(transferred.commandID == "transfer-1" && transferred.actAs == [alice])
            #expect(transferred.submissionID == submitted.submissionID)
            #expect(transferred.transactionID.count == 64)
            #expect(transferred.offset == 1)

            // Alice's projection: the IOU created, then archived.
            let aliceTransactions = try await aliceReader.value
            #expect(aliceTransactions.map(\.transactionID) == [issued.transactionID, transferred.transactionID])
            #expect(aliceTransactions.map(\.offset) == [1, 2])
            guard case .created(let created)? = aliceTransactions.first?.events.first?.kind,
                case .archived(let archived)? = aliceTransactions.last?.events.first?.kind
            else {
                Issue.record("alice's transactions are not a create then an archive: \(aliceTransactions)")
                return
            }
            #expect(created.contractID == contract.contractID && archived.contractID == contract.contractID)
            #expect(aliceTransactions.last?.events.count == 1)
            #expect(aliceTransactions.last?.commandID == "transfer-1")

            // Bob's projection (participant2): only his new IOU. The bank's: both transactions.
            try await harness.p2.waitForLedgerEnd(2)
            let end = try await api2.client.transaction.getLedgerEnd(.init()).offset
            #expect(end == 2)
            var bobTransactions: [Weft.V1.Transaction] = []
            for try await response in try api2.client.transaction.getTransactions(
                .init(beginExclusive: 0, endInclusive: end, filter: .init(parties: [bob])))
            {
                bobTransactions.append(try #require(response.transaction))
            }
            #expect(bobTransactions.map(\.transactionID) == [transferred.transactionID])
            guard case .created(let bobIOU)? = bobTransactions.first?.events.first?.kind else {
                Issue.record("bob's transaction is not his new IOU: \(bobTransactions)")
                return
            }
            #expect(bobTransactions.first?.events.count == 1)
            #expect(bobIOU.contractID != contract.contractID && bobIOU.observers == [bob] && bobIOU.witnessParties == [bob])
            var bankTransactions: [Weft.V1.Transaction] = []
            for try await response in try api2.client.transaction.getTransactions(
                .init(beginExclusive: 0, endInclusive: end, filter: .init(parties: [bank, bob])))
            {
                bankTransactions.append(try #require(response.transaction))
            }
            #expect(bankTransactions.map(\.transactionID) == [issued.transactionID, transferred.transactionID])
            // Both parties see bob's IOU; only the bank saw the archive on participant2.
            let lastEvents = bankTransactions.last?.events ?? []
            #expect(lastEvents.count == 2)
            if case .archived(let event)? = lastEvents.first?.kind { #expect(event.witnessParties == [bank]) } else {
                Issue.record("the bank's second transaction does not start with the archive: \(lastEvents)")
            }
            if case .created(let event)? = lastEvents.last?.kind {
                #expect(event.witnessParties == [bank, bob].sorted())
            } else {
                Issue.record("the bank's second transaction does not end with bob's IOU: \(lastEvents)")
            }

            // The same transactions as trees. On participant2 the bank witnesses the issue's
            // create, and in the transfer alice's exercise (the bank signs the IOU) with its
            // consequence, bob's IOU, which bob witnesses too.
            let bankTrees = try await trees(api2, parties: [bank, bob], end: end)
            #expect(bankTrees.map(\.transactionID) == [issued.transactionID, transferred.transactionID])
            #expect(bankTrees.map(\.offset) == [1, 2])
            let transferTree = try #require(bankTrees.last)
            guard transferTree.events.count == 2, case .exercised(let exercise)? = transferTree.events[0].kind,
                case .created(let consequence)? = transferTree.events[1].kind
            else {
                Issue.record("the transfer's tree is not an exercise with one create: \(transferTree)")
                return
            }
            #expect(transferTree.rootEventIDs == [exercise.eventID])
            #expect(exercise.choice == "Transfer" && exercise.consuming && exercise.actingParties == [alice])
            #expect(exercise.contractID == contract.contractID && exercise.witnessParties == [bank])
            #expect(exercise.childEventIDs == [consequence.eventID])
            if case .record(let argument)? = exercise.choiceArgument?.sum {
                #expect(argument.fields.map(\.label) == ["newOwner"])
                #expect(argument.fields.first?.value?.sum == .party(bob))
            } else {
                Issue.record("the choice argument is not a record: \(String(describing: exercise.choiceArgument))")
            }
            #expect(exercise.exerciseResult?.sum == .contractID(bobIOU.contractID))
            #expect(consequence.contractID == bobIOU.contractID && consequence.witnessParties == [bank, bob].sorted())
            #expect(exercise.eventID.hasPrefix(transferred.transactionID + ":"))
            // Flat events carry the ids of the tree's nodes: bob's IOU its create, alice's archive
            // the consuming exercise.
            #expect(bobIOU.eventID == consequence.eventID)
            #expect(archived.eventID == exercise.eventID)
            // Bob alone is no informee of the exercise: his tree is the create, as a root.
            let bobTrees = try await trees(api2, parties: [bob], end: end)
            #expect(bobTrees.map(\.transactionID) == [transferred.transactionID])
            #expect(bobTrees.first?.rootEventIDs == [consequence.eventID])
            // Alice on participant1 sees the exercise (she acted) but not bob's IOU; the event has
            // the same id there: event ids name the node, whoever sees it.
            let aliceTrees = try await trees(api1, parties: [alice], end: 2)
            #expect(aliceTrees.map(\.transactionID) == [issued.transactionID, transferred.transactionID])
            guard case .exercised(let aliceExercise)? = aliceTrees.last?.events.first?.kind else {
                Issue.record("alice's transfer tree has no exercise: \(aliceTrees)")
                return
            }
            #expect(aliceTrees.last?.events.count == 1)
            #expect(aliceExercise.eventID == exercise.eventID && aliceExercise.childEventIDs.isEmpty)
            #expect(aliceExercise.witnessParties == [alice])

            // Several parties' active contracts: bob's IOU once, seen by both; a template filter
            // that names another template leaves nothing.
            var shared: [Weft.V1.GetActiveContractsResponse] = []
            for try await response in try api2.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [bob, bank]))) {
                shared.append(response)
            }
            #expect(shared.flatMap(\.activeContracts).map(\.contractID) == [bobIOU.contractID])
            #expect(shared.flatMap(\.activeContracts).first?.witnessParties == [bank, bob].sorted())
            #expect(shared.last?.offset == 2)
            var filtered: [Weft.V1.CreatedEvent] = []
            for try await response in try api2.client.activeContracts.getActiveContracts(
                .init(filter: .init(parties: [bob], templateIDs: [.init(packageID: packageID, templateName: "Other")])))
            {
                filtered += response.activeContracts
            }
            #expect(filtered.isEmpty)

            // The same command id again: ALREADY_EXISTS, with the first submission's outcome.
            let duplicate = await rpcError {
                _ = try await api1.client.command.submitAndWait(
                    .init(commands: iou.commands(iou.transfer(contract.contractID, to: bob), actAs: alice, application: "alice-app", id: "transfer-1")))
            }
            #expect(duplicate?.code == .alreadyExists)
            #expect(duplicate?.errorID == "LEDGER_API_DUPLICATE_COMMAND")
            #expect(duplicate?.message.contains(transferred.transactionID) == true)

            // The completion stream resumes from an offset: from 0 it replays the transfer
            // (stored); from 1 it waits for the next completion and delivers it live.
            var replayed: Weft.V1.Completion?
            for try await response in try api1.client.completion.completionStream(
                .init(applicationID: "alice-app", parties: [alice], beginExclusive: 0))
            {
                replayed = response.completion
                break
            }
            #expect(replayed == transferred)
            let resumed = try api1.client.completion.completionStream(
                .init(applicationID: "alice-app", parties: [alice], beginExclusive: 1))
            let own = try await api1.client.command.submitAndWait(
                .init(commands: iou.commands(iou.issue("5", from: alice, to: alice), actAs: alice, application: "alice-app", id: "own-1")))
            var next: Weft.V1.Completion?
            for try await response in resumed {
                next = response.completion
                break
            }
            #expect(next?.offset == 2 && next?.commandID == "own-1" && next?.transactionID == own.transactionID)

            await api1.stop()
            await api2.stop()
            await harness.stop()
        }
    }

    @Test func refusalsCarryCodesAndIdsAndObserversReadButNeverSubmit() async throws {
        try await PostgresFixture.withFixture { fixture in
            let harness = try await DomainHarness.start(url: fixture.url)
            let api1 = try await LedgerAPIEndpoint.start(harness, 0)
            let api2 = try await LedgerAPIEndpoint.start(harness, 1)
            let (alice, bob, bank, carol) = (harness.alice.id, harness.bob.id, harness.bank.id, harness.carol.id)
            let packageID = try await api2.client.packageManagement.listPackages(.init()).packages.first?.packageID ?? ""
            let iou = IOUCommands(packageID: packageID)

            // Carol is hosted on participant1 with observation permission only.
            let observer = await rpcError {
                _ = try await api1.client.command.submitAndWait(
                    .init(commands: iou.commands(iou.issue("1", from: carol, to: carol), actAs: carol, application: "app", id: "c-1")))
            }
            #expect(observer?.code == .permissionDenied)
            #expect(observer?.errorID == "LEDGER_API_PARTY_NOT_HOSTED_FOR_SUBMISSION")
            #expect(observer?.message.contains("observation") == true)
            // Bob is not hosted on participant1 at all.
            let foreign = await rpcError {
                _ = try await api1.client.command.submit(
                    .init(commands: iou.commands(iou.issue("1", from: bob, to: bob), actAs: bob, application: "app", id: "b-1")))
            }
            #expect(foreign?.code == .permissionDenied)
            // Reading a party participant1 does not host: NOT_FOUND; a malformed one: INVALID_ARGUMENT.
            let unknown = await rpcError {
                for try await _ in try api1.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [bob]))) {}
            }
            #expect(unknown?.code == .notFound && unknown?.errorID == "LEDGER_API_PARTY_NOT_HOSTED")
            let malformed = await rpcError {
                for try await _ in try api1.client.transaction.getTransactions(.init(filter: .init(parties: ["not a party"]))) {}
            }
            #expect(malformed?.code == .invalidArgument && malformed?.errorID == "LEDGER_API_INVALID_ARGUMENT")
            // An unknown field of the template, and a package that is not there.
            var badField = iou.issue("1", from: bank, to: alice)
            if case .create(var create)? = badField.kind {
                create.createArguments?.fields[0].label = "ownr"
                badField.kind = .create(create)
            }
            let field = await rpcError {
                _ = try await api2.client.command.submitAndWait(
                    .init(commands: iou.commands(badField, actAs: bank, application: "bank-app", id: "bad-1")))
            }
            #expect(field?.code == .invalidArgument && field?.message.contains("ownr") == true)
            let missing = await rpcError {
                _ = try await api2.client.command.submitAndWait(
                    .init(commands: iou.commands(
                        IOUCommands(packageID: String(repeating: "ab", count: 32)).issue("1", from: bank, to: alice), actAs: bank,
                        application: "bank-app", id: "bad-2")))
            }
            #expect(missing?.code == .notFound && missing?.errorID == "LEDGER_API_UNKNOWN_TEMPLATE")
            // An IOU of a negative amount does not interpret (ensure).
            let negative = await rpcError {
                _ = try await api2.client.command.submitAndWait(
                    .init(commands: iou.commands(iou.issue("-5", from: bank, to: alice), actAs: bank, application: "bank-app", id: "bad-3")))
            }
            #expect(negative?.code == .invalidArgument && negative?.errorID == "LEDGER_API_INTERPRETATION_FAILED")
            // A package that does not parse.
            let package = await rpcError {
                _ = try await api2.client.packageManagement.uploadPackage(.init(source: "package broken; template {", fileName: "broken.weft"))
            }
            #expect(package?.code == .invalidArgument && package?.errorID == "LEDGER_API_INVALID_PACKAGE")
            #expect(package?.message.contains("broken.weft") == true)
            // Trees, like flat transactions, only for parties hosted here, and in a valid range.
            let foreignTrees = await rpcError {
                for try await _ in try api1.client.transaction.getTransactionTrees(.init(filter: .init(parties: [bob]))) {}
            }
            #expect(foreignTrees?.code == .notFound)
            let backwards = await rpcError {
                for try await _ in try api1.client.transaction.getTransactionTrees(
                    .init(beginExclusive: 5, endInclusive: 3, filter: .init(parties: [alice]))) {}
            }
            #expect(backwards?.code == .invalidArgument && backwards?.message.contains("end_inclusive") == true)
            // A stream from an offset this participant has not reached (another participant's,
            // or the other sequence's): OUT_OF_RANGE at once, not a wait that skips what is there.
            let aheadOfLedger = await rpcError {
                for try await _ in try api1.client.transaction.getTransactions(
                    .init(beginExclusive: 1_000, filter: .init(parties: [alice]))) {}
            }
            #expect(aheadOfLedger?.code == .outOfRange && aheadOfLedger?.errorID == "LEDGER_API_OFFSET_AFTER_END")
            #expect(aheadOfLedger?.message.contains("ledger end (0)") == true)
            let aheadOfTrees = await rpcError {
                for try await _ in try api1.client.transaction.getTransactionTrees(
                    .init(beginExclusive: 1_000, filter: .init(parties: [alice]))) {}
            }
            #expect(aheadOfTrees?.code == .outOfRange)
            let aheadOfCompletions = await rpcError {
                for try await _ in try api1.client.completion.completionStream(
                    .init(applicationID: "app", parties: [alice], beginExclusive: 1_000)) {}
            }
            #expect(aheadOfCompletions?.code == .outOfRange && aheadOfCompletions?.errorID == "LEDGER_API_OFFSET_AFTER_END")

            // The bank issues an IOU to carol: participant1 observes it (carol's projection)
            // without confirming; participant2 hosts carol with submission permission.
            let issued = try await api2.client.command.submitAndWait(
                .init(commands: iou.commands(iou.issue("7", from: bank, to: carol), actAs: bank, application: "bank-app", id: "carol-1")))
            var carolOnP1: [Weft.V1.Transaction] = []
            for try await response in try api1.client.transaction.getTransactions(
                .init(beginExclusive: 0, endInclusive: 1, filter: .init(parties: [carol])))
            {
                carolOnP1.append(try #require(response.transaction))
            }
            #expect(carolOnP1.map(\.transactionID) == [issued.transactionID])
            #expect(carolOnP1.first?.commandID == "")  // only the submitting participant knows it

            // A new party, allocated on participant1 through topology, can submit at once.
            let allocated = try await api1.client.partyManagement.allocateParty(.init(partyIDHint: "dave", displayName: "Dave"))
            let dave = try #require(allocated.partyDetails).party
            #expect(dave.hasPrefix("dave::") && dave.hasSuffix(String(describing: harness.members[0].id.namespace)))
            let parties = try await api1.client.partyManagement.listKnownParties(.init()).partyDetails
            #expect(parties.contains { $0.party == dave && $0.displayName == "Dave" })
            let again = await rpcError { _ = try await api1.client.partyManagement.allocateParty(.init(partyIDHint: "dave")) }
            #expect(again?.code == .alreadyExists)
            let daveIOU = try await api1.client.command.submitAndWait(
                .init(commands: iou.commands(iou.issue("3", from: dave, to: dave), actAs: dave, application: "dave-app", id: "d-1")))
            #expect(daveIOU.transactionID.count == 64)

            await api1.stop()
            await api2.stop()
            await harness.stop()
        }
    }
}

/// The `weft` executable of this build run as a process, to its exit: its status and output.
struct WeftRun {
    let status: Int32
    let output: String
    let errors: String

    static var executable: URL {
        let beside = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("weft")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return repositoryRoot.appendingPathComponent(".build/debug/weft")
    }

    /// Runs `weft arguments…` off the concurrency pool (`TestSubprocess`).
    static func run(_ arguments: [String]) async throws -> WeftRun {
        let outcome = try await TestSubprocess.run([executable.path] + arguments)
        return WeftRun(status: outcome.status, output: outcome.output, errors: outcome.error)
    }

    /// The output's lines as JSON objects.
    var jsonLines: [[String: Any]] {
        output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

extension LedgerAPITests {
    @Test func theCLIAllocatesUploadsSubmitsAndReadsThroughTheLedgerAPI() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: WeftRun.executable.path), "build the weft executable first")
        try await PostgresFixture.withFixture { fixture in
            let harness = try await DomainHarness.start(url: fixture.url)
            let api1 = try await LedgerAPIEndpoint.start(harness, 0)
            let api2 = try await LedgerAPIEndpoint.start(harness, 1)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-cli-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            func remote(_ endpoint: LedgerAPIEndpoint, _ name: String) throws -> [String] {
                let path = directory.appendingPathComponent("\(name).pem").path
                try endpoint.rootPEM.write(toFile: path, atomically: true, encoding: .utf8)
                return ["--remote", "127.0.0.1:\(endpoint.server.port)", "--root-cert", path]
            }
            let (remote1, remote2) = (try remote(api1, "p1"), try remote(api2, "p2"))
            let (alice, bob, bank) = (harness.alice.id, harness.bob.id, harness.bank.id)

            // Upload (the same package again) and list.
            let file = repositoryRoot.appendingPathComponent("examples/packages/iou.weft").path
            let upload = try await WeftRun.run(["package", "upload", file, "--output", "json"] + remote2)
            #expect(upload.status == 0, "\(upload.errors)")
            let packageID = try #require(upload.jsonLines.first?["package_id"] as? String)
            let list = try await WeftRun.run(["package", "list", "--output", "json"] + remote2)
            #expect(list.jsonLines.map { $0["package_id"] as? String } == [packageID])

            // A new party through topology.
            let allocate = try await WeftRun.run(["party", "allocate", "erin", "--output", "json"] + remote2)
            #expect(allocate.status == 0, "\(allocate.errors)")
            #expect((allocate.jsonLines.first?["party"] as? String)?.hasPrefix("erin::") == true)

            // The bank issues an IOU to alice; alice lists it and transfers it to bob.
            let arguments = #"{"issuer": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "currency": "EUR", "amount": {"decimal": "12.5"}}"#
            let create = try await WeftRun.run(
                ["submit", "create", "--template", "Iou", "--act-as", bank, "--arguments", arguments, "--command-id", "cli-issue",
                 "--output", "json"] + remote2)
            #expect(create.status == 0, "\(create.errors)")
            let issueID = try #require(create.jsonLines.first?["transaction_id"] as? String)
            try await harness.p1.waitForLedgerEnd(1)
            let acs = try await WeftRun.run(["acs", "--party", alice, "--output", "json"] + remote1)
            #expect(acs.status == 0, "\(acs.errors)")
            let contract = try #require(acs.jsonLines.first)
            #expect((contract["arguments"] as? [String: Any])?["currency"] as? String == "EUR")
            let contractID = try #require(contract["contract_id"] as? String)
            let exercise = try await WeftRun.run(
                ["submit", "exercise", "--template", "\(packageID):Iou", "--contract", contractID, "--choice", "Transfer",
                 "--arguments", #"{"newOwner": {"party": "\#(bob)"}}"#, "--act-as", alice, "--output", "json"] + remote1)
            #expect(exercise.status == 0, "\(exercise.errors)")
            // The trace the CLI sent its calls under, to follow the transaction in the logs.
            #expect((exercise.jsonLines.first?["trace_id"] as? String)?.count == 32, "\(exercise.output)")
            let transactions = try await WeftRun.run(["transactions", "--party", alice, "--output", "json"] + remote1)
            #expect(transactions.jsonLines.map { $0["transaction_id"] as? String }
                == [issueID, exercise.jsonLines.first?["transaction_id"] as? String])
            let text = try await WeftRun.run(["transactions", "--party", alice] + remote1)
            #expect(text.output.contains("archived \(contractID)"))
            // As trees: alice's exercise of Transfer, by her, on the IOU.
            let trees = try await WeftRun.run(["transactions", "--tree", "--party", alice, "--output", "json"] + remote1)
            #expect(trees.status == 0, "\(trees.errors)")
            let transferTree = trees.jsonLines.last
            let treeEvents = transferTree?["events"] as? [[String: Any]] ?? []
            let exercised = treeEvents.first?["exercised"] as? [String: Any]
            #expect(exercised?["choice"] as? String == "Transfer" && exercised?["contract_id"] as? String == contractID)
            #expect(exercised?["acting_parties"] as? [String] == [alice])
            #expect(transferTree?["root_event_ids"] as? [String] == [exercised?["event_id"] as? String ?? "-"])
            let treeText = try await WeftRun.run(["transactions", "--tree", "--party", alice] + remote1)
            #expect(treeText.output.contains("exercised Transfer on \(contractID)"))

            // Bad arguments: the usage exit code. A refusal: exit 1 and the error id.
            let usage = try await WeftRun.run(["submit", "create", "--template", "Iou", "--arguments", "{}"] + remote1)
            #expect(usage.status == 64)
            let badJSON = try await WeftRun.run(
                ["submit", "create", "--template", "Iou", "--act-as", alice, "--arguments", "{\"amount\": 1.5}"] + remote1)
            #expect(badJSON.status == 64 && badJSON.errors.contains("decimal"))
            let refused = try await WeftRun.run(["acs", "--party", bob] + remote1)
            #expect(refused.status == 1 && refused.errors.contains("LEDGER_API_PARTY_NOT_HOSTED"))
            let tooLong = try await WeftRun.run(
                ["submit", "create", "--template", "Iou", "--act-as", alice, "--arguments", arguments,
                 "--deduplication-seconds", "10000000000000"] + remote1)
            #expect(tooLong.status == 64 && tooLong.errors.contains("0 to 86400"), "\(tooLong.errors)")
            // A failed submission names its command id, to retry under it.
            let notHosted = try await WeftRun.run(
                ["submit", "create", "--template", "Iou", "--act-as", bank, "--arguments", arguments] + remote1)
            #expect(notHosted.status == 1, "\(notHosted.errors)")
            #expect(notHosted.errors.contains("command id cli-") && notHosted.errors.contains("retry with --command-id cli-"), "\(notHosted.errors)")
            // An offset after this participant's end is an error, not an empty success.
            let afterEnd = try await WeftRun.run(["transactions", "--party", alice, "--from", "99"] + remote1)
            #expect(afterEnd.status == 1 && afterEnd.errors.contains("after the ledger end 2"), "\(afterEnd.errors)")
            // Nobody listening there: the connection's failure, with its id.
            let nobody = try await WeftRun.run(["ledger-end", "--remote", "127.0.0.1:1", "--root-cert", remote1[3]])
            #expect(nobody.status == 1 && nobody.errors.contains("RPC_CONNECTION_FAILED"), "\(nobody.errors)")

            await api1.stop()
            await api2.stop()
            await harness.stop()
        }
    }
}

/// Explicit disclosure through the Ledger API: a DvP seller settles with the buyer's cash, which
/// only the buyer's and the bank's participants store, handed over as the buyer's participant
/// gave it out (`created_event_blob`); a blob that does not prove its contract is refused.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct LedgerAPIDisclosureTests {
        @Test func aSellerSettlesWithTheBuyersCashDisclosedToIt() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let apis = [
                    try await LedgerAPIEndpoint.start(harness, 0), try await LedgerAPIEndpoint.start(harness, 1),
                    try await LedgerAPIEndpoint.start(harness, 2),
                ]
                let (alice, bob) = (harness.alice.id, harness.bob.id)
                let depository = try #require(harness.extraParties["depository"]).id
                let source = try exampleSource("dvp.weft")
                var packageID = ""
                for api in apis {
                    packageID = try await api.client.packageManagement.uploadPackage(.init(source: source, fileName: "dvp.weft")).packageID
                }
                func template(_ name: String) -> Weft.V1.TemplateId { .init(packageID: packageID, templateName: name) }
                func field(_ label: String, _ value: Weft.V1.Value.Sum) -> Weft.V1.RecordField {
                    .init(label: label, value: .init(sum: value))
                }
                func create(_ name: String, _ fields: [Weft.V1.RecordField], actAs: String, id: String, on api: LedgerAPIEndpoint)
                    async throws
                {
                    _ = try await api.client.command.submitAndWait(
                        .init(commands: .init(
                            commandID: id, applicationID: "app", actAs: [actAs],
                            commands: [.init(kind: .create(.init(templateID: template(name), createArguments: .init(fields: fields))))])))
                }
                func contracts(_ party: String, _ name: String, on api: LedgerAPIEndpoint) async throws -> [Weft.V1.CreatedEvent] {
                    var result: [Weft.V1.CreatedEvent] = []
                    for try await response in try api.client.activeContracts.getActiveContracts(.init(filter: .init(parties: [party]))) {
                        result += response.activeContracts.filter { $0.templateID?.templateName == name }
                    }
                    return result
                }
                try await create(
                    "Cash", [field("bank", .party(depository)), field("owner", .party(alice)), field("amount", .decimal("1000"))],
                    actAs: depository, id: "cash", on: apis[2])
                try await create(
                    "Security",
                    [field("custodian", .party(depository)), field("holder", .party(bob)), field("isin", .text("XS1")), field("quantity", .int64(10))],
                    actAs: depository, id: "security", on: apis[2])
                try await harness.p1.waitForLedgerEnd(1)
                try await harness.p2.waitForLedgerEnd(1)
                let cash = try #require(try await contracts(alice, "Cash", on: apis[0]).first)
                let security = try #require(try await contracts(bob, "Security", on: apis[1]).first)
                // The blob is the contract with its creation seed: stakeholders get it.
                let decoded = try Weft.V1.ContractInstance(serializedBytes: cash.createdEventBlob)
                #expect(decoded.contractID == cash.contractID && decoded.salt.count == 32)
                try await create(
                    "Offer",
                    [
                        field("buyer", .party(alice)), field("seller", .party(bob)), field("bank", .party(depository)),
                        field("custodian", .party(depository)), field("isin", .text("XS1")), field("quantity", .int64(10)),
                        field("price", .decimal("1000")), field("payment", .contractID(cash.contractID)),
                    ], actAs: alice, id: "offer", on: apis[0])
                try await harness.p2.waitForLedgerEnd(2)
                let offer = try #require(try await contracts(bob, "Offer", on: apis[1]).first)
                func settle(id: String, disclosing: [Weft.V1.DisclosedContract]) async throws -> Weft.V1.SubmitAndWaitResponse {
                    try await apis[1].client.command.submitAndWait(
                        .init(commands: .init(
                            commandID: id, applicationID: "seller-app", actAs: [bob],
                            commands: [
                                .init(kind: .exercise(.init(
                                    templateID: template("Offer"), contractID: offer.contractID, choice: "Settle",
                                    choiceArgument: .init(sum: .record(.init(fields: [field("delivery", .contractID(security.contractID))]))))))
                            ],
                            disclosedContracts: disclosing)))
                }
                // Bob's participant does not store the cash: without it the settle does not interpret.
                let unknown = await rpcError { _ = try await settle(id: "settle-0", disclosing: []) }
                #expect(unknown?.code == .invalidArgument && unknown?.errorID == "LEDGER_API_INTERPRETATION_FAILED", "\(String(describing: unknown))")
                #expect(unknown?.message.contains(cash.contractID) == true)
                // A blob whose data was changed no longer proves its id; one for another id is refused too.
                var forged = decoded
                forged.arguments?.fields[2].value = .init(sum: .decimal("1000000"))
                let forgedBlob = try forged.serializedBytes()
                let refused = await rpcError {
                    _ = try await settle(
                        id: "settle-1",
                        disclosing: [.init(templateID: cash.templateID, contractID: cash.contractID, createdEventBlob: forgedBlob)])
                }
                #expect(refused?.code == .invalidArgument && refused?.message.contains("does not hash to its id") == true, "\(String(describing: refused))")
                let mismatched = await rpcError {
                    _ = try await settle(
                        id: "settle-2",
                        disclosing: [.init(templateID: cash.templateID, contractID: security.contractID, createdEventBlob: cash.createdEventBlob)])
                }
                #expect(mismatched?.code == .invalidArgument && mismatched?.message.contains("contract_id") == true, "\(String(describing: mismatched))")
                // As alice's participant gave it out: the DvP settles; bob holds the cash, alice the security.
                let settled = try await settle(
                    id: "settle-3", disclosing: [.init(templateID: cash.templateID, contractID: cash.contractID, createdEventBlob: cash.createdEventBlob)])
                #expect(settled.transactionID.count == 64)
                let bobsCash = try await contracts(bob, "Cash", on: apis[1])
                #expect(bobsCash.count == 1 && bobsCash.first?.contractID != cash.contractID)
                try await harness.p1.waitForLedgerEnd(3)
                #expect(try await contracts(alice, "Security", on: apis[0]).count == 1)
                #expect(try await contracts(alice, "Cash", on: apis[0]).isEmpty)
                for api in apis { await api.stop() }
                await harness.stop()
            }
        }
    }
}

/// A submission the participant refuses before it records the command (here: its processing
/// has ended) completes on the completion stream, and completions arriving together each get an
/// offset of their own.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct CompletionLogTests {
        @Test func anAsyncSubmissionTheParticipantNeverRecordedCompletesAsLost() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let packageID = try await api.client.packageManagement.listPackages(.init()).packages[0].packageID
                await harness.p1.stop()
                let submitted = try await api.client.command.submit(
                    .init(commands: .init(
                        commandID: "refused-1", applicationID: "app", actAs: [harness.alice.id],
                        commands: [IOUCommands(packageID: packageID).issue("1", from: harness.alice.id, to: harness.alice.id)])))
                let client = api.client
                let completion = try await ParticipantNode.within(.seconds(20)) { () async throws -> Weft.V1.Completion? in
                    // The participant has stopped, so a stream opened before the completion is
                    // stored ends PARTICIPANT_STOPPED after its catch-up, as a following stream does
                    // then: the application reconnects, and the catch-up has it once it is stored.
                    while true {
                        do {
                            for try await response in try client.completion.completionStream(
                                .init(applicationID: "app", parties: [harness.alice.id], beginExclusive: 0))
                            {
                                return response.completion
                            }
                            return nil
                        } catch let error as RPCError where error.errorID == "PARTICIPANT_STOPPED" {
                            try await Task.sleep(for: .milliseconds(20))  // before reconnecting, as an application would
                        }
                    }
                } ?? nil
                #expect(completion?.commandID == "refused-1" && completion?.submissionID == submitted.submissionID)
                #expect(completion?.status?.errorID == "LEDGER_API_SUBMISSION_LOST", "\(String(describing: completion))")
                #expect(completion?.status?.message.contains("submit the command again") == true)
                await api.stop()
                await harness.stop()
            }
        }

        /// A SubmitAndWait whose submission the participant never recorded fails, and its
        /// completion-log row completes as lost at once: left in flight, it would complete as lost
        /// at the next start, after the application's retry of the command, maybe committed.
        @Test func aSubmitAndWaitTheParticipantNeverRecordedLeavesNothingInFlight() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let packageID = try await api.client.packageManagement.listPackages(.init()).packages[0].packageID
                await harness.p1.stop()
                let failed = await rpcError {
                    _ = try await api.client.command.submitAndWait(
                        .init(commands: .init(
                            commandID: "refused-wait", applicationID: "app", actAs: [harness.alice.id],
                            commands: [IOUCommands(packageID: packageID).issue("1", from: harness.alice.id, to: harness.alice.id)])))
                }
                #expect(failed?.code == .unavailable, "\(String(describing: failed))")
                let inFlight = try PostgresConnection(url: fixture.url).execute(
                    "SELECT count(*)::bigint FROM ledger_api_completions WHERE command_id = 'refused-wait' AND completion_offset IS NULL"
                ).rows.first?.first?.int64
                #expect(inFlight == 0)
                let lost = try PostgresConnection(url: fixture.url).execute(
                    "SELECT error_id FROM ledger_api_completions WHERE command_id = 'refused-wait'"
                ).rows.map { try $0[0].string ?? "" }
                #expect(lost == ["LEDGER_API_SUBMISSION_LOST"])
                await api.stop()
                await harness.stop()
            }
        }

        /// The offset after the log's last one taken already (a write whose commit's answer was
        /// lost, another log of this participant): later completions still get offsets of their
        /// own, and a live stream reads the one it was not handed.
        @Test func aTakenNextOffsetStopsNoCompletionAndOpensNoGapInALiveStream() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let alice = harness.alice
                func completion(_ number: Int) -> CommandCompletion {
                    CommandCompletion(
                        change: ChangeID(CommandKey(applicationID: "app", commandID: "taken-\(number)"), actAs: [alice]),
                        completion: .rejected(reasonID: "TEST", message: "completion \(number)"))
                }
                let client = api.client
                let (arrivals, arrived) = AsyncStream<Void>.makeStream()
                let reader = Task {
                    var commands: [String] = []
                    var offsets: [UInt64] = []
                    for try await response in try client.completion.completionStream(
                        .init(applicationID: "app", parties: [alice.id], beginExclusive: 0))
                    {
                        commands.append(response.completion?.commandID ?? "")
                        offsets.append(response.completion?.offset ?? 0)
                        arrived.yield()
                        if commands.count == 4 { break }
                    }
                    return (commands, offsets)
                }
                // Once the stream has the first completion it reads the store no more (its catch-up
                // page was short): a row stored behind the log's back is only found as a gap.
                await log.record(completion(1))
                _ = try await ParticipantNode.within(.seconds(20)) { await arrivals.first { _ in true } }
                _ = try PostgresConnection(url: fixture.url).execute(
                    """
                    INSERT INTO ledger_api_completions (participant, application_id, command_id, submission_id, act_as,
                        completion_offset, status_code, error_id, message, transaction_id)
                    VALUES ($1, 'app', 'taken-elsewhere', 'elsewhere', $2, 2, 10, 'TEST', 'stored elsewhere', '')
                    """, [.text(harness.members[0].id.description), .text(alice.id)])
                await log.record(completion(2))
                await log.record(completion(3))
                let read = try await ParticipantNode.within(.seconds(20)) {
                    try await withTaskCancellationHandler { try await reader.value } onCancel: { reader.cancel() }
                }
                #expect(read?.0 == ["taken-1", "taken-elsewhere", "taken-2", "taken-3"], "\(String(describing: read))")
                #expect(read?.1 == [1, 2, 3, 4])
                await api.stop()
                await harness.stop()
            }
        }

        /// A second completion of a submission already completed (which no write can store: the
        /// submission's row is taken) is dropped, not retried: the completions after it are
        /// stored at once.
        @Test func aSecondCompletionOfACompletedSubmissionHoldsUpNothing() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let key = ChangeID(CommandKey(applicationID: "app", commandID: "twice"), actAs: [harness.alice])
                try await log.submitted(key, submissionID: "s1")
                for message in ["first", "second"] {
                    await log.record(
                        CommandCompletion(change: key, completion: .rejected(reasonID: "TEST", message: message), submissionID: "s1"))
                }
                let next = CommandCompletion(
                    change: ChangeID(CommandKey(applicationID: "app", commandID: "after"), actAs: [harness.alice]), completion: .rejected(reasonID: "TEST", message: "after"))
                _ = try await ParticipantNode.within(.seconds(10)) { await log.record(next) }
                let stored = try await log.completions(after: 0, limit: 10)
                #expect(stored.map(\.commandID) == ["twice", "after"])
                #expect(stored.first?.status?.message == "first")
                await api.stop()
                await harness.stop()
            }
        }

        /// A completion whose write fails for a reason the database recovers from (here a trigger
        /// raises a serialization failure) is written again until it is stored, once, and the
        /// streams then have it.
        @Test func aCompletionWhoseWriteFailsIsStoredOnceTheDatabaseTakesItAgain() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let database = try PostgresConnection(url: fixture.url)
                // Sequences are not transactional: the attempts count survives their rollbacks.
                try database.executeScript(
                    """
                    CREATE TABLE test_refuse_completions (refuse boolean);
                    INSERT INTO test_refuse_completions VALUES (true);
                    CREATE SEQUENCE test_completion_attempts;
                    CREATE FUNCTION test_refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        PERFORM nextval('test_completion_attempts');
                        IF EXISTS (SELECT 1 FROM test_refuse_completions) THEN
                            RAISE EXCEPTION 'refused by the test' USING ERRCODE = '40001';
                        END IF;
                        RETURN NEW;
                    END $$;
                    CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE ON ledger_api_completions
                        FOR EACH ROW EXECUTE FUNCTION test_refuse_completion();
                    """)
                let recording = Task {
                    await log.record(
                        CommandCompletion(
                            change: ChangeID(CommandKey(applicationID: "app", commandID: "refused-write"), actAs: [harness.alice]),
                            completion: .rejected(reasonID: "TEST", message: "stored at last")))
                }
                try await eventually("the write was tried twice") {
                    try PostgresConnection(url: fixture.url).execute("SELECT last_value FROM test_completion_attempts")
                        .rows.first?.first?.int64 ?? 0 >= 2
                }
                _ = try database.execute("DELETE FROM test_refuse_completions")
                _ = try await ParticipantNode.within(.seconds(20)) { await recording.value }
                let stored = try await log.completions(after: 0, limit: 10)
                #expect(stored.map(\.commandID) == ["refused-write"])
                #expect(stored.first?.status?.message == "stored at last")
                await api.stop()
                await harness.stop()
            }
        }

        /// A transaction's command id is its submitting application's: the Ledger API shows it
        /// to readers of the parties the command acted as, not to another party of the same
        /// participant that the transaction concerns (here the bank issues bob an IOU; both are
        /// hosted on participant2).
        @Test func aCommandIDReachesOnlyReadersOfThePartiesItActedAs() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 1)
                let packageID = try await api.client.packageManagement.listPackages(.init()).packages[0].packageID
                let (bank, bob) = (harness.bank.id, harness.bob.id)
                let done = try await api.client.command.submitAndWait(
                    .init(commands: IOUCommands(packageID: packageID).commands(
                        IOUCommands(packageID: packageID).issue("42", from: bank, to: bob), actAs: bank, application: "bank-app",
                        id: "secret-42")))
                for (readers, expected) in [([bob], ""), ([bank], "secret-42"), ([bob, bank], "secret-42")] {
                    var flat: [String] = []
                    for try await response in try api.client.transaction.getTransactions(
                        .init(beginExclusive: 0, endInclusive: done.offset, filter: .init(parties: readers)))
                    {
                        if let transaction = response.transaction, transaction.transactionID == done.transactionID {
                            flat.append(transaction.commandID)
                        }
                    }
                    #expect(flat == [expected], "flat, read as \(readers)")
                    let tree = try await trees(api, parties: readers, end: done.offset).filter { $0.transactionID == done.transactionID }
                    #expect(tree.map(\.commandID) == [expected], "trees, read as \(readers)")
                }
                await api.stop()
                await harness.stop()
            }
        }

        /// A command id is deduplicated per application and act-as parties (ledger.proto): the
        /// same id acting for other parties is another command and commits; the same parties
        /// again are refused and told the first submission's outcome. A record from before the
        /// parties were part of the key (participant migration 16) refuses the id for any
        /// parties, but tells its outcome only to a caller acting for one of its parties: the id
        /// alone entitles nobody to it.
        @Test func aCommandIDIsDeduplicatedPerActAsParties() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 1)
                let packageID = try await api.client.packageManagement.listPackages(.init()).packages[0].packageID
                let iou = IOUCommands(packageID: packageID)
                let (bank, bob) = (harness.bank.id, harness.bob.id)
                func byBank() -> Weft.V1.Commands {
                    iou.commands(iou.issue("5", from: bank, to: bob), actAs: bank, application: "shared-app", id: "shared-id")
                }
                func byBob() -> Weft.V1.Commands {
                    iou.commands(iou.issue("5", from: bob, to: bob), actAs: bob, application: "shared-app", id: "shared-id")
                }
                let first = try await api.client.command.submitAndWait(.init(commands: byBank()))
                let bobs = try await api.client.command.submitAndWait(.init(commands: byBob()))
                #expect(bobs.transactionID != first.transactionID)
                let again = await rpcError { _ = try await api.client.command.submitAndWait(.init(commands: byBank())) }
                #expect(again?.code == .alreadyExists && again?.errorID == "LEDGER_API_DUPLICATE_COMMAND")
                #expect(again?.message.contains(first.transactionID) == true, "\(String(describing: again))")

                // The bank's record as one from before migration 16; bob's is gone with its period.
                let parties: [PostgresValue] = [.textArray([bank]), .textArray([bob])]
                _ = try await StoredSequencerEvent.query(fixture.url) { connection in
                    _ = try connection.execute(
                        """
                        UPDATE participant_commands SET act_as = '{}' WHERE command_id = 'shared-id' AND act_as = $1
                        """, [parties[0]])
                    _ = try connection.execute(
                        "DELETE FROM participant_commands WHERE command_id = 'shared-id' AND act_as = $1", [parties[1]])
                }
                let bobRefused = await rpcError { _ = try await api.client.command.submitAndWait(.init(commands: byBob())) }
                #expect(bobRefused?.code == .alreadyExists && bobRefused?.errorID == "LEDGER_API_DUPLICATE_COMMAND")
                #expect(bobRefused?.message.contains(first.transactionID) == false, "\(String(describing: bobRefused))")
                #expect(bobRefused?.message.contains("offset") == false)
                let bankRefused = await rpcError { _ = try await api.client.command.submitAndWait(.init(commands: byBank())) }
                #expect(bankRefused?.message.contains(first.transactionID) == true, "\(String(describing: bankRefused))")
                await api.stop()
                await harness.stop()
            }
        }

        /// AllocateParty waits for the hosting to reach the participant; a participant that
        /// stops meanwhile never applies it, and the call says so at once (UNAVAILABLE
        /// PARTICIPANT_STOPPED), not after the 30 s wait with a pointer to the domain manager.
        @Test func anAllocationWhoseParticipantStopsWhileItWaitsIsUnavailable() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(
                    harness, 0, configuration: .init(hostingTimeout: .seconds(20)),
                    publisher: StopThenPublishPublisher(harness: harness, node: harness.p1))
                let refused = await rpcError {
                    _ = try await api.client.partyManagement.allocateParty(.init(partyIDHint: "erin"))
                }
                #expect(refused?.code == .unavailable && refused?.errorID == "PARTICIPANT_STOPPED", "\(String(describing: refused))")
                await api.stop()
                await harness.stop()
            }
        }

        @Test func followingStreamsEndUnavailableWhenTheParticipantStops() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let alice = harness.alice.id
                let streams = [
                    try api.client.transaction.getTransactions(.init(filter: .init(parties: [alice]))),
                ]
                let trees = try api.client.transaction.getTransactionTrees(.init(filter: .init(parties: [alice])))
                let completions = try api.client.completion.completionStream(.init(applicationID: "app", parties: [alice]))
                // Each stream is open (its first read waits) before the participant stops.
                let readers: [Task<RPCError?, Never>] = [
                    Task { await rpcError { for try await _ in streams[0] {} } },
                    Task { await rpcError { for try await _ in trees {} } },
                    Task { await rpcError { for try await _ in completions {} } },
                ]
                _ = try await api.client.transaction.getLedgerEnd(.init())
                await harness.p1.stop()
                for reader in readers {
                    let ended = try await ParticipantNode.within(.seconds(20)) { await reader.value }
                    guard let error = ended ?? nil else {
                        Issue.record("a following stream did not end with an error once its participant stopped: \(String(describing: ended))")
                        reader.cancel()
                        continue
                    }
                    #expect(error.code == .unavailable, "\(error)")
                }
                await api.stop()
                await harness.stop()
            }
        }

        /// Two submissions of one command id that both passed the Ledger API's deduplication check
        /// (neither recorded yet) both have rows; each completion completes its own submission.
        @Test func eachCompletionCompletesTheSubmissionItNames() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let key = ChangeID(CommandKey(applicationID: "app", commandID: "raced"), actAs: [harness.alice])
                try await log.submitted(key, submissionID: "s1")
                try await log.submitted(key, submissionID: "s2")
                // s2 lost the race at the participant (a duplicate), then s1 completed.
                await log.record(
                    CommandCompletion(
                        change: key, completion: .rejected(reasonID: "SECOND", message: "the duplicate"), submissionID: "s2"))
                await log.record(
                    CommandCompletion(
                        change: key, completion: .rejected(reasonID: "FIRST", message: "the first one's outcome"), submissionID: "s1"))
                let client = api.client
                let completions: [Weft.V1.Completion] = try await ParticipantNode.within(.seconds(20)) {
                    var completions: [Weft.V1.Completion] = []
                    for try await response in try client.completion.completionStream(
                        .init(applicationID: "app", parties: [harness.alice.id], beginExclusive: 0))
                    {
                        if let completion = response.completion { completions.append(completion) }
                        if completions.count == 2 { break }
                    }
                    return completions
                } ?? []
                #expect(completions.map(\.submissionID) == ["s2", "s1"])
                #expect(completions.map { $0.status?.errorID ?? "" } == ["SECOND", "FIRST"])
                await api.stop()
                await harness.stop()
            }
        }

        /// GetTransactions reads a page of each party's transactions at a time: a stream from an
        /// early offset holds a page in memory, not the ledger. Paged, two parties whose
        /// transactions interleave get what one read of everything gives.
        @Test func transactionsStreamPageByPageForSeveralParties() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                // The bank issues to bob (both see it on participant2) and to alice (the bank alone).
                for number in 0..<7 {
                    let owner = number % 2 == 0 ? harness.bob : harness.alice
                    let completion = try await harness.p2.submit(
                        [try harness.issue("\(number + 1)", to: owner)], actAs: [harness.bank],
                        command: CommandKey(applicationID: "bank-app", commandID: "page-\(number)"))
                    guard case .succeeded = completion else {
                        Issue.record("issue \(number) failed: \(completion)")
                        return
                    }
                }
                let whole = try await LedgerAPIEndpoint.start(harness, 1)
                let paged = try await LedgerAPIEndpoint.start(harness, 1, configuration: .init(completionsPerQuery: 2))
                let end = try await whole.client.transaction.getLedgerEnd(.init()).offset
                #expect(end == 7)
                func transactions(_ api: LedgerAPIEndpoint) async throws -> [Weft.V1.Transaction] {
                    var result: [Weft.V1.Transaction] = []
                    for try await response in try api.client.transaction.getTransactions(
                        .init(beginExclusive: 0, endInclusive: end, filter: .init(parties: [harness.bob.id, harness.bank.id])))
                    {
                        result.append(try #require(response.transaction))
                    }
                    return result
                }
                let expected = try await transactions(whole)
                #expect(expected.map(\.offset) == Array(1...7))
                #expect(expected.map { $0.events.count } == Array(repeating: 1, count: 7))
                #expect(try await transactions(paged) == expected)
                await paged.stop()
                await whole.stop()
                await harness.stop()
            }
        }

        /// A subscriber to the completion log that does not read holds only the newest
        /// completions (the completion stream reads those it missed from the store): a client
        /// that stops reading costs a bounded amount of memory.
        @Test func aCompletionSubscriberHoldsOnlyTheNewestCompletionsItHasNotRead() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let start = try await log.storedEnd()
                let held = await log.subscribe(buffered: 2)
                for number in 0..<10 {
                    await log.record(
                        CommandCompletion(
                            change: ChangeID(CommandKey(applicationID: "app", commandID: "held-\(number)"), actAs: [harness.alice]),
                            completion: .rejected(reasonID: "TEST", message: "completion \(number)")))
                }
                var offsets: [Int64] = []
                for await completion in held {
                    offsets.append(Int64(completion.offset) - start)
                    if Int64(completion.offset) - start == 10 { break }
                }
                #expect(offsets == [9, 10])
                // The stream from the start has every one of them, in order.
                let client = api.client
                let streamed = try await ParticipantNode.within(.seconds(20)) {
                    var streamed: [Int64] = []
                    for try await response in try client.completion.completionStream(
                        .init(applicationID: "app", parties: [harness.alice.id], beginExclusive: UInt64(start)))
                    {
                        streamed.append(Int64(response.completion?.offset ?? 0) - start)
                        if streamed.count == 10 { break }
                    }
                    return streamed
                }
                #expect(streamed == Array(1...10))
                await api.stop()
                await harness.stop()
            }
        }

        @Test func completionsStoredTogetherGetOffsetsOfTheirOwnInOrder() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                let log = api.api.completions
                let count = 20
                await withTaskGroup(of: Void.self) { group in
                    for number in 0..<count {
                        group.addTask {
                            await log.record(
                                CommandCompletion(
                                    change: ChangeID(
                                        CommandKey(applicationID: "app", commandID: "together-\(number)"), actAs: [harness.alice]),
                                    completion: .rejected(reasonID: "TEST", message: "completion \(number)")))
                        }
                    }
                }
                let client = api.client
                let offsets = try await ParticipantNode.within(.seconds(20)) {
                    var offsets: [UInt64] = []
                    for try await response in try client.completion.completionStream(
                        .init(applicationID: "app", parties: [harness.alice.id], beginExclusive: 0))
                    {
                        offsets.append(response.completion?.offset ?? 0)
                        if offsets.count == count { break }
                    }
                    return offsets
                }
                #expect(offsets == Array(1...UInt64(count)), "every completion stored, each at its own offset, in order")
                await api.stop()
                await harness.stop()
            }
        }
    }
}

/// A submission the Ledger API recorded but the participant never did (the node was killed
/// between the two) completes as lost when the Ledger API starts again: the application, which
/// had its submission id, learns to submit again instead of waiting for ever.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct LostSubmissionTests {
        @Test func aSubmissionNeverRecordedByTheParticipantCompletesAsLost() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let first = try await LedgerAPIEndpoint.start(harness, 0)
                await first.stop()
                // As the Ledger API writes it before handing the command to the participant.
                let participant = harness.nodes[0].identity.id.description
                _ = try PostgresConnection(url: fixture.url).execute(
                    """
                    INSERT INTO ledger_api_completions (participant, application_id, command_id, submission_id, act_as)
                    VALUES ($1, 'app', 'lost-1', 'submission-1', $2)
                    """, [.text(participant), .text(harness.alice.id)])
                let api = try await LedgerAPIEndpoint.start(harness, 0)
                var completion: Weft.V1.Completion?
                for try await response in try api.client.completion.completionStream(
                    .init(applicationID: "app", parties: [harness.alice.id], beginExclusive: 0))
                {
                    completion = response.completion
                    break
                }
                #expect(completion?.commandID == "lost-1" && completion?.submissionID == "submission-1")
                #expect(completion?.status?.errorID == "LEDGER_API_SUBMISSION_LOST", "\(String(describing: completion))")
                #expect(completion?.status?.message.contains("submit the command again") == true)
                // The command id is free: the retry is accepted and commits.
                let retry = try await api.client.command.submitAndWait(
                    .init(commands: .init(
                        commandID: "lost-1", applicationID: "app", actAs: [harness.alice.id],
                        commands: [IOUCommands(packageID: try await api.client.packageManagement.listPackages(.init()).packages[0].packageID)
                            .issue("1", from: harness.alice.id, to: harness.alice.id)])))
                #expect(retry.transactionID.count == 64)
                await api.stop()
                await harness.stop()
            }
        }

        /// A completion the Ledger API recovered at start is not stored twice when it also arrives
        /// live; a retry of the same command rejected the same way is another submission's
        /// completion, and is stored.
        @Test func aRetryRejectedLikeARecoveredCompletionStillCompletes() async throws {
            try await PostgresFixture.withFixture { fixture in
                let harness = try await DomainHarness.start(url: fixture.url)
                let alice = harness.alice
                await harness.p1.stop()
                // Every request of this node misses its max sequencing time: the sequencer answers
                // each with the same deliver error.
                let hurried = try await harness.restart(0, configuration: ParticipantConfiguration(maxSequencingDelayMicros: 1))
                await (try await LedgerAPIEndpoint.start(harness, 0, node: hurried)).stop()  // its tables made
                let key = CommandKey(applicationID: "app", commandID: "refused")
                let prepared = try await hurried.prepare([try harness.issue("1", to: alice, by: alice)], actAs: [alice], command: key)
                // As the Ledger API writes it before handing the command over; no Ledger API runs,
                // so its completion is recorded by the recovery at the next start.
                _ = try PostgresConnection(url: fixture.url).execute(
                    """
                    INSERT INTO ledger_api_completions (participant, application_id, command_id, submission_id, act_as)
                    VALUES ($1, 'app', 'refused', $2, $3)
                    """, [.text(hurried.identity.id.description), .text(prepared.submissionID), .text(alice.id)])
                let first = try await hurried.submit(prepared)
                guard case .rejected(let reasonID, _) = first, reasonID == "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED" else {
                    Issue.record("the first submission was not refused for its max sequencing time: \(first)")
                    return
                }
                let api = try await LedgerAPIEndpoint.start(harness, 0, node: hurried)
                let packageID = try await api.client.packageManagement.listPackages(.init()).packages[0].packageID
                let retried = try await api.client.command.submit(
                    .init(commands: .init(
                        commandID: "refused", applicationID: "app", actAs: [alice.id],
                        commands: [IOUCommands(packageID: packageID).issue("1", from: alice.id, to: alice.id)])))
                let client = api.client
                let completions: [Weft.V1.Completion] = try await ParticipantNode.within(.seconds(20)) {
                    var completions: [Weft.V1.Completion] = []
                    for try await response in try client.completion.completionStream(
                        .init(applicationID: "app", parties: [alice.id], beginExclusive: 0))
                    {
                        if let completion = response.completion { completions.append(completion) }
                        if completions.count == 2 { break }
                    }
                    return completions
                } ?? []
                #expect(completions.map(\.submissionID) == [prepared.submissionID, retried.submissionID])
                #expect(completions.map { $0.status?.errorID ?? "" } == Array(repeating: "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED", count: 2))
                await api.stop()
                await hurried.stop()
                await harness.stop()
            }
        }
    }
}
