import Foundation
import Testing
import WeftWire

/// Weft's bytes are standard protobuf: Google's implementation (the Python
/// `protobuf` package, with classes built from the embedded descriptor set)
/// reads every sample Weft writes as the same field values, and Weft reads
/// every sample Google's writes.
@Suite struct InteropTests {
    @Test func googleProtobufReadsWeftAndWeftReadsGoogle() async throws {
        let (directory, descriptorSet) = try makeInteropDirectory("weft-interop")
        defer { try? FileManager.default.removeItem(at: directory) }
        var lines = ""
        for (name, samples) in allSamples {
            for (variant, sample) in samples.enumerated() { lines += try sampleRecord(name, variant, sample) }
        }
        let weftSamples = directory.appendingPathComponent("weft.jsonl")
        let pythonSamples = directory.appendingPathComponent("python.jsonl")
        try lines.write(to: weftSamples, atomically: true, encoding: .utf8)

        let (status, text) = try await runPythonScript(
            "weft_interop.py",
            ["--descriptor-set", descriptorSet.path, "--weft-samples", weftSamples.path, "--python-samples-out", pythonSamples.path])
        #expect(status == 0, "weft_interop.py (Google's protobuf) reported:\n\(text)")

        // The other direction: Google wrote, Weft reads.
        var checked = 0
        for line in try String(contentsOf: pythonSamples, encoding: .utf8).split(separator: "\n") {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let name = record["type"] as! String
            let variant = record["variant"] as! Int
            let bytes = unhex(record["hex"] as! String)
            let sample = try #require(allSamples.first { $0.name == name }?.samples[variant], "no Weft sample \(name)")
            let outcome = decodeOutcome(sample, bytes)
            #expect(outcome == .success(true), "Weft decoded Google's \(name) variant \(variant) as \(outcome)")
            #expect(try sample.serializedBytes() == bytes, "\(name) variant \(variant): bytes differ")
            checked += 1
        }
        #expect(checked == allSamples.map(\.samples.count).reduce(0, +))
    }
}
