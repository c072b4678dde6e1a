// rpc-compare: Weft's RPC layer against grpc-swift-2, both over TLS 1.3 on
// 127.0.0.1, server and client in this one process (docs/benchmarks.md,
// "RPC: Weft vs grpc-swift-2").
//
//   scripts/bench-rpc [--seconds 2] [--rounds 3] [--warmup 1] [--callers 64] [--stream-messages 2048]
//                     [--grpc-no-flush-coalescing]
import Foundation
import NIOCore
import NIOPosix

let usage = """
    usage: rpc-compare [--seconds S] [--rounds N] [--warmup S] [--callers N] [--stream-messages N] [--grpc-no-flush-coalescing]
      --seconds S          length of each timed round (default 2)
      --rounds N           rounds per library and workload, alternating Weft and gRPC (default 3, at least 3)
      --warmup S           untimed run of each workload and library before the rounds (default 1)
      --callers N          concurrent callers of the second unary workload (default 64)
      --stream-messages N  4 KiB messages per server-stream call (default 2048)
      --grpc-no-flush-coalescing
                           turn off gRPC's flush coalescing (on by default: flushes wait up to 100 µs to batch)
    """

func parseSettings(_ arguments: [String]) throws -> Settings {
    var settings = Settings()
    var rest = arguments[...]
    func value(_ option: String) throws -> String {
        guard let value = rest.popFirst() else { throw BenchError("\(option) needs a value\n\(usage)") }
        return value
    }
    func number(_ option: String, minimum: Double) throws -> Double {
        let text = try value(option)
        guard let number = Double(text), number >= minimum else { throw BenchError("\(option) \(text): expected a number ≥ \(minimum)") }
        return number
    }
    while let option = rest.popFirst() {
        switch option {
        case "--seconds": settings.seconds = try number(option, minimum: 0.1)
        case "--rounds": settings.rounds = Int(try number(option, minimum: 3))
        case "--warmup": settings.warmupSeconds = try number(option, minimum: 0)
        case "--callers": settings.callers = Int(try number(option, minimum: 1))
        case "--stream-messages": settings.streamMessages = Int(try number(option, minimum: 1))
        case "--grpc-no-flush-coalescing": settings.grpcFlushCoalescing = false
        case "-h", "--help":
            print(usage)
            exit(0)
        default: throw BenchError("unknown option \(option)\n\(usage)")
        }
    }
    return settings
}

/// A command's standard output, trimmed; nil if it cannot run or fails.
func commandOutput(_ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The resolved versions of this package's dependencies, from its Package.resolved.
func resolvedVersions() -> [String: String] {
    let packageDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    guard let data = try? Data(contentsOf: packageDirectory.appendingPathComponent("Package.resolved")),
        let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let pins = json["pins"] as? [[String: Any]]
    else { return [:] }
    var versions: [String: String] = [:]
    for pin in pins {
        if let identity = pin["identity"] as? String, let state = pin["state"] as? [String: Any], let version = state["version"] as? String {
            versions[identity] = version
        }
    }
    return versions
}

/// The root package's commit, and whether its transport sources differ from it.
func weftRevision() -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    guard let commit = commandOutput(["git", "-C", root, "rev-parse", "--short", "HEAD"]) else { return "unknown revision" }
    let changed = commandOutput(["git", "-C", root, "status", "--porcelain", "--", "Sources", "Package.swift"]) ?? ""
    return changed.isEmpty ? "commit \(commit)" : "commit \(commit) + uncommitted changes in Sources/"
}

func format(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
}

