import Foundation
import Logging
import WeftCrypto
import WeftSequencer
import WeftTestSupport
import WeftTransport
import WeftWire

/// A sequencer node of `weft-bench sequencer --node-processes` / `--node-cpu`: the same node as
/// `BenchNode` (Sequencer, SequencerTopology and the service on an RPCServer with TLS), run by this
/// binary in a process of its own (`weft-bench sequencer-node DIR NUMBER URL CONNECTIONS`), and
/// optionally held to a CPU budget by a cgroup of its own.
///
/// Why: with the nodes in the benchmark's process, every node shares the machine's two cores
/// with the other node, the members and PostgreSQL, so a second node cannot add CPU, only the
/// work of coordinating with the first. A budget per node process stands in for what a second
/// node is for, a machine of its own: one node with C cores against two nodes with C cores each,
/// the members and PostgreSQL outside the budgets in both runs.
///
/// The parent and the node speak in lines: the node prints `port P` once it serves; the parent
/// writes `member NAME`, and the node prints `known NAME` once its topology has the member (so
/// the member can authenticate there); end of input stops the node, which exits 0.
final class SequencerNodeProcess: @unchecked Sendable {
    let number: Int
    /// Where the node serves: set once it said so (`start`).
    private(set) var port = 0
    var pid: Int32 { process.processIdentifier }
    private let process: Process
    private let input: FileHandle
    private let lines: AsyncStream<String>
    // Used by one task at a time (the benchmark's set-up runs in order).
    private var iterator: AsyncStream<String>.Iterator
    private let cgroup: CPUBudget?

    /// What a node process needs from the benchmark's domain, written to `directory`.
    struct Material {
        let domain: UniqueIdentifier
        let sequencerKey: SigningPrivateKey
        let genesis: [Weft.V1.SignedTopologyTransaction]
        let credentials: TLSCredentials

        func write(to directory: String) throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try domain.description.write(toFile: directory + "/domain", atomically: true, encoding: .utf8)
            try Self.hex(try sequencerKey.rawRepresentation).write(toFile: directory + "/sequencer.key", atomically: true, encoding: .utf8)
            try genesis.map { Self.hex(try $0.serializedBytes()) }.joined(separator: "\n")
                .write(toFile: directory + "/genesis", atomically: true, encoding: .utf8)
            try credentials.write(certificateTo: directory + "/tls.crt", keyTo: directory + "/tls.key")
        }

        static func read(from directory: String) throws -> Material {
            func text(_ name: String) throws -> String { try String(contentsOfFile: directory + "/" + name, encoding: .utf8) }
            return Material(
                domain: try UniqueIdentifier(parsing: try text("domain")),
                sequencerKey: try SigningPrivateKey(rawRepresentation: bytes(try text("sequencer.key"))),
                genesis: try text("genesis").split(separator: "\n").map { try Weft.V1.SignedTopologyTransaction(serializedBytes: bytes(String($0))) },
                credentials: try TLSCredentials.read(certificateAt: directory + "/tls.crt", keyAt: directory + "/tls.key"))
        }

        static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

        static func bytes(_ hex: String) throws -> [UInt8] {
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0 else { throw BenchSetupError("odd hex length in a node process's material") }
            return try stride(from: 0, to: digits.count, by: 2).map { index in
                guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else {
                    throw BenchSetupError("bad hex digits in a node process's material")
                }
                return byte
            }
        }
    }

    /// Starts node `number` from the material in `directory`, with `cores` of CPU if given, and
    /// returns once it serves.
    static func start(number: Int, directory: String, url: String, connections: Int, cores: Double?) async throws -> SequencerNodeProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["sequencer-node", directory, String(number), url, String(connections)]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        let budget: CPUBudget?
        do {
            budget = try cores.map { try CPUBudget(name: "weft-bench-node-\(number)", cores: $0, pid: process.processIdentifier) }
        } catch {
            process.terminate()
            throw error
        }
        let node = SequencerNodeProcess(number: number, process: process, output: output, input: input.fileHandleForWriting, budget: budget)
        guard let line = await node.nextLine(), line.hasPrefix("port "), let port = Int(line.dropFirst(5)) else {
            process.waitUntilExit()
            budget?.remove()
            throw BenchSetupError("sequencer node process \(number) exited before serving (its errors are above)")
        }
        node.port = port
        return node
    }

    private init(number: Int, process: Process, output: Pipe, input: FileHandle, budget: CPUBudget?) {
        self.number = number
        self.process = process
        self.input = input
        self.cgroup = budget
        lines = TestSubprocess.lines(of: output)
        iterator = lines.makeAsyncIterator()
    }

    private func nextLine() async -> String? { await iterator.next() }

    /// Returns once the node's topology has `member`.
    func waitUntil(_ member: String) async throws {
        input.write(Data("member \(member)\n".utf8))
        guard await nextLine() == "known \(member)" else {
            throw BenchSetupError("sequencer node process \(number) exited while waiting for \(member)")
        }
    }

    /// Ends the node's input (it stops and exits) and removes its cgroup.
    func stop() async {
        try? input.close()
        while await nextLine() != nil {}
        process.waitUntilExit()
        cgroup?.remove()
    }

    /// CPU seconds of the node's threads so far.
    var cpuSeconds: Double {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).reduce(0) { total, thread in
            total + (Probe.stat("/proc/\(pid)/task/\(thread)/stat")?.seconds ?? 0)
        }
    }
}

