// What both libraries share: the messages, the certificates, one side's
// interface, and the timed workloads.
import WeftCrypto
import WeftWire

/// One library's server and a client connected to it over TLS on loopback.
protocol RPCSide: AnyObject, Sendable {
    var name: String { get }
    /// A unary call of the echo method.
    func echo(_ request: Weft.V1.FrameMessage) async throws -> Weft.V1.FrameMessage
    /// A server-streaming call, read to its end.
    func stream(_ request: Weft.V1.FrameMessage) async throws -> StreamTally
    func shutdown() async
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Messages and payload bytes read from a server stream.
struct StreamTally: Sendable {
    var messages = 0
    var bytes = 0

    mutating func add(_ message: Weft.V1.FrameMessage) {
        messages += 1
        bytes += message.payload.count
    }
}

/// The messages of both workloads; every one is a `weft.v1.FrameMessage`.
enum BenchMessages {
    static let unaryPayloadBytes = 100
    static let streamPayloadBytes = 4096

    /// The unary request (echoed back): 100 payload bytes.
    static func unaryRequest() -> Weft.V1.FrameMessage {
        .init(payload: (0..<unaryPayloadBytes).map { UInt8(truncatingIfNeeded: $0) })
    }

    /// A server-stream request: the number of responses wanted, 4 bytes little-endian.
    static func streamRequest(count: Int) -> Weft.V1.FrameMessage {
        let count = UInt32(count)
        return .init(payload: (0..<4).map { UInt8(truncatingIfNeeded: count >> (8 * $0)) })
    }

    static func streamCount(_ request: Weft.V1.FrameMessage) -> Int {
        request.payload.prefix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    }

    /// One server-stream response: 4 KiB of payload.
    static func streamResponse() -> Weft.V1.FrameMessage {
        .init(payload: (0..<streamPayloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    }
}

/// The certificates both servers present: a fresh P-256 ECDSA root and a node
/// certificate for `localhost` issued by it (WeftCrypto's `CertificateAuthority`).
struct BenchCertificates: Sendable {
    let root: TLSCredentials
    let node: TLSCredentials

    static func make() throws -> BenchCertificates {
        let root = try CertificateAuthority.makeRoot(commonName: "rpc-compare root")
        let node = try CertificateAuthority.issue(commonName: "rpc-compare node", hostnames: ["localhost"], signedBy: root)
        return BenchCertificates(root: root, node: node)
    }
}

/// The workloads of the comparison.
enum Workload: CaseIterable {
    case unarySingle
    case unaryConcurrent
    case serverStream

    func title(_ settings: Settings) -> String {
        switch self {
        case .unarySingle: "unary 100 B, 1 caller (calls/s)"
        case .unaryConcurrent: "unary 100 B, \(settings.callers) callers (calls/s)"
        case .serverStream: "server stream 4 KiB (MB/s)"
        }
    }

    /// The lowest Weft/gRPC ratio that meets the goal.
    var target: Double {
        switch self {
        case .unarySingle, .unaryConcurrent: 1.5
        case .serverStream: 1.0
        }
    }
}

/// One timed run of a workload on one side.
struct Measurement: Sendable {
    /// calls/s (unary) or MB/s (stream; 1 MB = 10^6 payload bytes).
    var value: Double
    /// Messages per second received (stream), else calls/s.
    var messagesPerSecond: Double
}

/// The command line's settings.
struct Settings: Sendable {
    var seconds = 2.0
    var rounds = 3
    var warmupSeconds = 1.0
    var callers = 64
    var streamMessages = 2048
    /// gRPC's transports batch flushes by default (up to 100 µs); off: every flush goes out at once.
    var grpcFlushCoalescing = true
}

enum Runner {
    static func run(_ workload: Workload, on side: any RPCSide, _ settings: Settings, seconds: Double) async throws -> Measurement {
        switch workload {
        case .unarySingle: try await unary(side, callers: 1, seconds: seconds)
        case .unaryConcurrent: try await unary(side, callers: settings.callers, seconds: seconds)
        case .serverStream: try await stream(side, messages: settings.streamMessages, seconds: seconds)
        }
    }

    /// `callers` tasks, each making echo calls back to back until time is up.
    static func unary(_ side: any RPCSide, callers: Int, seconds: Double) async throws -> Measurement {
        let request = BenchMessages.unaryRequest()
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(seconds)
        let calls = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    var calls = 0
                    while clock.now < end {
                        let response = try await side.echo(request)
                        guard response.payload.count == BenchMessages.unaryPayloadBytes else {
                            throw BenchError("\(side.name): echo answered \(response.payload.count) bytes")
                        }
                        calls += 1
                    }
                    return calls
                }
            }
            return try await group.reduce(0, +)
        }
        let rate = Double(calls) / (clock.now - start).seconds
        return Measurement(value: rate, messagesPerSecond: rate)
    }

    /// Server-stream calls of `messages` responses each, one after another, until time is up.
    static func stream(_ side: any RPCSide, messages: Int, seconds: Double) async throws -> Measurement {
        let request = BenchMessages.streamRequest(count: messages)
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(seconds)
        var total = StreamTally()
        repeat {
            let tally = try await side.stream(request)
            guard tally.messages == messages, tally.bytes == messages * BenchMessages.streamPayloadBytes else {
                throw BenchError("\(side.name): the stream delivered \(tally.messages) messages, \(tally.bytes) bytes")
            }
            total.messages += tally.messages
            total.bytes += tally.bytes
        } while clock.now < end
        let elapsed = (clock.now - start).seconds
        return Measurement(value: Double(total.bytes) / elapsed / 1e6, messagesPerSecond: Double(total.messages) / elapsed)
    }

    /// One echo call and one short stream: both sides answer correctly.
    static func check(_ side: any RPCSide) async throws {
        let request = BenchMessages.unaryRequest()
        guard try await side.echo(request) == request else { throw BenchError("\(side.name): the echo differs from the request") }
        let tally = try await side.stream(BenchMessages.streamRequest(count: 3))
        guard tally.messages == 3, tally.bytes == 3 * BenchMessages.streamPayloadBytes else {
            throw BenchError("\(side.name): a 3-message stream delivered \(tally.messages) messages, \(tally.bytes) bytes")
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The median; of an even count, the mean of the middle two.
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
