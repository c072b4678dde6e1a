// Template and choice names read from the wire are identifiers as the package language writes
// them: Swift's String equality is Unicode canonical equivalence, hashes read bytes.

import Testing

@testable import WeftContracts

@Suite("Names from the wire")
struct WireNameTests {
    @Test("only plain ASCII identifiers are names")
    func plainIdentifiers() {
        #expect("\u{212A}ey" == "Key", "the reason for the check: Swift calls these equal")
        for name in ["Key", "_x9", "Iou", "a"] { #expect(isPlainIdentifier(name), "\(name)") }
        for name in ["\u{212A}ey", "", "1a", "a-b", "a b", "Ké", "a\u{0}"] { #expect(!isPlainIdentifier(name), "\(name)") }
    }
}
