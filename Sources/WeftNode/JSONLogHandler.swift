public import Logging
import Foundation
import WeftTransport
import WeftWire
import Synchronization

/// Writes each log event as one line of JSON on standard error:
/// `{"time":"…","level":"info","logger":"weft.rpc.server","message":"…", …metadata}`.
///
/// One event per line so that `jq`, Loki or any log shipper can read it;
/// metadata keys are the event's (`trace_id`, `node`, `stream`, …).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    /// Metadata of the task's context on every line: `trace_id` and `span_id` of the call or
    /// event being processed (`TraceContext.loggingMetadata`).
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    /// Makes every logger of the process write JSON lines with the trace of the task
    /// (`TraceContext.loggingMetadata`) on each: what `weft run` does at start.
    public static func bootstrap() {
        LoggingSystem.bootstrap(
            { label, provider in JSONLogHandler(label: label, metadataProvider: provider) },
            metadataProvider: TraceContext.loggingMetadata)
    }

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
        if let level = ProcessInfo.processInfo.environment["WEFT_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) {
            logLevel = level
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("time", Self.timestamp()), ("level", event.level.rawValue), ("logger", label), ("message", event.message.description),
        ]
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { fields.append((key, "\(value)")) }
        var line = "{"
        for (index, field) in fields.enumerated() {
            line += (index == 0 ? "" : ",") + Self.quote(field.0) + ":" + Self.quote(field.1)
        }
        line += "}\n"
        Self.output.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    private static let output = Mutex(())

    static func timestamp() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var broken = tm()
        var seconds = time.tv_sec
        gmtime_r(&seconds, &broken)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", broken.tm_year + 1900, broken.tm_mon + 1, broken.tm_mday, broken.tm_hour,
            broken.tm_min, broken.tm_sec, time.tv_nsec / 1000)
    }

    /// A JSON string literal.
    static func quote(_ text: String) -> String { JSONValue.quoted(text) }
}
