import Foundation
import WeftContracts

/// The repository's root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// An example package from examples/packages.
func examplePackage(_ file: String) throws -> Package {
    let url = repositoryRoot.appendingPathComponent("examples/packages/\(file)")
    return try Package(source: String(contentsOf: url, encoding: .utf8), file: file)
}

/// Seeded SplitMix64, so a failing property test reproduces from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
