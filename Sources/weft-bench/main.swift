// weft-bench: Weft's benchmarks. Each prints its figures next to a baseline
// measured in the same run. Build in release:
//
//   swift run -c release weft-bench wire [--seconds-per-case S]
//   swift run -c release weft-bench crypto [--rounds N]
//   swift run -c release weft-bench sequencer [--seconds N] [--rate R] …
//   swift run -c release weft-bench transactions [--kind iou|dvp|both] [--seconds N] [--rate R] [--url postgres://…]
//   swift run -c release weft-bench replay [--seconds N] [--url postgres://…]
//   swift run -c release weft-bench commitments [--rounds N] [--groups G] [--counter-participants C] [--url postgres://…]
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

/// Iterations of `body` that take about `seconds`.
func calibrate(seconds: Double, _ body: () -> Void) -> Int {
    var iterations = 1
    while true {
        let start = now()
        for _ in 0..<iterations { body() }
        let elapsed = now() - start
        if elapsed > 20_000_000 { return max(1, Int(Double(iterations) * seconds * 1e9 / Double(elapsed))) }
        iterations *= 4
    }
}

/// Nanoseconds per call of `body`, over `iterations` calls.
func time(_ iterations: Int, _ body: () -> Void) -> Double {
    let start = now()
    for _ in 0..<iterations { body() }
    return Double(now() - start) / Double(iterations)
}

