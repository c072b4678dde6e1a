import CoreMetrics

/// The RPC server's metrics (swift-metrics; served by a node's `/metrics`):
///
/// - `weft_rpc_server_calls_total{method, code}`: calls that ended, by method
///   and gRPC status code name (`OK`, `UNAVAILABLE`, …);
/// - `weft_rpc_server_call_duration_seconds{method}`: from the call's open frame
///   to its close, including streaming time;
/// - `weft_rpc_server_refused_total{code}`: calls refused before a handler ran
///   (unknown method, too many streams, oversized metadata, draining).
///
/// Labels stay bounded: `method` is always one the server routes (a refused
/// call's method is not a label, since a client chooses it).
enum RPCMetrics {
    static func finished(method: String, code: StatusCode, after duration: Duration) {
        Counter(label: "weft_rpc_server_calls_total", dimensions: [("method", method), ("code", code.name)]).increment()
        Timer(label: "weft_rpc_server_call_duration_seconds", dimensions: [("method", method)]).recordNanoseconds(duration.nanoseconds)
    }

    static func refused(code: StatusCode) {
        Counter(label: "weft_rpc_server_refused_total", dimensions: [("code", code.name)]).increment()
    }
}

extension StatusCode {
    /// The code's canonical gRPC name (`OK`, `INVALID_ARGUMENT`, …).
    public var name: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
