// HMAC-SHA256 against the known answers of RFC 4231 §4 (test cases 1–7),
// cross-checked with Python's `hmac` module before they were committed.

import Testing

@testable import WeftCrypto

private func bytes(hex text: String) -> [UInt8] {
    let digits = Array(text.utf8)
    func value(_ digit: UInt8) -> UInt8 {
        digit <= UInt8(ascii: "9") ? digit - UInt8(ascii: "0") : digit - UInt8(ascii: "a") + 10
    }
    return stride(from: 0, to: digits.count, by: 2).map { value(digits[$0]) << 4 | value(digits[$0 + 1]) }
}

struct HMACVector: Sendable, CustomTestStringConvertible {
    let name: String
    let key: [UInt8]
    let data: [UInt8]
    /// The expected MAC in hex; RFC 4231 truncates test case 5 to 128 bits.
    let mac: String
    var testDescription: String { name }
}

@Suite("HMAC-SHA256")
struct HMACTests {
    static let rfc4231: [HMACVector] = [
        HMACVector(
            name: "RFC 4231 test case 1", key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8),
            mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        HMACVector(
            name: "RFC 4231 test case 2 (key shorter than the output)", key: Array("Jefe".utf8),
            data: Array("what do ya want for nothing?".utf8),
            mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        HMACVector(
            name: "RFC 4231 test case 3", key: [UInt8](repeating: 0xaa, count: 20),
            data: [UInt8](repeating: 0xdd, count: 50),
            mac: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        HMACVector(
            name: "RFC 4231 test case 4", key: Array(1...25), data: [UInt8](repeating: 0xcd, count: 50),
            mac: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        HMACVector(
            name: "RFC 4231 test case 5 (truncated to 128 bits)", key: [UInt8](repeating: 0x0c, count: 20),
            data: Array("Test With Truncation".utf8), mac: "a3b6167473100ee06e0c796c2955552b"),
        HMACVector(
            name: "RFC 4231 test case 6 (key longer than a block)", key: [UInt8](repeating: 0xaa, count: 131),
            data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        HMACVector(
            name: "RFC 4231 test case 7 (key and data longer than a block)",
            key: [UInt8](repeating: 0xaa, count: 131),
            data: Array(
                ("This is a test using a larger than block-size key and a larger than block-size data. The key needs "
                    + "to be hashed before being used by the HMAC algorithm.").utf8),
            mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test("RFC 4231 known answers, one-shot", arguments: rfc4231)
    func oneShot(vector: HMACVector) throws {
        let mac = try HMACSHA256.authenticate(vector.data, key: vector.key)
        #expect(mac.count == HMACSHA256.outputBytes)
        #expect(Array(mac.prefix(vector.mac.count / 2)) == bytes(hex: vector.mac))
    }

    @Test("a prepared key gives the same MAC for each of many messages, in any order")
    func preparedKey() throws {
        let key = try HMACSHA256.Key(HMACTests.rfc4231[1].key)
        for _ in 0..<3 {
            for vector in HMACTests.rfc4231 where vector.key == HMACTests.rfc4231[1].key {
                #expect(key.authenticate(vector.data) == bytes(hex: vector.mac))
            }
            #expect(key.authenticate([]) == (try HMACSHA256.authenticate([], key: Array("Jefe".utf8))))
        }
    }

    @Test("empty key and empty message (Python's hmac)")
    func empty() throws {
        #expect(
            try HMACSHA256.authenticate([], key: [])
                == bytes(hex: "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"))
    }
}
