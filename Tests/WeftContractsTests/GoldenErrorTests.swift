// Golden tests for parser and checker errors: each `Golden/NAME.weft` is a
// broken package and `Golden/NAME.expected` the exact error it must give,
// with file, line and column. Set WEFT_UPDATE_GOLDEN=1 to rewrite the
// expected files (then read the diff: every message must say what to fix).

import Foundation
import Testing
import WeftContracts

private let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "Golden")

private func goldenCases() -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: goldenDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".weft") }.map { String($0.dropLast(5)) }.sorted()
}

@Suite("Parser and checker errors (golden)")
struct GoldenErrorTests {
    @Test("there are golden cases")
    func casesExist() {
        #expect(goldenCases().count >= 20)
    }

    @Test("each broken package gives its expected error", arguments: goldenCases())
    func brokenPackage(name: String) throws {
        let source = try String(contentsOf: goldenDirectory.appendingPathComponent(name + ".weft"), encoding: .utf8)
        let expectedURL = goldenDirectory.appendingPathComponent(name + ".expected")
        let actual: String
        do {
            _ = try Package(source: source, file: name + ".weft")
            Issue.record("\(name).weft was accepted; it must be rejected")
            return
        } catch {
            switch error {
            case .syntax, .check: actual = error.description
            default:
                Issue.record("\(name).weft: expected a syntax or check error, got \(error)")
                return
            }
        }
        if ProcessInfo.processInfo.environment["WEFT_UPDATE_GOLDEN"] != nil {
            try (actual + "\n").write(to: expectedURL, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: expectedURL, encoding: .utf8)
        #expect(actual + "\n" == expected)
    }
}
