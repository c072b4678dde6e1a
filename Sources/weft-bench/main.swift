// weft-bench: Weft's benchmarks. Each prints its figures next to a baseline
// measured in the same run. Build in release:
//
//   swift run -c release weft-bench wire [--seconds-per-case S]
//
// Results are recorded in docs/benchmarks.md.
@_spi(Benchmarks) import WeftWire
import WeftTestSupport

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Timing

/// Nanoseconds of a monotonic clock.
func now() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Keeps a value alive so the optimizer cannot drop the work producing it.
@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Median nanoseconds per call of `body` over `rounds` rounds of about
/// `secondsPerRound` each (the iteration count is calibrated first).
func measure(rounds: Int = 5, secondsPerRound: Double, _ body: () -> Void) -> Double {
    var iterations = 1
    while true {
        let start = now()
        for _ in 0..<iterations { body() }
        let elapsed = now() - start
        if elapsed > 20_000_000 {
            iterations = max(1, Int(Double(iterations) * secondsPerRound * 1e9 / Double(elapsed)))
            break
        }
        iterations *= 4
    }
    var samples: [Double] = []
    for _ in 0..<rounds {
        let start = now()
        for _ in 0..<iterations { body() }
        samples.append(Double(now() - start) / Double(iterations))
    }
    return samples.sorted()[rounds / 2]
}

// MARK: - The wire benchmark

struct Row {
    var name: String
    var size: Int
    var swiftEncode, rawEncode, swiftDecode, rawDecode: Double
}

func benchmark<M: WireMessage>(_ name: String, _ message: M, seconds: Double) throws -> Row {
    let encoded = try message.serializedBytes()
    let baseline = try ProtobufCBaseline(message)
    precondition(baseline.packOnce() == encoded.count, "protobuf-c and Weft disagree on \(name)'s size")
    let roundTripped = try M(serializedBytes: encoded)
    precondition(roundTripped == message, "\(name) did not survive a round trip")
    let swiftEncode = measure(secondsPerRound: seconds) { blackHole(try! message.serializedBytes()) }
    let rawEncode = measure(secondsPerRound: seconds) { blackHole(baseline.packOnce()) }
    let swiftDecode = measure(secondsPerRound: seconds) { blackHole(try! M(serializedBytes: encoded)) }
    let rawDecode = encoded.withUnsafeBytes { buffer in
        measure(secondsPerRound: seconds) { blackHole(baseline.unpackOnce(buffer)) }
    }
    return Row(name: name, size: encoded.count, swiftEncode: swiftEncode, rawEncode: rawEncode, swiftDecode: swiftDecode, rawDecode: rawDecode)
}

func pad(_ string: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - string.count))
    return right ? padding + string : string + padding
}

func format(_ value: Double, _ digits: Int = 0) -> String {
    let factor = digits == 0 ? 1.0 : (digits == 1 ? 10.0 : 100.0)
    let rounded = (value * factor).rounded() / factor
    return digits == 0 ? String(Int(rounded)) : String(rounded)
}

func runWire(seconds: Double) throws {
    print("weft-bench wire: Weft's Swift layer vs raw protobuf-c C calls, same process, same messages")
    print("  Swift: value.serializedBytes() / Type(serializedBytes:) (C struct built from Swift values, arena)")
    print("  raw:   get_packed_size + malloc + pack + free / unpack + free_unpacked (default allocator)")
    print("  median of 5 rounds of ~\(seconds) s each")
    print()
    let rows = [
        try benchmark("confirmation request", try ExampleMessages.confirmationRequest(), seconds: seconds),
        try benchmark("envelope", ExampleMessages.envelope(), seconds: seconds),
        try benchmark("informee tree (structured)", ExampleMessages.informeeMessage(), seconds: seconds),
    ]
    print(pad("message", 28) + pad("bytes", 7, right: true) + "  " + pad("op", 9) + pad("Swift ns/op", 12, right: true)
          + pad("raw ns/op", 12, right: true) + pad("ratio", 8, right: true))
    var worst = 0.0
    for row in rows {
        let lines: [(String, Double, Double)] = [
            ("encode", row.swiftEncode, row.rawEncode), ("decode", row.swiftDecode, row.rawDecode),
            ("enc+dec", row.swiftEncode + row.swiftDecode, row.rawEncode + row.rawDecode),
        ]
        for (index, (op, swift, raw)) in lines.enumerated() {
            let ratio = swift / raw
            if op == "enc+dec" { worst = max(worst, ratio) }
            print(pad(index == 0 ? row.name : "", 28) + pad(index == 0 ? String(row.size) : "", 7, right: true) + "  "
                  + pad(op, 9) + pad(format(swift), 12, right: true) + pad(format(raw), 12, right: true)
                  + pad(format(ratio, 2) + "x", 8, right: true))
        }
    }
    print()
    print("target: Swift enc+dec <= 1.5x raw protobuf-c; worst here \(format(worst, 2))x -> \(worst <= 1.5 ? "met" : "NOT met")")
}

// MARK: - Entry point

let arguments = Array(CommandLine.arguments.dropFirst())
var seconds = 0.3
if let index = arguments.firstIndex(of: "--seconds-per-case"), index + 1 < arguments.count, let value = Double(arguments[index + 1]) {
    seconds = value
}
switch arguments.first {
case "sizes":
    for type in Weft.V1.messageTypes {
        func size<M: WireMessage>(_ t: M.Type) -> Int { MemoryLayout<M>.size }
        print(size(type), type.protoMessageName)
    }
case "profile-envelope-encode":
    // A loop for `perf record`: one operation only.
    let message = ExampleMessages.envelope()
    for _ in 0..<5_000_000 { blackHole(try! message.serializedBytes()) }
case "profile-informee-decode":
    let encoded = try ExampleMessages.informeeMessage().serializedBytes()
    for _ in 0..<1_000_000 { blackHole(try! Weft.V1.InformeeMessage(serializedBytes: encoded)) }
case "profile-envelope-decode":
    let encoded = try ExampleMessages.envelope().serializedBytes()
    for _ in 0..<5_000_000 { blackHole(try! Weft.V1.Envelope(serializedBytes: encoded)) }
case "wire":
    try runWire(seconds: seconds)
default:
    print("usage: weft-bench wire [--seconds-per-case S]")
    print("  wire   encode/decode through WeftWire vs raw protobuf-c")
    exit(arguments.isEmpty || arguments.first == "--help" ? 0 : 64)
}
