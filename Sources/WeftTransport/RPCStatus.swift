public import WeftWire

/// gRPC's status codes, as `weft.v1.Status.code` carries them.
public enum StatusCode: UInt32, Sendable, Hashable, CaseIterable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16
}

/// A call's failure: a gRPC status code, a message that tells the operator
/// what to do, and Weft's stable error id (e.g. `RPC_UNKNOWN_METHOD`).
public struct RPCError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    public var errorID: String
    /// Names the server's log line for this failure ("" if none), so an
    /// operator can find the details the message leaves out.
    public var correlationID: String

    public init(_ code: StatusCode, _ message: String, errorID: String, correlationID: String = "") {
        self.code = code
        self.message = message
        self.errorID = errorID
        self.correlationID = correlationID
    }

    /// From the wire; an unknown code number becomes UNKNOWN.
    public init(_ status: Weft.V1.Status) {
        code = StatusCode(rawValue: status.code) ?? .unknown
        message = status.message
        errorID = status.errorID
        correlationID = status.correlationID
    }

    /// On the wire: the message at most 4 KiB and without NUL bytes, so that the frame carrying
    /// it always encodes (a close that did not would now end the whole connection).
    public var status: Weft.V1.Status {
        .init(code: code.rawValue, message: Self.wireText(message), errorID: Self.wireText(errorID), correlationID: correlationID)
    }

    /// `text` without NULs, cut to at most 4,096 UTF-8 bytes at a character boundary.
    static func wireText(_ text: String) -> String {
        guard text.utf8.count > 4_096 || text.utf8.contains(0) else { return text }
        var result = ""
        for character in text {
            let kept: Character = character == "\u{0}" ? "\u{FFFD}" : character
            guard result.utf8.count + kept.utf8.count <= 4_096 - 3 else { return result + "…" }
            result.append(kept)
        }
        return result
    }

    public var description: String {
        "\(code) (\(errorID)): \(message)" + (correlationID.isEmpty ? "" : " [correlation id \(correlationID)]")
    }

    /// A fresh id for a failure's log line: 16 random hex digits.
    static func makeCorrelationID() -> String {
        String(UInt64.random(in: .min ... .max), radix: 16)
    }
}
