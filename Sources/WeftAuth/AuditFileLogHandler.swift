import Foundation
public import Logging
import Synchronization

/// Where audit lines go: a file rotated by size, or standard output for a platform that
/// collects each container's output.
public enum AuditDestination: Sendable {
    case file(RotatingFile)
    case standardOutput
}

/// Writes each log event as one line of JSON — `time`, `level`, `logger`, `message` and the
/// event's metadata, keys sorted — to an `AuditDestination`. Used for the `weft.audit`
/// logger, whose lines must stay apart from the node's operational log.
///
/// A line is at most `lineBytesMax` bytes: longer values are cut, and the line names them in
/// `truncated` (`AuditLogKey.truncated`).
public struct AuditFileLogHandler: LogHandler {
    /// The longest line written, in bytes, line break excluded. An audit line is a few
    /// hundred bytes; one of megabytes, made of what a caller sent, would rotate earlier lines
    /// out of the file (`RotatingFile` keeps a bounded number of bytes).
    public static let lineBytesMax = 16 << 10
    /// The shortest a cut value is kept, in bytes: below it a line is written with its fixed
    /// fields only.
    static let cutValueBytesMin = 64

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let destination: AuditDestination

    public init(label: String, destination: AuditDestination) {
        self.label = label
        self.destination = destination
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [:]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged { object[key] = "\(value)" }
        object["time"] = Self.timestamp()
        object["level"] = event.level.rawValue
        object["logger"] = label
        object["message"] = event.message.description
        guard var line = Self.line(object) else { return }
        line.append(UInt8(ascii: "\n"))
        switch destination {
        case .file(let file): file.write(Array(line))
        case .standardOutput: Self.output.withLock { _ in FileHandle.standardOutput.write(line) }
        }
    }

    private static let output = Mutex(())

    /// `object` as one line of JSON of at most `maximumBytes` bytes. When the whole line is
    /// longer, every value over a limit is cut to it, `…(cut N of M bytes)` appended, and the
    /// cut keys are listed in `truncated`; the limit halves until the line fits.
    static func line(_ object: [String: String], maximumBytes: Int = AuditFileLogHandler.lineBytesMax) -> Data? {
        guard let whole = json(object) else { return nil }
        if whole.count <= maximumBytes { return whole }
        var limit = maximumBytes / 2
        while limit >= cutValueBytesMin {
            var cut = object
            var keys: [String] = []
            for (key, value) in object where value.utf8.count > limit {
                let kept = value.utf8Prefix(maximumBytes: limit)
                let total = value.utf8.count
                cut[key] = kept + "…(cut \(total - kept.utf8.count) of \(total) bytes)"
                keys.append(key)
            }
            cut[AuditLogKey.truncated] = keys.sorted().joined(separator: ",")
            if let line = json(cut), line.count <= maximumBytes { return line }
            limit /= 2
        }
        // Only a line of very many fields gets here: what identifies it is kept.
        var fixed = object.filter { ["time", "level", "logger"].contains($0.key) }
        fixed["message"] = object["message"]?.utf8Prefix(maximumBytes: cutValueBytesMin)
        fixed[AuditLogKey.truncated] = "all fields: the line was \(whole.count) bytes"
        return json(fixed)
    }

    private static func json(_ object: [String: String]) -> Data? {
        try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    }
}

extension AuditFileLogHandler {
    /// Now in UTC, ISO 8601 with microseconds, as the node's JSON log writes it (no shared
    /// formatter object: log handlers are called from any thread).
    static func timestamp() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var broken = tm()
        var seconds = time.tv_sec
        gmtime_r(&seconds, &broken)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", broken.tm_year + 1900, broken.tm_mon + 1, broken.tm_mday,
            broken.tm_hour,
            broken.tm_min, broken.tm_sec, time.tv_nsec / 1000)
    }
}

/// An append-only file that rotates by size: when a line would take it past
/// `maximumBytes`, `path` becomes `path.1` (`path.1` becomes `path.2`, …) and a new file
/// starts; at most `keptFiles` rotated files are kept. Lines are never split across files.
///
/// Writes are blocking `write(2)` calls under a lock, as any log handler's are; a failure
/// is reported on standard error (the audit logger cannot log its own failure).
public final class RotatingFile: Sendable {
    public let path: String
    public let maximumBytes: Int
    public let keptFiles: Int

    private struct State {
        var descriptor: Int32
        var size: Int
    }

    private let state: Mutex<State>

    /// Opens (or creates, mode 0600: audit lines name who did what) `path` for appending.
    public init(path: String, maximumBytes: Int, keptFiles: Int) throws {
        precondition(maximumBytes > 0 && keptFiles >= 0)
        self.path = path
        self.maximumBytes = maximumBytes
        self.keptFiles = keptFiles
        let (descriptor, size) = try Self.open(path)
        state = Mutex(State(descriptor: descriptor, size: size))
    }

    deinit {
        state.withLock { if $0.descriptor >= 0 { _ = close($0.descriptor) } }
    }

    private static func open(_ path: String) throws -> (Int32, Int) {
        let descriptor = Foundation.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw CocoaError(
                .fileWriteUnknown,
                userInfo: [
                    NSFilePathErrorKey: path,
                    NSLocalizedDescriptionKey: "cannot open \(path): \(String(cString: strerror(errno)))",
                ])
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            _ = close(descriptor)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        return (descriptor, Int(status.st_size))
    }

    /// Appends `bytes` (one whole line), rotating first if they would not fit.
    public func write(_ bytes: [UInt8]) {
        state.withLock { state in
            if state.descriptor < 0 { reopen(&state) }  // an earlier reopen failed: try again
            if state.size > 0, state.size + bytes.count > maximumBytes { rotate(&state) }
            var written = 0
            while written < bytes.count {
                let result = bytes.withUnsafeBytes {
                    Foundation.write(state.descriptor, $0.baseAddress! + written, bytes.count - written)
                }
                if result < 0, errno == EINTR { continue }
                guard result > 0 else {
                    Self.report(
                        "cannot write the audit file \(path): \(String(cString: strerror(errno))); audit lines are being lost"
                    )
                    return
                }
                written += result
            }
            state.size += written
        }
    }

    private func rotate(_ state: inout State) {
        if state.descriptor >= 0 { _ = close(state.descriptor) }
        if keptFiles == 0 {
            _ = unlink(path)
        } else {
            for index in stride(from: keptFiles - 1, through: 1, by: -1) {
                _ = rename("\(path).\(index)", "\(path).\(index + 1)")
            }
            _ = rename(path, "\(path).1")
        }
        reopen(&state)
    }

    private func reopen(_ state: inout State) {
        do {
            (state.descriptor, state.size) = try Self.open(path)
        } catch {
            Self.report("cannot reopen the audit file \(path): \(error.localizedDescription)")
            state.descriptor = -1
            state.size = 0
        }
    }

    private static func report(_ text: String) {
        FileHandle.standardError.write(Data("weft.audit: \(text)\n".utf8))
    }
}
