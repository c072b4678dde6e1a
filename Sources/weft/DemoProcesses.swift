import Foundation
import WeftTestSupport

/// The demo's node processes (`weft run`), stopped together at the end, on a failure or on
/// Ctrl-C. Waiting for a process and reading its output happen on threads of their own, never
/// on Swift's concurrency pool.
actor DemoProcesses {
    private var started: [DemoNode] = []

    /// Starts `executable arguments…` in `directory`, its standard error appended to `log`.
    func start(_ executable: URL, _ arguments: [String], directory: String, log: String) throws -> DemoNode {
        let node = try DemoNode(executable, arguments, directory: directory, log: log)
        started.append(node)
        return node
    }

    /// Sends SIGTERM to every node still running, the last started first (participants before
    /// the domain), and waits for each to exit (SIGKILL after 30 s); their exit statuses.
    @discardableResult
    func stopAll() async -> [(name: String, status: Int32)] {
        var result: [(name: String, status: Int32)] = []
        let nodes = started.reversed()
        started = []
        for node in nodes {
            result.append((node.name, await node.stop(gracePeriod: 30)))
        }
        return result
    }

    /// Runs `executable arguments…` in `directory` to its end: exit status, standard output
    /// and standard error.
    static func runToEnd(_ executable: URL, _ arguments: [String], directory: String) async throws -> (
        status: Int32, output: String, error: String
    ) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let process = Process()
                process.executableURL = executable
                process.arguments = arguments
                process.currentDirectoryURL = URL(fileURLWithPath: directory)
                let output = Pipe()
                let error = Pipe()
                process.standardOutput = output
                process.standardError = error
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                let errorBytes = DemoBox<Data>(Data())
                let errorDone = DispatchSemaphore(value: 0)
                Thread.detachNewThread {
                    errorBytes.value = error.fileHandleForReading.readDataToEndOfFile()
                    errorDone.signal()
                }
                let outputBytes = output.fileHandleForReading.readDataToEndOfFile()
                errorDone.wait()
                process.waitUntilExit()
                continuation.resume(
                    returning: (
                        process.terminationStatus, String(decoding: outputBytes, as: UTF8.self),
                        String(decoding: errorBytes.value, as: UTF8.self)
                    ))
            }
        }
    }
}

/// A value written by one thread before it signals and read by another after.
final class DemoBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// One `weft run` process of the demo: its standard output as lines (a node prints one when it
/// serves), its standard error in a log file.
final class DemoNode: @unchecked Sendable {
    let name: String
    private let process = Process()
    private let lines: AsyncStream<String>
    // Used by one task at a time (the demo's steps run in order).
    private lazy var iterator = lines.makeAsyncIterator()
    private let lock = NSLock()
    private var status: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []

    init(_ executable: URL, _ arguments: [String], directory: String, log: String) throws {
        name = arguments.first { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) } ?? arguments.joined(separator: " ")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        guard let logFile = FileHandle(forWritingAtPath: log) else {
            throw DemoError(description: "cannot write the log file \(log)")
        }
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardError = logFile
        let output = Pipe()
        process.standardOutput = output
        lines = TestSubprocess.lines(of: output)
        process.terminationHandler = { [weak self] process in self?.exited(process.terminationStatus) }
        do {
            try process.run()
        } catch {
            try? output.fileHandleForWriting.close()  // ends the lines
            throw error
        }
    }

    /// The next line the node printed; nil once it exited.
    func nextLine() async -> String? {
        await iterator.next()
    }

    /// SIGTERM, then its exit status; SIGKILL if it has not exited after `gracePeriod` seconds.
    func stop(gracePeriod: Double) async -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let pid = process.processIdentifier
        let killer = Task {
            try await Task.sleep(for: .seconds(gracePeriod))
            kill(pid, SIGKILL)
        }
        let status = await exitStatus()
        killer.cancel()
        return status
    }

    func exitStatus() async -> Int32 {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let status {
                lock.unlock()
                continuation.resume(returning: status)
                return
            }
            waiters.append(continuation)
            lock.unlock()
        }
    }

    private func exited(_ code: Int32) {
        lock.lock()
        status = code
        let ready = waiters
        waiters = []
        lock.unlock()
        for waiter in ready { waiter.resume(returning: code) }
    }
}

/// Ctrl-C during the demo: every node is stopped (SIGTERM, drain), the cleanups run (the
/// throw-away PostgreSQL server is removed), and the demo exits 130.
final class InterruptWatch: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var cleanups: [@Sendable () async -> Void] = []
    private var interrupted = false

    init(processes: DemoProcesses) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock()
            let cleanups = self.cleanups
            let again = self.interrupted
            self.interrupted = true
            self.lock.unlock()
            guard !again else { return }
            show("\ninterrupted: stopping every node …")
            Task {
                for (name, status) in await processes.stopAll() { show("   \(name) exited \(status)") }
                for cleanup in cleanups { await cleanup() }
                show("stopped")
                exit(130)
            }
        }
        source.resume()
    }

    func onInterrupt(_ cleanup: @escaping @Sendable () async -> Void) {
        lock.lock()
        cleanups.append(cleanup)
        lock.unlock()
    }

    /// After Ctrl-C, never returns: the clean-up under way ends the process.
    func waitIfInterrupted() async {
        guard lock.withLock({ interrupted }) else { return }
        while true { try? await Task.sleep(for: .seconds(60)) }
    }

    func cancel() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}

/// Writes a line of the demo's narration at once (unbuffered, also through a pipe): progress
/// shows while it works.
func show(_ text: String = "") {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
