import Foundation
import WeftContracts

/// The repository's root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// An example package from examples/packages.
func examplePackage(_ file: String) throws -> Package {
    let url = repositoryRoot.appendingPathComponent("examples/packages/\(file)")
    return try Package(source: String(contentsOf: url, encoding: .utf8), file: file)
}

func party(_ id: String) -> Party { try! Party(id) }

let bank = party("bank::1220aa")
let alice = party("alice::1220bb")
let bob = party("bob::1220cc")
let carol = party("carol::1220dd")

func seed(_ byte: UInt8) -> TransactionSeed { TransactionSeed([UInt8](repeating: byte, count: 32))! }

func decimal(_ text: String) -> Value { .decimal(FixedDecimal(text)!) }

/// Seeded SplitMix64, so a failing property test reproduces from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// An IOU ledger for tests: the package, an interpreter and the active
/// contracts, committing each transaction it runs.
struct IouLedger {
    let package: Package
    let interpreter: Interpreter
    var store = ContractStore()
    var nextSeed: UInt8 = 1

    init() throws {
        package = try examplePackage("iou.weft")
        interpreter = Interpreter(packages: [package])
    }

    var iou: TemplateID { try! package.templateID("Iou") }

    func issueCommand(_ issuer: Party, _ owner: Party, _ amount: String, currency: String = "USD") throws -> Command {
        .create(
            iou,
            argument: try package.record(
                "Iou",
                [
                    "issuer": .party(issuer), "owner": .party(owner), "currency": .text(currency),
                    "amount": decimal(amount),
                ]))
    }

    mutating func run(_ commands: [Command], actAs: [Party]) throws -> Transaction {
        let transaction = try interpreter.submit(commands, actAs: actAs, seed: seed(nextSeed), contracts: store)
        nextSeed &+= 1
        store.commit(transaction)
        return transaction
    }

    mutating func issue(_ issuer: Party, _ owner: Party, _ amount: String) throws -> ContractID {
        let transaction = try run([try issueCommand(issuer, owner, amount)], actAs: [issuer])
        guard case .create(let create) = transaction.nodes[0].action else { fatalError("not a create") }
        return create.contractID
    }

    func exercise(_ id: ContractID, _ choice: String, _ arguments: KeyValuePairs<String, Value>) throws -> Command {
        .exercise(iou, contract: id, choice: choice, argument: try package.arguments("Iou", choice, arguments))
    }
}

/// `file:line:column` of the first line of an example package that contains
/// `text`: at `at` in that line, or else at the line's first non-blank
/// character (where the checker locates the statement that starts there).
func exampleLocation(_ file: String, _ text: String, at: String? = nil) throws -> String {
    let url = repositoryRoot.appendingPathComponent("examples/packages/\(file)")
    let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
    guard let index = lines.firstIndex(where: { $0.contains(text) }) else { return "\(file): no line with \(text)" }
    let line = lines[index]
    let column: Int
    if let at, let range = line.range(of: at) {
        column = line.distance(from: line.startIndex, to: range.lowerBound) + 1
    } else {
        column = line.prefix(while: { $0 == " " }).count + 1
    }
    return "\(file):\(index + 1):\(column)"
}