/// Measures `weft` against `raw` in alternating rounds, so that the machine's
/// drift (this is a shared VM) affects both alike. Returns the median ns/op of
/// each and the median of the per-round ratios.
func compare(rounds: Int = 9, secondsPerRound: Double, weft: () -> Void, raw: () -> Void)
    -> (weft: Double, raw: Double, ratio: Double)
{
    let weftIterations = calibrate(seconds: secondsPerRound, weft)
    let rawIterations = calibrate(seconds: secondsPerRound, raw)
    var weftTimes: [Double] = []
    var rawTimes: [Double] = []
    var ratios: [Double] = []
    for _ in 0..<rounds {
        let w = time(weftIterations, weft)
        let r = time(rawIterations, raw)
        weftTimes.append(w)
        rawTimes.append(r)
        ratios.append(w / r)
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    return (median(weftTimes), median(rawTimes), median(ratios))
}

// MARK: - The wire benchmark

struct Row {
    var name: String
    var size: Int
    var encode, decode, both: (weft: Double, raw: Double, ratio: Double)
    /// The protobuf-c part of a Swift decode: unpacking into the decode arena
    /// (measured against the same raw unpack, in alternating rounds).
    var arenaUnpack: (weft: Double, raw: Double, ratio: Double)
    /// A decode whose every field is then read (compared with the original),
    /// against the same comparison on an already decoded value: what reading
    /// the lazily decoded fields costs.
    var decodeAndRead: (weft: Double, raw: Double, ratio: Double)
}

func benchmark<M: WireMessage>(_ name: String, _ message: M, seconds: Double) throws -> Row {
    let encoded = try message.serializedBytes()
    let baseline = try ProtobufCBaseline(message)
    precondition(baseline.packOnce() == encoded.count, "protobuf-c and Weft disagree on \(name)'s size")
    let roundTripped = try M(serializedBytes: encoded)
    precondition(roundTripped == message, "\(name) did not survive a round trip")
    return encoded.withUnsafeBytes { buffer in
        let encode = compare(
            secondsPerRound: seconds, weft: { blackHole(try! message.serializedBytes()) },
            raw: { blackHole(baseline.packOnce()) })
        // Both sides decode the same bytes in place: `buffer`, not the array
        // holding them, whose capture the closure would retain and release on
        // every call (two atomic operations, a fifth of a ~200-byte decode,
        // charged to the Swift side only).
        let decode = compare(
            secondsPerRound: seconds, weft: { blackHole(try! M(serializedBytes: buffer)) },
            raw: { blackHole(baseline.unpackOnce(buffer)) })
        let both = compare(
            secondsPerRound: seconds,
            weft: { blackHole(try! M(serializedBytes: try! message.serializedBytes())) },
            raw: {
                blackHole(baseline.packOnce())
                blackHole(baseline.unpackOnce(buffer))
            })
        let arenaUnpack = compare(
            secondsPerRound: seconds, weft: { blackHole(baseline.unpackIntoArenaOnce(buffer)) },
            raw: { blackHole(baseline.unpackOnce(buffer)) })
        let read = try! M(serializedBytes: encoded)
        _ = read == message
        let decodeAndRead = compare(
            secondsPerRound: seconds, weft: { blackHole(try! M(serializedBytes: buffer) == message) },
            raw: { blackHole(read == message) })
        return Row(
            name: name, size: encoded.count, encode: encode, decode: decode, both: both, arenaUnpack: arenaUnpack,
            decodeAndRead: decodeAndRead)
    }
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
    print("  9 alternating rounds of ~\(seconds) s per side; ns/op are medians, ratio is the median per-round ratio")
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
        let lines = [("encode", row.encode), ("decode", row.decode), ("enc+dec", row.both)]
        for (index, (op, figures)) in lines.enumerated() {
            if op == "enc+dec" { worst = max(worst, figures.ratio) }
            print(pad(index == 0 ? row.name : "", 28) + pad(index == 0 ? String(row.size) : "", 7, right: true) + "  "
                  + pad(op, 9) + pad(format(figures.weft), 12, right: true) + pad(format(figures.raw), 12, right: true)
                  + pad(format(figures.ratio, 2) + "x", 8, right: true))
        }
    }
    print()
    print("where a Swift decode goes: protobuf-c unpacking into the decode arena, then building the Swift values")
    print("(the rest: strings, arrays and storage objects allocated, filled and, when the value dies, released)")
    for row in rows {
        let unpack = row.arenaUnpack.weft
        print(pad("  " + row.name, 30) + "unpack into arena " + pad(format(unpack), 6, right: true) + " ns (raw unpack+free "
              + format(row.arenaUnpack.raw) + " ns), Swift values " + pad(format(max(0, row.decode.weft - unpack)), 6, right: true)
              + " ns of " + format(row.decode.weft))
    }
    print()
    print("a decode reads its fields from protobuf-c's structs on first use; decoding, then reading every field")
    print("(comparing with the original), minus the same comparison of a value already read:")
    for row in rows {
        print(pad("  " + row.name, 30) + "decode + read " + pad(format(row.decodeAndRead.weft), 6, right: true) + " ns, of which reading "
              + pad(format(max(0, row.decodeAndRead.weft - row.decode.weft - row.decodeAndRead.raw)), 6, right: true)
              + " ns (compare alone " + format(row.decodeAndRead.raw) + " ns)")
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
    let count = arguments.count > 1 ? Int(arguments[1]) ?? 5_000_000 : 5_000_000
    for _ in 0..<count { blackHole(try! message.serializedBytes()) }
case "profile-envelope-roundtrip":
    let message = ExampleMessages.envelope()
    for _ in 0..<5_000_000 { blackHole(try! Weft.V1.Envelope(serializedBytes: try! message.serializedBytes())) }
case "profile-informee-decode":
    let encoded = try ExampleMessages.informeeMessage().serializedBytes()
    for _ in 0..<1_000_000 { blackHole(try! Weft.V1.InformeeMessage(serializedBytes: encoded)) }
case "profile-request-decode":
    let encoded = try ExampleMessages.confirmationRequest().serializedBytes()
    for _ in 0..<1_000_000 { blackHole(try! Weft.V1.SubmissionRequest(serializedBytes: encoded)) }
case "profile-request-encode":
    let message = try ExampleMessages.confirmationRequest()
    for _ in 0..<1_000_000 { blackHole(try! message.serializedBytes()) }
case "profile-envelope-raw-encode":
    // The same loops through raw protobuf-c, for instruction counts to compare with.
    let raw = try ProtobufCBaseline(ExampleMessages.envelope())
    for _ in 0..<5_000_000 { blackHole(raw.packOnce()) }
case "profile-envelope-raw-decode":
    let encoded = try ExampleMessages.envelope().serializedBytes()
    let raw = try ProtobufCBaseline(ExampleMessages.envelope())
    encoded.withUnsafeBytes { bytes in
        for _ in 0..<5_000_000 { blackHole(raw.unpackOnce(bytes)) }
    }
case "profile-envelope-decode":
    let encoded = try ExampleMessages.envelope().serializedBytes()
    encoded.withUnsafeBytes { bytes in
        for _ in 0..<5_000_000 { blackHole(try! Weft.V1.Envelope(serializedBytes: bytes)) }
    }
case "sequencer": try await SequencerBenchmark.run(Array(arguments.dropFirst()))
case "sequencer-node": try await SequencerNodeMain.run(Array(arguments.dropFirst()))
case "commitments": try await CommitmentBenchmark.run(Array(arguments.dropFirst()))
case "transactions":
    do {
        try await TransactionBenchmark.run(Array(arguments.dropFirst()))
    } catch let error as BenchError {
        print("weft-bench transactions: \(error)")
        exit(64)
    }
case "replay":
    try await ReplayBenchmark.run(Array(arguments.dropFirst()))
case "wire":
    try runWire(seconds: seconds)
case "views": try ViewsBenchmark.run(arguments: arguments)
case "crypto":
    var rounds = 3
    if let index = arguments.firstIndex(of: "--rounds"), index + 1 < arguments.count, let value = Int(arguments[index + 1]) {
        rounds = max(1, value)
    }
    try CryptoBenchmark.run(rounds: rounds)
default:
    print("usage: weft-bench wire [--seconds-per-case S] | crypto [--rounds N] | views | sequencer [...] | transactions [...] | replay [...] | commitments [...]")
    print("  wire     encode/decode through WeftWire vs raw protobuf-c")
    print("  crypto   WeftCrypto vs openssl speed")
    print("  transactions  committed IOU transfers / DvP settlements per second through a whole domain")
    print("  replay   a participant's recovery by replay from its sequencer stream, transactions per second")
    print("  commitments   one ACS commitment period with 1,000 changes at 10,000 vs 1,000,000 active contracts")
    exit(arguments.isEmpty || arguments.first == "--help" ? 0 : 64)
}
