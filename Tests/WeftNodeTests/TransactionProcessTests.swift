import Foundation
import Testing
import WeftTestSupport
import WeftTransport
import WeftWire

/// Transactions end to end as operators and applications do them: the domain in one `weft run`
/// process (sequencer, domain manager, mediator), two participant nodes in their own processes,
/// every step a `weft` command — onboarding, package upload, party allocation (published through
/// the sequencer to the domain manager), an IOU issued and transferred, each side's view.
@Suite(.timeLimit(.minutes(5))) struct TransactionProcessTests {
    @Test func iouIssueAndTransferBetweenTwoParticipantNodes() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            // Debug level on the domain: the sequencer logs each submission it sequenced.
            let domain = try await ProcessDomain.start(fixture: fixture, directory: directory, environment: ["WEFT_LOG_LEVEL": "debug"])
            func weft(_ arguments: [String]) async throws -> String {
                let (status, output, error) = try await WeftProcess.run(arguments, directory: dir)
                #expect(status == 0, "weft \(arguments.joined(separator: " ")): \(error)")
                return output.trimmingCharacters(in: .whitespacesAndNewlines)
            }

            var nodes: [WeftProcess] = []
            var apis: [[String]] = []
            var ids: [String] = []
            for name in ["participant1", "participant2"] {
                try domain.writeParticipant(name, directory: directory)
                let id = try await weft(["participant", "id", "-c", "\(name).yaml"])
                ids.append(id)
                _ = try await weft(["domain-manager", "set-state", id, "--permission", "submission"] + domain.admin)
                let (node, api) = try await domain.startParticipant(name)
                nodes.append(node)
                apis.append(api)
                _ = try await weft(
                    ["participant", "connect-multi", "mydomain", "127.0.0.1:\(domain.sequencerPort)", "--root-cert", "certs/ca.pem",
                     "--remote", api[1], "--remote-plaintext"])
                let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                _ = try await weft(["package", "upload", root.appendingPathComponent("examples/packages/iou.weft").path] + api)
            }
            defer { for node in nodes { node.signal(SIGKILL) } }

            // Parties: the bank and alice on participant 1, bob on participant 2. Each allocation
            // goes through the sequencer to the domain manager, which broadcasts the hosting.
            let bank = try await weft(["party", "allocate", "bank"] + apis[0])
            let alice = try await weft(["party", "allocate", "alice"] + apis[0])
            let bob = try await weft(["party", "allocate", "bob"] + apis[1])
            #expect(bank.hasPrefix("bank::1220") && alice.hasPrefix("alice::1220") && bob.hasPrefix("bob::1220"), "\(bank) \(alice) \(bob)")

            // ACS commitments every second (checked over the CLI below).
            _ = try await weft(["domain-manager", "parameters", "--set", "reconciliation-interval=1s"] + domain.admin)

            // The bank issues alice an IOU; alice transfers it to bob.
            _ = try await weft(
                ["submit", "create", "--template", "Iou", "--act-as", bank, "--command-id", "issue-1", "--arguments",
                 #"{"issuer": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "currency": "USD", "amount": {"decimal": "100.0"}}"#]
                    + apis[0])
            let aliceACS = try await weft(["acs", "--party", alice, "--output", "json"] + apis[0])
            let contract = try #require(Self.contractIDs(aliceACS).first, "\(aliceACS)")
            _ = try await weft(
                ["submit", "exercise", "--template", "Iou", "--contract", contract, "--choice", "Transfer", "--act-as", alice,
                 "--command-id", "transfer-1", "--arguments", #"{"newOwner": {"party": "\#(bob)"}}"#] + apis[0])

            // Bob's participant has the new IOU, alice has none, the bank sees the one it signs.
            let bobACS = try await weft(["acs", "--party", bob, "--output", "json"] + apis[1])
            #expect(Self.contractIDs(bobACS).count == 1 && bobACS.contains(#""currency""#) && bobACS.contains("USD"), "\(bobACS)")
            #expect(Self.contractIDs(try await weft(["acs", "--party", alice, "--output", "json"] + apis[0])).isEmpty)
            let bankACS = try await weft(["acs", "--party", bank, "--output", "json"] + apis[0])
            #expect(Self.contractIDs(bankACS) == Self.contractIDs(bobACS), "\(bankACS) vs \(bobACS)")
            // Bob's transactions: the transfer only (he was not a stakeholder of the issue).
            let bobTransactions = try await weft(["transactions", "--party", bob, "--output", "json"] + apis[1])
            #expect(bobTransactions.split(separator: "\n").count == 1, "\(bobTransactions)")
            // Participant 2 never saw the issue: it is not in its ledger at all.
            #expect(try await weft(["ledger-end"] + apis[1]) == "1")
            #expect(try await weft(["ledger-end"] + apis[0]) == "2")

            // Bob's IOU is shared by both participants (the bank on one, bob on the other): their
            // commitments match, so each safe point passes the transfer, nothing is mismatched,
            // and narrowing finds one shared stakeholder group and no difference.
            let transferred = Int(Date().timeIntervalSince1970 * 1_000_000)
            for api in apis {
                let deadline = ContinuousClock.now + .seconds(30)
                var point: [String: Any] = [:]
                while ContinuousClock.now < deadline {
                    let output = try await weft(["commitments", "safe-point", "--output", "json"] + api)
                    point = (try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]) ?? [:]
                    if let safe = point["safe_point_micros"] as? Int, safe > transferred { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect((point["safe_point_micros"] as? Int ?? 0) > transferred, "\(point)")
                #expect(try await weft(["commitments", "mismatches", "--output", "json"] + api) == "[]")
            }
            let inspected = try await weft(
                ["commitments", "inspect", "--counter-participant", ids[1], "--output", "json"] + apis[0])
            let inspection = try #require(try JSONSerialization.jsonObject(with: Data(inspected.utf8)) as? [String: Any])
            #expect(inspection["groups_compared"] as? Int == 1, "\(inspected)")
            #expect((inspection["differing_groups"] as? [String])?.isEmpty == true, "\(inspected)")
            #expect((inspection["contracts"] as? [Any])?.isEmpty == true, "\(inspected)")
            let badCounter = try await WeftProcess.run(
                ["commitments", "inspect", "--counter-participant", "participant2"] + apis[0], directory: dir)
            #expect(badCounter.0 == 64 && badCounter.2.contains("--counter-participant must be a participant id"), "\(badCounter)")

            // Pruning over the CLI: participant1's safe point passes the transfer, so both its
            // offsets are safe; an offset past the ledger end is refused typed; pruning the issue
            // makes a stream from the start fail PARTICIPANT_OFFSET_PRUNED, the ACS unchanged.
            let safePoint = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(try await weft(["prune", "safe-point", "--output", "json"] + apis[0]).utf8)) as? [String: Any])
            #expect(safePoint["safe_offset"] as? Int == 2 && safePoint["pruned_offset"] as? Int == 0, "\(safePoint)")
            let beyond = try await WeftProcess.run(["prune", "participant", "--offset", "5"] + apis[0], directory: dir)
            #expect(beyond.0 != 0 && beyond.2.contains("PARTICIPANT_PRUNE_OFFSET_OUT_OF_RANGE"), "\(beyond)")
            let prunedJSON = try await weft(["prune", "participant", "--offset", "1", "--output", "json"] + apis[0])
            let pruned = try #require(try JSONSerialization.jsonObject(with: Data(prunedJSON.utf8)) as? [String: Any])
            #expect(pruned["pruned_offset"] as? Int == 1 && pruned["forced"] as? Bool == false, "\(prunedJSON)")
            #expect(pruned["transactions_removed"] as? Int == 1, "\(prunedJSON)")
            let prunedRead = try await WeftProcess.run(["transactions", "--party", bank, "--output", "json"] + apis[0], directory: dir)
            #expect(prunedRead.0 != 0 && prunedRead.2.contains("PARTICIPANT_OFFSET_PRUNED"), "\(prunedRead)")
            #expect(Self.contractIDs(try await weft(["acs", "--party", bank, "--output", "json"] + apis[0])) == Self.contractIDs(bankACS))

            // One transaction followed by its W3C trace id: bob's application transfers the IOU
            // back to alice with a traceparent; the JSON logs of bob's participant, the
            // sequencer, the mediator and alice's participant all name it.
            let traceID = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 1...255)) }.joined()
            let traceparent = "00-\(traceID)-00f067aa0ba902b7-01"
            let bobsIOU = try #require(Self.contractIDs(bobACS).first)
            let port = try #require(Int(apis[1][1].split(separator: ":").last ?? ""))
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
            let packageID = try #require(Self.packageID(try await weft(["package", "list", "--output", "json"] + apis[1])))
            let back = try await client.command.submitAndWait(
                .init(commands: .init(
                    commandID: "traced-transfer", applicationID: "bob-app", actAs: [bob],
                    commands: [.init(kind: .exercise(.init(
                        templateID: .init(packageID: packageID, templateName: "Iou"), contractID: bobsIOU, choice: "Transfer",
                        choiceArgument: .init(sum: .record(.init(fields: [.init(label: "newOwner", value: .init(sum: .party(alice)))]))))))])),
                metadata: [.init(key: "traceparent", value: .textValue(traceparent))])
            await client.close()
            #expect(back.transactionID.count == 64)
            // Each node's line for this transaction, with the trace id (log lines are read as
            // the processes write them: wait for the last hop, alice's commit).
            func traced(_ process: WeftProcess, _ message: String) async -> [String: Any]? {
                for _ in 0..<100 {
                    for line in process.standardError.split(separator: "\n") where line.contains(traceID) {
                        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                            object["message"] as? String == message, object["trace_id"] as? String == traceID
                        else { continue }
                        return object
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return nil
            }
            let submitted = await traced(nodes[1], "confirmation request sent")
            let sequenced = await traced(domain.process, "submission sequenced")
            let verdict = await traced(domain.process, "sent a verdict")
            let committed = await traced(nodes[0], "request committed")
            #expect(submitted != nil, "bob's participant: \(nodes[1].standardError.suffix(3000))")
            #expect(sequenced != nil, "the sequencer: \(domain.process.standardError.suffix(3000))")
            #expect(verdict != nil, "the mediator: \(domain.process.standardError.suffix(3000))")
            #expect(committed != nil, "alice's participant: \(nodes[0].standardError.suffix(3000))")
            // Each hop logs under a span of its own within the one trace.
            let spans = [submitted, sequenced, verdict, committed].compactMap { $0?["span_id"] as? String }
            #expect(spans.count == 4 && Set(spans).count == 4 && !spans.contains("00f067aa0ba902b7"), "\(spans)")

            for node in nodes {
                node.signal(SIGTERM)
                #expect(await node.exitStatus() == 0, "\(node.standardError.suffix(3000))")
            }
            domain.process.signal(SIGTERM)
            #expect(await domain.process.exitStatus() == 0, "\(domain.process.standardError.suffix(3000))")
        }
    }

    /// The package id in `weft package list --output json` lines.
    static func packageID(_ output: String) -> String? {
        output.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["package_id"] as? String
        }.first
    }

    /// The contract ids in `weft acs --output json` lines.
    static func contractIDs(_ output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (object["contract_id"] ?? object["contractId"] ?? object["contract"]) as? String
        }
    }
}
