import Foundation
import Testing
import WeftTestSupport
import WeftTransport
import WeftWire

/// A participant node under load gets SIGTERM: it drains and exits 0, and nothing is lost.
/// Every call it accepted either committed (and the transaction is in its database after a
/// restart) or failed with a clear status; a call refused while draining left nothing behind.
@Suite(.serialized, .timeLimit(.minutes(5))) struct GracefulShutdownTests {
    /// What became of one submission.
    enum Outcome: Sendable {
        case committed(command: String, transaction: String)
        case failed(command: String, error: any Error)

        var command: String {
            switch self {
            case .committed(let command, _), .failed(let command, _): command
            }
        }
        var transaction: String? {
            if case .committed(_, let transaction) = self { transaction } else { nil }
        }
    }

    @Test func aParticipantUnderLoadDrainsOnSIGTERMExitsZeroAndLosesNothing() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            let domain = try await ProcessDomain.start(fixture: fixture, directory: directory)
            var nodes = [domain.process]
            defer { for node in nodes where node.process.isRunning { node.signal(SIGKILL) } }
            func weft(_ arguments: [String]) async throws -> String {
                let (status, output, error) = try await WeftProcess.run(arguments, directory: dir)
                #expect(status == 0, "weft \(arguments.joined(separator: " ")): \(error)")
                return output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try domain.writeParticipant("participant1", directory: directory)
            let id = try await weft(["participant", "id", "-c", "participant1.yaml"])
            _ = try await weft(["domain-manager", "set-state", id, "--permission", "submission"] + domain.admin)
            let (node, api) = try await domain.startParticipant("participant1")
            nodes.append(node)
            _ = try await weft(
                [
                    "participant", "connect-multi", "mydomain", "127.0.0.1:\(domain.sequencerPort)", "--root-cert",
                    "certs/ca.pem",
                    "--remote", api[1], "--remote-plaintext",
                ])
            let iou = ExampleDeployment.repository.appendingPathComponent("examples/packages/iou.weft").path
            _ = try await weft(["package", "upload", iou] + api)
            let bank = try await weft(["party", "allocate", "bank"] + api)

            // The load: four applications on one connection, each submitting IOUs back to back
            // (SubmitAndWait), until a call fails.
            let port = try #require(Int(api[1].split(separator: ":").last ?? ""))
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
            let packages = try await client.packageManagement.listPackages(.init()).packages
            let package = try #require(packages.first { $0.templateNames.contains("Iou") }, "\(packages)")
            let template = Weft.V1.TemplateId(packageID: package.packageID, templateName: "Iou")
            func field(_ label: String, _ value: Weft.V1.Value.Sum) -> Weft.V1.RecordField {
                .init(label: label, value: .init(sum: value))
            }
            let arguments = Weft.V1.Record(fields: [
                field("issuer", .party(bank)), field("owner", .party(bank)), field("currency", .text("USD")),
                field("amount", .decimal("1")),
            ])
            let workers = 4
            let (events, results) = AsyncStream<Outcome>.makeStream()
            let load = Task {
                await withTaskGroup(of: Void.self) { group in
                    for worker in 0..<workers {
                        group.addTask {
                            for index in 0..<500 {
                                let command = "load-\(worker)-\(index)"
                                let commands = Weft.V1.Commands(
                                    commandID: command, applicationID: "load", actAs: [bank],
                                    commands: [
                                        .init(kind: .create(.init(templateID: template, createArguments: arguments)))
                                    ])
                                do {
                                    let response = try await client.command.submitAndWait(.init(commands: commands))
                                    results.yield(.committed(command: command, transaction: response.transactionID))
                                } catch {
                                    results.yield(.failed(command: command, error: error))
                                    return
                                }
                            }
                        }
                    }
                }
                results.finish()
            }

            // SIGTERM once the load is going (8 commits), while the next calls are in flight.
            var outcomes: [Outcome] = []
            var signalledAfter: Int?
            for await outcome in events {
                outcomes.append(outcome)
                if signalledAfter == nil, outcomes.compactMap(\.transaction).count >= 8 {
                    node.signal(SIGTERM)
                    signalledAfter = outcomes.count
                }
            }
            await load.value
            await client.close()
            let signalled = try #require(
                signalledAfter, "the load never reached 8 commits: \(outcomes)\n\(node.standardError.suffix(3000))")
            #expect(await node.exitStatus() == 0, "\(node.standardError.suffix(3000))")
            #expect(
                node.standardError.contains(#""message":"draining""#)
                    && node.standardError.contains(#""message":"stopped""#))

            // Calls in flight at SIGTERM completed while the node drained.
            let committedAfterSignal = outcomes[signalled...].compactMap(\.transaction)
            #expect(!committedAfterSignal.isEmpty, "no call in flight at SIGTERM completed: \(outcomes[signalled...])")
            // Every application's last call failed, each with a clear status: UNAVAILABLE, a
            // stable error id and a message. Refused while draining (RPC_SERVER_DRAINING,
            // RPC_GOAWAY: "retry"), or, on a loaded machine, started after the drained
            // connection had closed (RPC_CONNECTION_CLOSED).
            let failures = outcomes.compactMap { outcome -> (String, RPCError?)? in
                if case .failed(let command, let error) = outcome { return (command, error as? RPCError) }
                return nil
            }
            #expect(failures.count == workers, "\(outcomes)")
            for (command, error) in failures {
                #expect(
                    error?.code == .unavailable && error?.errorID.isEmpty == false && error?.message.isEmpty == false,
                    "\(command): \(String(describing: error))")
            }

            // After a restart, every acknowledged transaction is in the participant's ledger,
            // and no refused command is.
            let (restarted, restartedAPI) = try await domain.startParticipant("participant1")
            nodes.append(restarted)
            let transactions = try await weft(["transactions", "--party", bank, "--output", "json"] + restartedAPI)
            var ledger: [String: String] = [:]  // transaction id → command id
            for line in transactions.split(separator: "\n") {
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
                ledger[try #require(object["transaction_id"] as? String)] = object["command_id"] as? String
            }
            let committed = outcomes.compactMap { outcome in outcome.transaction.map { ($0, outcome.command) } }
            for (transaction, command) in committed {
                #expect(
                    ledger[transaction] == command,
                    "acknowledged \(command) as \(transaction), but the ledger has \(String(describing: ledger[transaction]))"
                )
            }
            let refused = Set(
                failures.filter { $0.1.map { ["RPC_GOAWAY", "RPC_SERVER_DRAINING"].contains($0.errorID) } ?? false }
                    .map(\.0))
            #expect(
                Set(ledger.values).isDisjoint(with: refused),
                "refused commands in the ledger: \(Set(ledger.values).intersection(refused))")
            #expect(ledger.count >= committed.count)
            #expect(try await weft(["ledger-end"] + restartedAPI) == String(ledger.count))

            restarted.signal(SIGTERM)
            #expect(await restarted.exitStatus() == 0, "\(restarted.standardError.suffix(3000))")
            domain.process.signal(SIGTERM)
            #expect(await domain.process.exitStatus() == 0, "\(domain.process.standardError.suffix(3000))")
        }
    }
}
