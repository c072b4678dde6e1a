import Foundation
import WeftTestSupport

/// The demo's node processes (`weft run`), stopped together at the end, on a failure or on
/// Ctrl-C, SIGTERM or SIGHUP (`InterruptWatch`). Waiting for a process and reading its output
/// happen on threads of their own, never on Swift's concurrency pool.
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

/// Ctrl-C (SIGINT), SIGTERM (`kill`, `timeout`, a service manager) or SIGHUP (its terminal
/// closed) during the demo: every node is stopped (SIGTERM, drain), the cleanups run (the
/// throw-away PostgreSQL server is removed), and the demo exits 128 + the signal's number (130
/// after Ctrl-C), as a shell reports a process the signal ended.
///
/// Each of the three is handled, not only Ctrl-C, because the node processes never see the
/// demo's signals: Foundation's `Process` starts each in a process group of its own, so a
/// signal the demo died of would leave every `weft run` running, orphaned.
final class InterruptWatch: @unchecked Sendable {
    /// The signals that stop the demo, with their names for the narration.
    private static let signals: [(number: Int32, name: String)] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")]
    private let sources: [DispatchSourceSignal]
    private let lock = NSLock()
    private var cleanups: [@Sendable () async -> Void] = []
    private var interrupted = false

    init(processes: DemoProcesses) {
        sources = Self.signals.map { handled in
            // Ignored, so that the dispatch source receives it instead of the default action.
            signal(handled.number, SIG_IGN)
            return DispatchSource.makeSignalSource(signal: handled.number, queue: .global())
        }
        for (source, handled) in zip(sources, Self.signals) {
            source.setEventHandler { [weak self] in self?.stop(processes, after: handled.name, number: handled.number) }
            source.resume()
        }
    }

    /// Stops every node and runs the cleanups, once whatever signals follow, then exits.
    private func stop(_ processes: DemoProcesses, after name: String, number: Int32) {
        lock.lock()
        let cleanups = self.cleanups
        let again = interrupted
        interrupted = true
        lock.unlock()
        guard !again else { return }
        show("\ninterrupted by \(name): stopping every node …")
        Task {
            for (node, status) in await processes.stopAll() { show("   \(node) exited \(status)") }
            for cleanup in cleanups { await cleanup() }
            show("stopped")
            exit(128 + number)
        }
    }

    func onInterrupt(_ cleanup: @escaping @Sendable () async -> Void) {
        lock.lock()
        cleanups.append(cleanup)
        lock.unlock()
    }

    /// After a stop signal, never returns: the clean-up under way ends the process.
    func waitIfInterrupted() async {
        guard lock.withLock({ interrupted }) else { return }
        while true { try? await Task.sleep(for: .seconds(60)) }
    }

    func cancel() {
        for source in sources { source.cancel() }
        for handled in Self.signals { signal(handled.number, SIG_DFL) }
    }
}

/// Writes a line of the demo's narration at once (unbuffered, also through a pipe): progress
/// shows while it works.
///
/// A write that fails is dropped: after SIGHUP the terminal is gone (EIO), and `write(_:)`
/// would trap there, killing the demo before it stops its nodes.
func show(_ text: String = "") {
    try? FileHandle.standardOutput.write(contentsOf: Data((text + "\n").utf8))
}
