import Foundation
@_spi(Benchmarks) import WeftContracts
import WeftCrypto

/// `weft-bench views`: what a submitting participant does to a transaction
/// before it encrypts anything — interpret the command, cut the tree into
/// views, salt and hash the Merkle tree — per second on one core, for an IOU
/// transfer and for the DvP settlement of examples/packages. The baseline,
/// measured in the same run, is the hashing floor: plain SHA-256 over the
/// bytes the pipeline hashes (node seeds, contract ids, salts, leaves,
/// views, root). Targets: ≥ 20,000 IOU transfers/s, ≥ 5,000 DvP settlements/s.
enum ViewsBenchmark {
    struct Workload {
        let name: String
        let package: Package
        let interpreter: Interpreter
        let store: ContractStore
        let command: Command
        let actAs: [Party]
        let target: Double

        /// Interprets, builds the views and hashes them with a fresh seed.
        func run(_ counter: UInt64) -> TransactionViews {
            var bytes = [UInt8](repeating: 0x5E, count: 32)
            for index in 0..<8 { bytes[index] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(index))) }
            let seed = TransactionSeed(bytes)!
            let metadata = TransactionMetadata(
                submitter: SubmitterMetadata(
                    actAs: actAs, submittingParticipant: "participant1::1220" + String(repeating: "ab", count: 32),
                    commandID: "command-\(counter)", applicationID: "bench", submissionID: "submission-\(counter)",
                    maxSequencingTime: 1_800_000_000_000_000, deduplicationPeriod: 600_000_000),
                common: CommonMetadata(
                    domain: "domain1::1220" + String(repeating: "cd", count: 32),
                    mediator: "MED::mediator1::1220" + String(repeating: "cd", count: 32), uuid: Array(bytes.prefix(16))
                ),
                participant: ParticipantMetadata(
                    ledgerTime: 1_700_000_000_000_000, submissionTime: 1_700_000_000_000_000))
            let transaction = try! interpreter.submit([command], actAs: actAs, seed: seed, contracts: store)
            return try! TransactionViews(transaction, seed: seed, metadata: metadata, packages: [package])
        }
    }

    static func party(_ name: String) -> Party { try! Party(name + "::1220" + String(repeating: "0f", count: 32)) }

    static func load(_ file: String) throws -> Package {
        try Package(source: try source(file), file: file)
    }

    /// The text of `examples/packages/<file>`.
    static func source(_ file: String) throws -> String {
        // The executable's source file is Sources/weft-bench/ViewsBenchmark.swift.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = root.appendingPathComponent("examples/packages/\(file)")
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func iouTransfer() throws -> Workload {
        let package = try load("iou.weft")
        let interpreter = Interpreter(packages: [package])
        let (bank, alice, bob) = (party("bank"), party("alice"), party("bob"))
        var store = ContractStore()
        let issue = try interpreter.submit(
            [
                .create(
                    try package.templateID("Iou"),
                    argument: try package.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                            "amount": .decimal(FixedDecimal("100")!),
                        ]))
            ], actAs: [bank], seed: TransactionSeed([UInt8](repeating: 1, count: 32))!, contracts: store)
        store.commit(issue)
        guard case .create(let iou) = issue.nodes[0].action else { fatalError("not a create") }
        return Workload(
            name: "IOU transfer", package: package, interpreter: interpreter, store: store,
            command: .exercise(
                try package.templateID("Iou"), contract: iou.contractID, choice: "Transfer",
                argument: try package.arguments("Iou", "Transfer", ["newOwner": .party(bob)])),
            actAs: [alice], target: 20_000)
    }

    static func dvpSettlement() throws -> Workload {
        let package = try load("dvp.weft")
        let interpreter = Interpreter(packages: [package])
        let (bank, custodian, alice, bob) = (party("bank"), party("csd"), party("alice"), party("bob"))
        var store = ContractStore()
        var next: UInt8 = 1
        func create(_ template: String, _ fields: KeyValuePairs<String, Value>, by: [Party]) throws -> ContractID {
            let transaction = try interpreter.submit(
                [.create(try package.templateID(template), argument: try package.record(template, fields))], actAs: by,
                seed: TransactionSeed([UInt8](repeating: next, count: 32))!, contracts: store)
            next += 1
            store.commit(transaction)
            guard case .create(let created) = transaction.nodes[0].action else { fatalError("not a create") }
            return created.contractID
        }
        let cash = try create(
            "Cash", ["bank": .party(bank), "owner": .party(alice), "amount": .decimal(FixedDecimal("1000")!)],
            by: [bank])
        let security = try create(
            "Security",
            [
                "custodian": .party(custodian), "holder": .party(bob), "isin": .text("XS0000000001"),
                "quantity": .int(10),
            ], by: [custodian])
        let offer = try create(
            "Offer",
            [
                "buyer": .party(alice), "seller": .party(bob), "bank": .party(bank), "custodian": .party(custodian),
                "isin": .text("XS0000000001"), "quantity": .int(10), "price": .decimal(FixedDecimal("1000")!),
                "payment": .contractID(cash),
            ], by: [alice])
        return Workload(
            name: "DvP settlement", package: package, interpreter: interpreter, store: store,
            command: .exercise(
                try package.templateID("Offer"), contract: offer, choice: "Settle",
                argument: try package.arguments("Offer", "Settle", ["delivery": .contractID(security)])),
            actAs: [bob], target: 5_000)
    }

    static func run(arguments: [String]) throws {
        var seconds = 0.3
        if let index = arguments.firstIndex(of: "--seconds-per-round"), index + 1 < arguments.count,
            let value = Double(arguments[index + 1])
        {
            seconds = value
        }
        print("weft-bench views: interpret + cut into views + salt and hash the Merkle tree, one core")
        print("  floor: plain SHA-256 over the same bytes the pipeline hashes (seeds, ids, salts, leaves, views, root)")
        print("  9 alternating rounds of ~\(seconds) s per side; medians, ratio is the median per-round ratio")
        print()
        print(
            pad("workload", 16) + pad("views", 6, right: true) + pad("hashes", 7, right: true)
                + pad("bytes", 7, right: true) + pad("Weft ops/s", 12, right: true)
                + pad("floor ops/s", 13, right: true)
                + pad("ratio", 8, right: true) + pad("target", 9, right: true) + pad("", 5))
        var met = true
        for workload in [try iouTransfer(), try dvpSettlement()] {
            let sample = workload.run(0)
            let preimages = sample.hashPreimages
            var counter: UInt64 = 0
            let figures = compare(
                secondsPerRound: seconds,
                weft: {
                    counter &+= 1
                    blackHole(workload.run(counter).rootHash)
                },
                raw: { for preimage in preimages { blackHole(SHA256.hash(preimage)) } })
            let opsPerSecond = 1e9 / figures.weft
            met = met && opsPerSecond >= workload.target
            print(
                pad(workload.name, 16) + pad(String(sample.views.count), 6, right: true)
                    + pad(String(preimages.count), 7, right: true)
                    + pad(String(preimages.reduce(0) { $0 + $1.count }), 7, right: true)
                    + pad(format(opsPerSecond), 12, right: true) + pad(format(1e9 / figures.raw), 13, right: true)
                    + pad(format(figures.ratio, 2) + "x", 8, right: true) + pad(format(workload.target), 9, right: true)
                    + (opsPerSecond >= workload.target ? "  met" : "  NOT met"))

            // Where the time goes: interpretation alone, and the views and
            // hashes of an already interpreted transaction.
            let fixedSeed = TransactionSeed([UInt8](repeating: 7, count: 32))!
            let interpret = {
                blackHole(
                    try! workload.interpreter.submit(
                        [workload.command], actAs: workload.actAs, seed: fixedSeed, contracts: workload.store))
            }
            let buildViews = {
                blackHole(
                    try! TransactionViews(
                        sample.transaction, seed: fixedSeed, metadata: sample.metadata, packages: [workload.package]
                    ).rootHash)
            }
            let interpretOnly = 1e9 / time(calibrate(seconds: seconds, interpret), interpret)
            let viewsOnly = 1e9 / time(calibrate(seconds: seconds, buildViews), buildViews)
            print(
                "  of which: interpret alone \(format(interpretOnly)) ops/s, views and hashes alone "
                    + "\(format(viewsOnly)) ops/s")
        }
        print()
        print(
            "targets: >= 20,000 IOU transfers/s and >= 5,000 DvP settlements/s on one core -> \(met ? "met" : "NOT met")"
        )
    }
}
