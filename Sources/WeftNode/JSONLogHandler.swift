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
    /// A `WEFT_LOG_LEVEL` it does not know is reported in one warning line, so a typo
    /// (`WARN`, `verbose`) does not pass for the default level unnoticed.
    public static func bootstrap() {
        LoggingSystem.bootstrap(
            { label, provider in JSONLogHandler(label: label, metadataProvider: provider) },
            metadataProvider: TraceContext.loggingMetadata)
        if let text = ProcessInfo.processInfo.environment["WEFT_LOG_LEVEL"], let warning = unknownLevelWarning(text) {
            Logger(label: "weft").warning("\(warning)")
        }
    }

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
        if let level = Self.environmentLevel { logLevel = level }
    }

    /// `WEFT_LOG_LEVEL`, read once: every logger's handler takes it.
    private static let environmentLevel = ProcessInfo.processInfo.environment["WEFT_LOG_LEVEL"].flatMap(level(named:))

    /// The level `text` names, in any case, with `warn` for `warning` (what other tools
    /// call it); nil for an unknown name.
    static func level(named text: String) -> Logger.Level? {
        let name = text.trimmingCharacters(in: .whitespaces).lowercased()
        return Logger.Level(rawValue: name == "warn" ? "warning" : name)
    }

    /// What to tell the operator when `WEFT_LOG_LEVEL` names no level; nil when it does.
    static func unknownLevelWarning(_ text: String) -> String? {
        guard level(named: text) == nil else { return nil }
        let accepted = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
        return "WEFT_LOG_LEVEL=\(text) is not a log level; logging at info. Accepted: \(accepted) (any case; warn for warning)"
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