/// Starts both libraries' servers and clients, runs the rounds, prints the
/// report and shuts both down. Everything of theirs is released on return,
/// before the event loops stop (gRPC's objects touch their loops as they go).
func compare(_ settings: Settings, serverGroup: MultiThreadedEventLoopGroup, clientGroup: MultiThreadedEventLoopGroup) async throws {
    #if DEBUG
        let configuration = "debug (figures are meaningless: use -c release, as scripts/bench-rpc does)"
    #else
        let configuration = "release"
    #endif
    let versions = resolvedVersions()
    // `openssl version` prints e.g. "OpenSSL 3.0.19 27 Jan 2026 (Library: …)": name and number.
    let openSSL = (commandOutput(["openssl", "version"]) ?? "OpenSSL").split(separator: " ").prefix(2).joined(separator: " ")
    func version(_ identity: String) -> String { versions[identity] ?? "?" }

    let certificates = try BenchCertificates.make()
    let weft = try await WeftSide.start(certificates, serverGroup: serverGroup, clientGroup: clientGroup)
    let grpc = try await GRPCSide.start(
        certificates, flushCoalescing: settings.grpcFlushCoalescing, serverGroup: serverGroup, clientGroup: clientGroup)
    guard grpc.negotiatedTLS == "tlsv13" else { throw BenchError("gRPC's connection negotiated \(grpc.negotiatedTLS), not TLS 1.3") }
    let sides: [any RPCSide] = [weft, grpc]
    for side in sides { try await Runner.check(side) }

    print("rpc-compare: Weft RPC vs grpc-swift-2, one TLS 1.3 connection each on 127.0.0.1, client and server in one process")
    print("build: \(configuration), Swift 6 language mode; \(ProcessInfo.processInfo.activeProcessorCount) cores")
    print("Weft: \(weftRevision()); frames over TLS by the system's libssl (\(openSSL)), ALPN weft/1")
    let grpcConfig = settings.grpcFlushCoalescing ? "default config" : "default config but flush coalescing off"
    print(
        "gRPC: grpc-swift-2 \(version("grpc-swift-2")), grpc-swift-nio-transport \(version("grpc-swift-nio-transport")) (HTTP/2, \(grpcConfig)), "
            + "swift-nio-http2 \(version("swift-nio-http2")), swift-nio-ssl \(version("swift-nio-ssl")) (BoringSSL; negotiated \(grpc.negotiatedTLS)), "
            + "swift-nio \(version("swift-nio"))")
    print("both: P-256 ECDSA server certificate from one WeftCrypto root, verified by the client; messages are weft.v1.FrameMessage (WeftWire)")
    print("event loops: 1 server thread and 1 client thread, shared by both libraries")
    print(
        "method: per workload, \(format(settings.warmupSeconds)) s warm-up per library, then \(settings.rounds) rounds of \(format(settings.seconds)) s "
            + "alternating Weft, gRPC; figures are medians, the ratio is the median of the per-round Weft/gRPC ratios")
    print("stream: one request, \(settings.streamMessages) responses of 4,096 payload bytes per call; 1 MB = 10^6 payload bytes")
    print("")

    struct Row {
        var workload: Workload
        var weft: [Measurement] = []
        var grpc: [Measurement] = []
    }
    var rows: [Row] = []
    for workload in Workload.allCases {
        var row = Row(workload: workload)
        if settings.warmupSeconds > 0 {
            for side in sides { _ = try await Runner.run(workload, on: side, settings, seconds: settings.warmupSeconds) }
        }
        for _ in 0..<settings.rounds {
            row.weft.append(try await Runner.run(workload, on: weft, settings, seconds: settings.seconds))
            row.grpc.append(try await Runner.run(workload, on: grpc, settings, seconds: settings.seconds))
        }
        rows.append(row)
    }

    print("| workload | Weft | gRPC | Weft/gRPC | target | met |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows {
        let ratio = median(zip(row.weft, row.grpc).map { $0.value / $1.value })
        let target = row.workload.target
        print(
            "| \(row.workload.title(settings)) | \(format(median(row.weft.map(\.value)))) | \(format(median(row.grpc.map(\.value)))) "
                + "| \(String(format: "%.2f", ratio))× | ≥ \(String(format: "%.1f", target))× | \(ratio >= target ? "yes" : "no") |")
        if row.workload == .serverStream {
            print(
                "| server stream 4 KiB (messages/s) | \(format(median(row.weft.map(\.messagesPerSecond)))) "
                    + "| \(format(median(row.grpc.map(\.messagesPerSecond)))) | | | |")
        }
    }
    print("")
    print("rounds (Weft; gRPC):")
    for row in rows {
        let weftRounds = row.weft.map { format($0.value) }.joined(separator: " ")
        let grpcRounds = row.grpc.map { format($0.value) }.joined(separator: " ")
        print("  \(row.workload.title(settings)): \(weftRounds); \(grpcRounds)")
    }

    for side in sides { await side.shutdown() }
}

do {
    let settings = try parseSettings(Array(CommandLine.arguments.dropFirst()))
    // One event-loop thread for both servers, one for both clients; the RPC
    // handlers of both libraries run on Swift's global concurrency executor.
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    try await compare(settings, serverGroup: serverGroup, clientGroup: clientGroup)
    try await serverGroup.shutdownGracefully()
    try await clientGroup.shutdownGracefully()
} catch {
    FileHandle.standardError.write(Data("rpc-compare: \(error)\n".utf8))
    exit(1)
}
