import Foundation
public import Logging
public import WeftTransport

/// The audit trail of a node's APIs: one structured line per admin and Ledger API call —
/// who called (the token's subject, "anonymous" without token checks, "unauthenticated"
/// when the token was refused), from where, which method, for which parties, and how it
/// ended (gRPC status and Weft error id), with the caller's trace id.
///
/// The lines go to their own logger (label `weft.audit`), so an operator can keep them
/// apart from the operational log: `AuditFileLogHandler` writes them to a rotating file,
/// or the node's standard handler to its output for the platform to collect.
public struct AuditLog: Sendable {
    /// The logger label of audit lines.
    public static let label = "weft.audit"
    /// The message of every audit line; the fields are its metadata (`AuditLogKey`).
    public static let message = "api call"

    let logger: Logger

    public init(logger: Logger = Logger(label: AuditLog.label)) {
        self.logger = logger
    }

    /// Writes the line of one finished call.
    public func record(
        _ context: RPCCallContext, _ record: CallRecord, code: StatusCode, errorID: String, elapsed: Duration
    ) {
        let caller = record.subject ?? (record.tokenRefused ? "unauthenticated" : "anonymous")
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        logger.info(
            "\(Self.message)",
            metadata: [
                AuditLogKey.caller: "\(caller)",
                AuditLogKey.peer: "\(context.remoteAddress.map { "\($0)" } ?? "")",
                AuditLogKey.method: "\(context.method)",
                AuditLogKey.actAs: "\(record.actAs.joined(separator: ","))",
                AuditLogKey.readAs: "\(record.readAs.joined(separator: ","))",
                AuditLogKey.admin: "\(record.admin)",
                AuditLogKey.code: "\(Self.grpcName(code))",
                AuditLogKey.errorID: "\(errorID)",
                AuditLogKey.traceID: "\(TraceContext.current?.traceID ?? context.traceID ?? "")",
                AuditLogKey.durationMilliseconds: "\(String(format: "%.3f", milliseconds))",
            ])
    }

    /// gRPC's canonical name of `code`, e.g. PERMISSION_DENIED.
    public static func grpcName(_ code: StatusCode) -> String {
        var name = ""
        for character in "\(code)".trimmingCharacters(in: CharacterSet(charactersIn: "`")) {
            if character.isUppercase { name += "_" }
            name += character.uppercased()
        }
        return name
    }
}

/// The fields of an audit line, one list so that readers (and tests) agree with the writer.
public enum AuditLogKey {
    public static let caller = "caller"
    public static let peer = "peer"
    public static let method = "method"
    public static let actAs = "act_as"
    public static let readAs = "read_as"
    public static let admin = "admin"
    public static let code = "code"
    public static let errorID = "error_id"
    public static let traceID = "trace_id"
    public static let durationMilliseconds = "duration_ms"
    /// The fields cut to keep the line within `AuditFileLogHandler.lineBytesMax`, comma-separated;
    /// absent when nothing was cut.
    public static let truncated = "truncated"
}
