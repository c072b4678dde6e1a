import Foundation
import WeftCrypto

/// The `weft` executable of this build (or another program, e.g. `dumpcap`), run as a real
/// process: for tests where a signal, an exit status or a crash is the point.
final class WeftProcess: @unchecked Sendable {
    // Mutable state is touched only from the readability handler's queue and after exit.
    let process = Process()
    private let lines = AsyncStream<String>.makeStream()
    private lazy var iterator = lines.stream.makeAsyncIterator()
    private let errorOutput = Pipe()
    private let lock = NSLock()
    private var stderrText = ""
    private var stdoutPending = ""
    /// Finishes when the stderr reader has seen end of file (see `run`).
    private let stderrClosed = AsyncStream<Never>.makeStream()

    static var executable: URL {
        var root = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) { root.deleteLastPathComponent() }
        // The test bundle sits next to the executables of the same build.
        let bundle = Bundle.main.bundleURL.deletingLastPathComponent()
        let beside = bundle.appendingPathComponent("weft")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return root.appendingPathComponent(".build/debug/weft")
    }

    /// Starts `weft arguments…` (or `executable arguments…`) in `directory`; its stdout lines
    /// arrive on `lines`.
    ///
    /// Both pipes are read by threads of their own with blocking reads until end of file:
    /// Foundation's readability handlers on Linux can miss the end of a short-lived
    /// process's output under load, which hung tests on a busy CI machine.
    init(_ arguments: [String], directory: String, environment: [String: String] = [:], executable: URL? = nil) throws {
        process.executableURL = executable ?? Self.executable
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = errorOutput
        try process.run()
        // The parent's copies of the write ends must close, or the reads never see end of file.
        try? output.fileHandleForWriting.close()
        try? errorOutput.fileHandleForWriting.close()
        let continuation = lines.continuation
        let stdout = output.fileHandleForReading.fileDescriptor
        let stderr = errorOutput.fileHandleForReading.fileDescriptor
        Thread.detachNewThread { [self] in
            Self.readToEnd(stdout) { chunk in
                let complete: [String] = self.lock.withLock {
                    self.stdoutPending += String(decoding: chunk, as: UTF8.self)
                    var lines: [String] = []
                    while let newline = self.stdoutPending.firstIndex(of: "\n") {
                        lines.append(String(self.stdoutPending[..<newline]))
                        self.stdoutPending = String(self.stdoutPending[self.stdoutPending.index(after: newline)...])
                    }
                    return lines
                }
                for line in complete { continuation.yield(line) }
            }
            continuation.finish()
        }
        Thread.detachNewThread { [self] in
            Self.readToEnd(stderr) { chunk in
                self.lock.withLock { self.stderrText += String(decoding: chunk, as: UTF8.self) }
            }
            self.stderrClosed.continuation.finish()
        }
        // Keep the pipes' read ends open as long as this object.
        pipes = [output, errorOutput]
    }

    private var pipes: [Pipe] = []

    /// Blocking reads of `descriptor` until end of file, each chunk handed to `body`.
    private static func readToEnd(_ descriptor: Int32, _ body: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                body(Array(buffer[..<count]))
            } else if count == 0 || errno != EINTR {
                return
            }
        }
    }

    /// The next line the process prints on stdout, or nil when it closed stdout.
    /// Not to be called concurrently (one reader per process).
    func nextLine() async -> String? {
        await iterator.next()
    }

    /// Everything written on stderr so far.
    var standardError: String { lock.withLock { stderrText } }

    /// Waits until stderr contains `text` (a program that reports readiness there, like
    /// dumpcap's `File:` line): true when it does, false when `timeout` passes first or the
    /// process exits without it. Polls, as stderr is collected by a reading thread.
    func waitForStandardError(containing text: String, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if standardError.contains(text) { return true }
            if !process.isRunning { return standardError.contains(text) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the process to exit and returns its status.
    func exitStatus() async -> Int32 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                self.process.waitUntilExit()
                continuation.resume(returning: self.process.terminationStatus)
            }
        }
    }

    /// Runs `weft arguments…` to completion: (status, stdout, stderr).
    static func run(_ arguments: [String], directory: String, environment: [String: String] = [:]) async throws -> (Int32, String, String) {
        let process = try WeftProcess(arguments, directory: directory, environment: environment)
        var output = ""
        while let line = await process.nextLine() { output += line + "\n" }
        let status = await process.exitStatus()
        // The exit can come before the stderr thread has read the last bytes: wait for its end of file.
        for await _ in process.stderrClosed.stream {}
        return (status, output, process.standardError)
    }
}

/// A directory with a domain root CA and a certificate for `localhost`, as an operator makes with `weft certs`.
struct NodeDirectory {
    let path: String
    let ca: TLSCredentials
    /// The domain's id for a sequencer's configuration, from a fresh namespace key.
    let domainID: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-node-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path + "/certs", withIntermediateDirectories: true)
        ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        try ca.write(certificateTo: path + "/certs/ca.pem", keyTo: path + "/certs/ca-key.pem")
        let node = try CertificateAuthority.issue(commonName: "sequencer1", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
        try node.write(certificateTo: path + "/certs/sequencer1.pem", keyTo: path + "/certs/sequencer1-key.pem")
        let namespace = try SigningPrivateKey.generate()
        domainID = "domain1::\(namespace.publicKey.fingerprint)"
        try KeyFile.write(try SigningPrivateKey.generate(), to: path + "/sequencer-key.pem")
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
