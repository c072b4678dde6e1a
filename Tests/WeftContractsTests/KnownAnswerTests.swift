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