/// A cgroup with a CPU quota holding one process: `cores` of CPU time per 10 ms period at
/// most (a short period, so that a node that spent its quota waits milliseconds, not tens).
struct CPUBudget {
    let path: String

    init(name: String, cores: Double, pid: Int32) throws {
        let period = 10_000
        let quota = max(1000, Int(cores * Double(period)))
        let manager = FileManager.default
        func write(_ text: String, _ file: String) throws {
            do {
                try text.write(toFile: file, atomically: false, encoding: .utf8)
            } catch {
                throw BenchSetupError("cannot write \(file) (\(error)): --node-cpu needs root and the cgroup cpu controller")
            }
        }
        if manager.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") {
            // cgroup v1
            path = "/sys/fs/cgroup/cpu/" + name
            if !manager.fileExists(atPath: path) { try manager.createDirectory(atPath: path, withIntermediateDirectories: false) }
            try write(String(period), path + "/cpu.cfs_period_us")
            try write(String(quota), path + "/cpu.cfs_quota_us")
        } else if let controllers = try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.controllers", encoding: .utf8),
            controllers.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "cpu" })
        {
            // cgroup v2
            path = "/sys/fs/cgroup/" + name
            if !manager.fileExists(atPath: path) { try manager.createDirectory(atPath: path, withIntermediateDirectories: false) }
            try write("\(quota) \(period)", path + "/cpu.max")
        } else {
            throw BenchSetupError("--node-cpu needs the cgroup cpu controller (/sys/fs/cgroup/cpu or cgroup v2 with cpu)")
        }
        try write(String(pid), path + "/cgroup.procs")
    }

    /// Removes the cgroup (its process has exited).
    func remove() {
        rmdir(path)
    }
}

struct BenchSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `weft-bench sequencer-node DIR NUMBER URL CONNECTIONS`: the node side of `SequencerNodeProcess`.
enum SequencerNodeMain {
    static func run(_ arguments: [String]) async throws {
        guard arguments.count == 4, let number = Int(arguments[1]), let connections = Int(arguments[3]) else {
            throw BenchSetupError("usage: weft-bench sequencer-node DIR NUMBER URL CONNECTIONS (started by weft-bench sequencer --node-processes)")
        }
        var logger = Logger(label: "weft-bench-node-\(number)") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let material = try SequencerNodeProcess.Material.read(from: arguments[0])
        let tls = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: material.credentials))
        let node = try await SequencerBenchmark.BenchNode.start(
            number: number, url: arguments[2], domain: material.domain, sequencerKey: material.sequencerKey, genesis: material.genesis,
            tls: tls, connections: connections, logger: logger)
        let (lines, continuation) = AsyncStream<String>.makeStream()
        Thread.detachNewThread {
            while let line = Swift.readLine() { continuation.yield(line) }
            continuation.finish()
        }
        say("port \(node.server.port)")
        for await line in lines where line.hasPrefix("member ") {
            let name = String(line.dropFirst(7))
            await node.topology.waitUntil(try MemberID(parsing: name))
            say("known \(name)")
        }
        await node.stop()
    }

    /// A line to the parent, unbuffered.
    private static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
