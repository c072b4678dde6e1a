public import Logging
import Synchronization

/// A W3C trace context (`traceparent`: `00-<trace id>-<span id>-<flags>`): what lets an
/// operator follow one Ledger API call through the submitting participant, the sequencer, the
/// mediator and every participant that validates it.
///
/// The transport binds each incoming call to `TraceContext.current` (the caller's trace with a
/// span of its own, or a new trace when the caller sent none), so every log line written while
/// serving the call carries `trace_id` and `span_id` (`loggingMetadata`, installed with
/// `LoggingSystem.bootstrap`). Nodes carry the trace on through the sequencer: a submission's
/// `traceparent` is stored with its event and delivered with it, and whoever processes the
/// event binds it again.
public struct TraceContext: Sendable, Hashable, CustomStringConvertible {
    /// 32 lower-case hex digits, not all zero.
    public let traceID: String
    /// 16 lower-case hex digits, not all zero: this hop's span.
    public let spanID: String
    /// The caller's sampling decision (flag 01), passed on unchanged.
    public let sampled: Bool

    /// The trace context of the task: the call or event being processed, if any.
    @TaskLocal public static var current: TraceContext?

    /// Parses a `traceparent` value; nil for anything that is not version 00 with valid ids
    /// (a malformed header starts a new trace rather than failing the call).
    public init?(traceparent: String) {
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", parts[3].count == 2,
            Self.isID(parts[1], length: 32), Self.isID(parts[2], length: 16),
            let flags = UInt8(parts[3], radix: 16)
        else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        sampled = flags & 1 == 1
    }

    private init(traceID: String, spanID: String, sampled: Bool) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    /// A new trace with a root span.
    public static func newTrace() -> TraceContext {
        TraceContext(traceID: randomHex(words: 2), spanID: randomHex(words: 1), sampled: true)
    }

    /// The same trace, a new span: what a node processing this context's call or event logs
    /// under and passes on.
    public func childSpan() -> TraceContext {
        TraceContext(traceID: traceID, spanID: Self.randomHex(words: 1), sampled: sampled)
    }

    /// The `traceparent` header value.
    public var traceparent: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }

    public var description: String { traceparent }

    /// `trace_id` and `span_id`, as log metadata.
    public var logMetadata: Logger.Metadata { ["trace_id": .string(traceID), "span_id": .string(spanID)] }

    /// Adds `trace_id` and `span_id` of `TraceContext.current` to every log line written while
    /// it is bound: pass it to `LoggingSystem.bootstrap(_:metadataProvider:)`.
    public static let loggingMetadata = Logger.MetadataProvider { current?.logMetadata ?? [:] }

    /// Runs `body` with the trace of `traceparent` (a new span of it), or `fallback` when it is
    /// empty or malformed.
    public static func withSpan<Result>(
        of traceparent: String, orElse fallback: TraceContext? = nil, isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> Result
    ) async rethrows -> Result {
        let trace = TraceContext(traceparent: traceparent)?.childSpan() ?? fallback
        return try await $current.withValue(trace, operation: body, isolation: isolation)
    }

    private static func isID(_ text: Substring, length: Int) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
            && text.utf8.contains { $0 != 48 }
    }

    /// `words` × 16 lower-case hex digits of fresh ids, not all zero.
    ///
    /// Ids need to be unique, not secret (they travel in clear headers and logs, and a caller
    /// may send any `traceparent` it likes), and one is made for every call and every event
    /// processed: reading the system's generator a byte at a time cost 24 `getrandom` calls
    /// per new trace, 3 % of the sequencer benchmark's CPU. They come from SplitMix64 instead:
    /// a counter seeded once from the system's generator, advanced atomically, and mixed by a
    /// bijection, so no two ids of a process repeat before 2^64 words.
    static func randomHex(words: Int) -> String {
        precondition(words == 1 || words == 2)
        while true {
            let first = nextIDWord()
            let second = words == 2 ? nextIDWord() : 0
            guard first != 0 || second != 0 else { continue }
            return String(unsafeUninitializedCapacity: words * 16) { buffer in
                let digits: StaticString = "0123456789abcdef"
                digits.withUTF8Buffer { digits in
                    for index in 0..<(words * 16) {
                        let word = index < 16 ? first : second
                        buffer[index] = digits[Int((word >> UInt64(60 - 4 * (index % 16))) & 0xF)]
                    }
                }
                return words * 16
            }
        }
    }

    private static let idCounter = Atomic<UInt64>({
        var system = SystemRandomNumberGenerator()
        return system.next()
    }())

    /// The next word of the SplitMix64 sequence (Steele, Lea and Flood, 2014).
    private static func nextIDWord() -> UInt64 {
        var z = idCounter.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
