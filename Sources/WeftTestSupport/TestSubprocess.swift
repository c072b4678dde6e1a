public import Foundation

/// Runs a helper program (Python, openssl) to completion without blocking Swift's cooperative
/// thread pool: the waiting happens on a thread of its own.
///
/// Waiting with `readDataToEndOfFile()`/`waitUntilExit()` inside an async test holds one of the
/// pool's few threads (two on a 2-core machine); when the helper program calls back into a
/// server in the same process, whose handlers need the pool, two such tests at once starve it
/// and both time out.
public enum TestSubprocess {
    public struct Outcome: Sendable {
        public let status: Int32
        public let output: String
        public let error: String
    }

    /// Runs `arguments` (through `env`) to its end. Standard input is empty (`/dev/null`), so a
    /// program that reads it, like `openssl s_client`, ends instead of waiting for input that
    /// never comes. With `mergingError`, standard error goes into the same pipe as standard
    /// output, interleaved as written (for a transcript shown whole when an expectation fails),
    /// and `error` is empty.
    public static func run(
        _ arguments: [String], environment: [String: String]? = nil, mergingError: Bool = false
    ) async throws -> Outcome {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Outcome, any Error>) in
            Thread.detachNewThread {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = arguments
                if let environment { process.environment = environment }
                let output = Pipe()
                let error = mergingError ? nil : Pipe()
                process.standardInput = FileHandle.nullDevice
                process.standardOutput = output
                process.standardError = error ?? output
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                // Read both pipes to their ends (a separate stderr on a second thread) so neither fills up.
                let errorData = ErrorBytes()
                let errorDone = DispatchSemaphore(value: 0)
                if let error {
                    Thread.detachNewThread {
                        errorData.bytes = error.fileHandleForReading.readDataToEndOfFile()
                        errorDone.signal()
                    }
                } else {
                    errorDone.signal()
                }
                let outputData = output.fileHandleForReading.readDataToEndOfFile()
                errorDone.wait()
                process.waitUntilExit()
                continuation.resume(returning: Outcome(
                    status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                    error: String(decoding: errorData.bytes, as: UTF8.self)))
            }
        }
    }
}

/// Standard error's bytes, written by the reading thread before it signals, read after.
private final class ErrorBytes: @unchecked Sendable {
    var bytes = Data()
}

extension TestSubprocess {
    /// What a child process writes to `pipe`, as lines (without their newlines), read on a
    /// thread of its own so that no pool thread blocks; the stream ends when the child closes
    /// its end (exits). A last line without a newline is yielded too.
    public static func lines(of pipe: Pipe) -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        Thread.detachNewThread {
            var pending = ""
            while true {
                let data = pipe.fileHandleForReading.availableData
                if data.isEmpty { break }
                pending += String(decoding: data, as: UTF8.self)
                while let newline = pending.firstIndex(of: "\n") {
                    continuation.yield(String(pending[..<newline]))
                    pending = String(pending[pending.index(after: newline)...])
                }
            }
            if !pending.isEmpty { continuation.yield(pending) }
            continuation.finish()
        }
        return stream
    }
}
