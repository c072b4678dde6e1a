// Known answers that pin the canonical form, the package id, node seed and
// contract id derivation and the canonical encoding of a tree.
// docs/contracts.md §9 quotes them so that another implementation can check
// itself; they were also computed independently from that description (a
// few lines of Python's hashlib). A change here changes every id.

import Testing
import WeftContracts

@Suite("Known answers (docs/contracts.md §9)")
struct KnownAnswerTests {
    static let source = """
        package kat;
        // Comments and layout are not part of the canonical form.
        template Iou { issuer: Party; owner: Party; currency: Text; amount: Decimal;
                       signatory issuer; observer owner; }
        """

    static let canonicalForm = """
        package kat;

        template Iou {
            issuer: Party;
            owner: Party;
            currency: Text;
            amount: Decimal;
            signatory issuer;
            observer owner;
        }

        """

    @Test("canonical form, package id, root node seed, contract id and tree bytes")
    func issue() throws {
        let package = try Package(source: Self.source, file: "kat.weft")
        #expect(package.canonicalForm == Self.canonicalForm)
        #expect(package.id.description == "2c13dd9bdaeb92d58456b89a322de0fc0aaf9bedc8cb009bf6beb5e8184703dd")
        let command = Command.create(
            try package.templateID("Iou"),
            argument: try package.record(
                "Iou",
                ["issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"), "amount": decimal("100")]))
        let transaction = try Interpreter(packages: [package]).submit(
            [command], actAs: [bank], seed: seed(1), contracts: ContractStore())
        #expect(
            transaction.nodes[0].seed?.description == "cef7c045d0ccde385c18c7f5f5e87bb48db438fb2d6193ba4783021b9620522b"
        )
        guard case .create(let create) = transaction.nodes[0].action else { return }
        #expect(create.contractID.description == "6beb7929a1ddee27b658a6b64831f79accd36eeb83bb7f832e2d2adc1a70ea4d")
        let hex = transaction.canonicalBytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(
            hex
                == "00000001" + "00000001" + "01"
                + "cef7c045d0ccde385c18c7f5f5e87bb48db438fb2d6193ba4783021b9620522b"
                + "6beb7929a1ddee27b658a6b64831f79accd36eeb83bb7f832e2d2adc1a70ea4d"
                + "2c13dd9bdaeb92d58456b89a322de0fc0aaf9bedc8cb009bf6beb5e8184703dd" + "00000003" + "496f75"
                + "09" + "00000004" + "05" + "0000000c" + "62616e6b3a3a313232306161" + "05" + "0000000d"
                + "616c6963653a3a313232306262" + "04" + "00000003" + "555344" + "03"
                + "0000000000000000000000" + "e8d4a51000"
                + "00000001" + "0000000c" + "62616e6b3a3a313232306161"
                + "00000001" + "0000000d" + "616c6963653a3a313232306262")
    }
}

/// The Merkle tree of an IOU transfer (docs/contracts.md §13), computed
/// independently from the document with Python's hashlib and hmac.
@Suite("Known answers: views and the Merkle tree (docs/contracts.md §13)")
struct MerkleKnownAnswerTests {
    static let source = KnownAnswerTests.source.replacingOccurrences(
        of: "observer owner; }",
        with: """
            observer owner;
                           choice Transfer(newOwner: Party): ContractId<Iou> controller owner {
                               return create this with { owner = newOwner }; } }
            """)

    @Test("an IOU transfer: salts, view hashes and root hash")
    func transfer() throws {
        let package = try Package(source: Self.source, file: "kat.weft")
        let interpreter = Interpreter(packages: [package])
        var store = ContractStore()
        let issue = try interpreter.submit(
            [
                .create(
                    try package.templateID("Iou"),
                    argument: try package.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                            "amount": decimal("100"),
                        ]))
            ], actAs: [bank], seed: seed(1), contracts: store)
        store.commit(issue)
        guard case .create(let issued) = issue.nodes[0].action else { return }
        let transfer = try interpreter.submit(
            [
                .exercise(
                    try package.templateID("Iou"), contract: issued.contractID, choice: "Transfer",
                    argument: try package.arguments("Iou", "Transfer", ["newOwner": .party(bob)]))
            ], actAs: [alice], seed: seed(2), contracts: store)
        let views = try TransactionViews(
            transfer, seed: seed(2),
            metadata: TransactionMetadata(
                submitter: SubmitterMetadata(
                    actAs: [alice], submittingParticipant: "participant1::1220ab", commandID: "c1"),
                common: CommonMetadata(
                    domain: "domain1::1220ff", mediator: "MED::mediator1::1220ff", uuid: Array(0..<16)),
                participant: ParticipantMetadata(
                    ledgerTime: 1_700_000_000_000_000, submissionTime: 1_700_000_000_000_000)))
        #expect(package.id.description == "dff95d574385ed00482ca7acf8619b3825051eef533d028bddde39e1fd51c713")
        #expect(issued.contractID.description == "833a06f5d8be87b32e8b2d3524d3a103d2c2816055ad98d1566c4dacc52d1130")
        #expect(
            transfer.nodes[0].seed?.description == "26ea9485f3ee0063fe8cb590f157bccfe3b2fe5677f9bdfd029ac472a3d2b417")
        guard case .create(let created) = transfer.nodes[1].action else { return }
        #expect(created.contractID.description == "730bea1a2c70c93fd6b9cdad82d9460ca40c39c02cfda169547b63f39f8f6413")
        #expect(
            views.metadataSalts[0].description == "20c6cb9a4bccf741c96cde2ceef453dc00337910cf50e9bb6f10f1a92900bbee")
        #expect(views.views[0].hash.description == "583d728c7a21455601bebd9b001b2a96b4dbb02b3eeda2860e37fb82f90e86dd")
        #expect(views.views[1].hash.description == "8fda6c048246cceddee2b65be152dd113eafedcdcc10114de76a72a9fba8d6a9")
        #expect(views.rootHash.description == "a0ebc51ca5def9764ebd2a18b9a2eef732022a926ef0fceb1e06a4be2c2b5bd6")
    }
}
