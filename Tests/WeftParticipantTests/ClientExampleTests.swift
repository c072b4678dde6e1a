import Foundation
import Testing
import WeftAuth
import WeftLedgerAPI
import WeftTestSupport
import WeftTransport
import WeftWire

/// Clients in other languages against a live participant (issue 9, item 4): participant2's
/// Ledger API over TLS with token verification, as a node serves it, used by
/// - the Python example clients/python/examples/transfer_iou.py: the bank issues bob an IOU and
///   bob transfers it to alice; its JSON lines must show the transfer as the ledger has it;
/// - the Python client's error tests (clients/python/tests): typed errors with code and error id;
/// - the C example clients/c, built here with its Makefile: Health/Check prints SERVING.
/// One domain serves every assertion.
@Suite(.timeLimit(.minutes(5))) struct ClientExampleTests {
    /// Runs `arguments` (python3 or a built program) in the repository with `environment` added.
    static func client(_ arguments: [String], _ environment: [String: String] = [:]) async throws -> TestSubprocess.Outcome {
        try await TestSubprocess.run(
            arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment.merging(["PYTHONDONTWRITEBYTECODE": "1"]) { $1 }) { $1 })
    }

    /// The JSON lines of `output`, by their `step`.
    static func steps(_ output: String) -> [(step: String, fields: [String: Any])] {
        output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let step = object["step"] as? String
            else { return nil }
            return (step, object)
        }
    }

    @Test func pythonAndCClientsWorkAgainstALiveParticipant() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-clients-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let guardian = APIGuard(
                authorizer: .tokens(try BearerTokenVerifier(keys: [.hs256(secret: LedgerAPITests.secret)], audience: LedgerAPITests.audience)),
                audit: AuditLog(logger: quietLogger("weft.test.audit")))
            let harness = try await DomainHarness.start(url: fixture.url)
            let api = try await LedgerAPIEndpoint.start(harness, 1, guardian: guardian)
            let caFile = directory.appendingPathComponent("ca.pem").path
            try api.rootPEM.write(toFile: caFile, atomically: true, encoding: .utf8)
            let address = "127.0.0.1:\(api.server.port)"
            let (alice, bob, bank) = (harness.alice.id, harness.bob.id, harness.bank.id)
            let packageID = try #require(try await harness.nodes[1].storedPackages().first).id.description
            let example = [
                "python3", repositoryRoot.appendingPathComponent("clients/python/examples/transfer_iou.py").path,
                "--address", address, "--ca", caFile, "--server-name", "localhost",
                "--issuer", bank, "--owner", bob, "--new-owner", alice, "--package-id", packageID, "--amount", "250.50",
            ]

            // 1. The example, with a token for the bank and bob.
            let run = try await Self.client(example, ["WEFT_TOKEN": try LedgerAPITests.token(actAs: [bank, bob], subject: "python-example")])
            #expect(run.status == 0, "\(run.output)\(run.error)")
            let steps = Self.steps(run.output)
            #expect(steps.map(\.step) == ["package", "issued", "submitted", "completed", "transferred", "tree", "active"], "\(run.output)")
            let step = Dictionary(steps.map { ($0.step, $0.fields) }) { first, _ in first }
            let issued = try #require(step["issued"], "\(run.output)")
            let issuedArguments = try #require(issued["arguments"] as? [String: Any])
            #expect(issuedArguments["owner"] as? String == bob && issuedArguments["issuer"] as? String == bank)
            #expect((issuedArguments["amount"] as? String).flatMap { Foundation.Decimal(string: $0) } == Foundation.Decimal(string: "250.50"), "\(issued)")
            let oldIOU = try #require(issued["contract_id"] as? String)
            let completed = try #require(step["completed"])
            let transferred = try #require(step["transferred"])
            #expect(completed["code"] as? Int == 0 && completed["transaction_id"] as? String == transferred["transaction_id"] as? String)
            #expect(transferred["archived"] as? [String] == [oldIOU], "\(transferred)")
            let created = try #require((transferred["created"] as? [[String: Any]])?.first, "\(transferred)")
            let newIOU = try #require(created["contract_id"] as? String)
            #expect((created["arguments"] as? [String: Any])?["owner"] as? String == alice, "\(created)")
            #expect(created["witness_parties"] as? [String] == [bank], "\(created)")
            let root = try #require((step["tree"]?["roots"] as? [[String: Any]])?.first, "\(run.output)")
            #expect(root["exercised"] as? String == "Transfer" && root["contract_id"] as? String == oldIOU)
            #expect(root["acting_parties"] as? [String] == [bob] && root["consuming"] as? Bool == true)
            #expect((root["children"] as? [[String: Any]])?.compactMap { $0["created"] as? String } == [newIOU], "\(root)")
            let active = try #require(step["active"]?["contract_ids"] as? [String])
            #expect(active.contains(newIOU) && !active.contains(oldIOU), "\(active)")

            // The ledger agrees (read with the Swift client): that transaction archived the old
            // IOU and created the new one, at the offset the example printed.
            let offset = try #require(transferred["offset"] as? Int)
            var seen: [Weft.V1.Transaction] = []
            for try await response in try api.client.transaction.getTransactions(
                .init(beginExclusive: UInt64(offset - 1), endInclusive: UInt64(offset), filter: .init(parties: [bank])),
                metadata: LedgerAPITests.bearer(try LedgerAPITests.token(readAs: [bank], subject: "checker")))
            {
                if let transaction = response.transaction { seen.append(transaction) }
            }
            #expect(seen.map(\.transactionID) == [transferred["transaction_id"] as? String ?? ""])
            let events = seen.first?.events.compactMap(\.kind) ?? []
            #expect(events.compactMap { if case .created(let event) = $0 { event.contractID } else { nil } } == [newIOU])
            #expect(events.compactMap { if case .archived(let event) = $0 { event.contractID } else { nil } } == [oldIOU])

            // 2. The example with a forged token: exit 1 and the typed refusal, nothing submitted.
            let forged = try await Self.client(
                example,
                ["WEFT_TOKEN": try LedgerAPITests.token(actAs: [bank, bob], subject: "mallory", secret: Array("another secret of at least 32 bytes!!".utf8))])
            #expect(forged.status == 1, "\(forged.output)\(forged.error)")
            let refusal = try #require(Self.steps(forged.output).first { $0.step == "error" }?.fields, "\(forged.output)")
            #expect(refusal["code"] as? String == "UNAUTHENTICATED" && refusal["code_number"] as? Int == 16, "\(refusal)")
            #expect(refusal["error_id"] as? String == "AUTH_BAD_SIGNATURE", "\(refusal)")
            #expect(forged.error.contains("the participant refused"), "\(forged.error)")
            // A usage error: exit 64 and what is missing.
            let usage = try await Self.client(Array(example.prefix(6)))
            #expect(usage.status == 64 && usage.error.contains("--issuer"), "\(usage.error)")

            // 3. The Python client's typed errors (unittest), with a token that reads bob only.
            let unittest = try await Self.client(
                ["python3", "-m", "unittest", "discover", "-v", "-s", repositoryRoot.appendingPathComponent("clients/python/tests").path],
                [
                    "PYTHONPATH": repositoryRoot.appendingPathComponent("clients/python").path,
                    "WEFT_TEST_ADDRESS": address, "WEFT_TEST_CA": caFile,
                    "WEFT_TEST_TOKEN": try LedgerAPITests.token(readAs: [bob], subject: "bob-viewer"),
                    "WEFT_TEST_PARTY": bob, "WEFT_TEST_OTHER_PARTY": bank,
                ])
            #expect(unittest.status == 0, "\(unittest.output)\(unittest.error)")
            #expect(unittest.error.contains("Ran 8 tests") && unittest.error.contains("\nOK"), "\(unittest.error)")

            // 4. The C example, built with its Makefile into the temporary directory.
            let build = try await Self.client([
                "make", "-s", "-C", repositoryRoot.appendingPathComponent("clients/c").path, "BUILD_DIR=\(directory.path)",
            ])
            #expect(build.status == 0, "\(build.output)\(build.error)")
            let program = directory.appendingPathComponent("weft-health-check").path
            let serving = try await Self.client([program, address, caFile, "--server-name", "localhost"])
            #expect(serving.status == 0, "\(serving.output)\(serving.error)")
            #expect(serving.output.contains("status: SERVING_STATUS_SERVING"), "\(serving.output)")
            let unknown = try await Self.client([program, address, caFile, "--server-name", "localhost", "--service", "weft.v1.Nothing"])
            #expect(unknown.status == 1 && unknown.output.contains("status 5 HEALTH_UNKNOWN_SERVICE"), "\(unknown.output)\(unknown.error)")
            // The certificate must name the server.
            let wrongName = try await Self.client([program, address, caFile, "--server-name", "elsewhere.example"])
            #expect(wrongName.status == 2 && wrongName.error.contains("TLS handshake"), "\(wrongName.error)")
            // Nothing listening: a clear error and exit 2.
            let closedPort = try await Self.client([program, "127.0.0.1:1", caFile])
            #expect(closedPort.status == 2 && closedPort.error.contains("cannot connect to 127.0.0.1:1"), "\(closedPort.error)")

            await api.stop()
            await harness.stop()
        }
    }
}
