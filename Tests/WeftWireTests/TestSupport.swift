import Foundation
import WeftTestSupport
import WeftWire

/// A small seeded generator (SplitMix64), so that a failing random input can
/// be reproduced from the seed printed with it.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

/// Decodes bytes as the same type as `prototype` (opening the existential).
func decodeLike<M: WireMessage>(_ prototype: M, _ bytes: [UInt8]) throws(WireError) -> M {
    try M(serializedBytes: bytes)
}

/// Decodes `bytes` as the type of `prototype`: nil error and whether the
/// result equals the prototype, or the error.
func decodeOutcome<M: WireMessage>(_ prototype: M, _ bytes: [UInt8]) -> Result<Bool, WireError> {
    do throws(WireError) { return .success(try M(serializedBytes: bytes) == prototype) } catch {
        return .failure(error)
    }
}

/// Whether `message` is the type's default value.
func isDefault<M: WireMessage>(_ message: M) -> Bool { message == M() }

/// Whether `message` equals `other` when both are of the same type.
func isEqual<M: WireMessage>(_ message: M, _ other: any WireMessage) -> Bool {
    (other as? M) == message
}

/// The repository's root directory, found from this file's path.
let repositoryRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
    }
    fatalError("Package.swift not found above \(#filePath)")
}()

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

func unhex(_ string: String) -> [UInt8] {
    var result: [UInt8] = []
    var index = string.startIndex
    while index < string.endIndex {
        let next = string.index(index, offsetBy: 2)
        result.append(UInt8(string[index..<next], radix: 16)!)
        index = next
    }
    return result
}

/// A fresh temporary directory holding the embedded descriptor set as `weft.pb`, for the
/// scripts in clients/python that check Weft against Google's protobuf. The caller removes it.
func makeInteropDirectory(_ prefix: String) throws -> (directory: URL, descriptorSet: URL) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let descriptorSet = directory.appendingPathComponent("weft.pb")
    try Data(Weft.V1.descriptorSet).write(to: descriptorSet)
    return (directory, descriptorSet)
}

/// Runs `python3 clients/python/<script> arguments…` to its end, off the concurrency pool
/// (`TestSubprocess`): its exit status and its output (standard output and error together).
func runPythonScript(_ script: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
    let outcome = try await TestSubprocess.run(
        ["python3", repositoryRoot.appendingPathComponent("clients/python/\(script)").path] + arguments, mergingError: true)
    return (outcome.status, outcome.output)
}

/// One JSON line describing a sample for the Python scripts: its type, variant and bytes (hex),
/// plus `extra` members.
func sampleRecord(_ name: String, _ variant: Int, _ sample: any WireMessage, _ extra: [String: Any] = [:]) throws -> String {
    let record = (["type": name, "variant": variant, "hex": hex(try sample.serializedBytes())] as [String: Any]).merging(extra) { $1 }
    return String(data: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), encoding: .utf8)! + "\n"
}
