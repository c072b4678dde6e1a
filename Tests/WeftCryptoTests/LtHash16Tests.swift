// LtHash16, the homomorphic hash of ACS commitments: its algebra (add and remove commute,
// remove undoes add, order does not matter, one changed element changes the hash) and its
// bytes against Python's hashlib (SHAKE128, SHA-256), computed independently.

import Testing

@testable import WeftCrypto

struct LtHash16Tests {
    /// Seeded elements, so that a failure reproduces.
    private static func elements(_ count: Int, seed: UInt64) -> [[UInt8]] {
        var state = seed
        return (0..<count).map { _ in
            (0..<32).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
        }
    }

    @Test func addingInAnyOrderGivesTheSameHash() {
        let elements = Self.elements(50, seed: 1)
        var forward = LtHash16()
        for element in elements { forward.add(element: element) }
        var backward = LtHash16()
        for element in elements.reversed() { backward.add(element: element) }
        var interleaved = LtHash16()
        let odd = elements.indices.filter { $0 % 2 == 1 }
        let even = elements.indices.filter { $0 % 2 == 0 }
        for index in odd.reversed() + even { interleaved.add(element: elements[index]) }
        #expect(forward == backward)
        #expect(forward == interleaved)
        #expect(!forward.isEmpty)
    }

    @Test func removeUndoesAddAndCommutesWithIt() {
        let elements = Self.elements(20, seed: 2)
        var base = LtHash16()
        for element in elements.prefix(10) { base.add(element: element) }
        let before = base
        // Add then remove, remove then add (of an element present), interleaved with others.
        var changed = base
        changed.add(element: elements[15])
        changed.remove(element: elements[3])
        changed.remove(element: elements[15])
        changed.add(element: elements[3])
        #expect(changed == before)
        var emptied = base
        for element in elements.prefix(10).reversed() { emptied.remove(element: element) }
        #expect(emptied == LtHash16())
        #expect(emptied.isEmpty)
    }

    @Test func oneDifferentElementChangesTheHashAndItsDigest() {
        let elements = Self.elements(100, seed: 3)
        var one = LtHash16()
        var other = LtHash16()
        for element in elements { one.add(element: element) }
        var changed = elements
        changed[42][0] ^= 1
        for element in changed { other.add(element: element) }
        #expect(one != other)
        #expect(one.digest != other.digest)
        // An element added twice is not the same as once (a multiset, not a set).
        var twice = one
        twice.add(element: elements[0])
        #expect(twice != one)
    }

    @Test func sumsOfSetsAreTheHashOfTheirUnion() {
        let elements = Self.elements(30, seed: 4)
        var left = LtHash16()
        var right = LtHash16()
        var union = LtHash16()
        for (index, element) in elements.enumerated() {
            if index % 2 == 0 { left.add(element: element) } else { right.add(element: element) }
            union.add(element: element)
        }
        var sum = left
        sum.add(right)
        #expect(sum == union)
        sum.subtract(right)
        #expect(sum == left)
    }

    @Test func bytesRoundTripAndWrongLengthsAreRefused() throws {
        var hash = LtHash16()
        hash.add(element: Self.elements(1, seed: 5)[0])
        #expect(try LtHash16(bytes: hash.bytes) == hash)
        #expect(throws: CryptoError.invalidLength(what: "an LtHash16", expected: 4096, actual: 4095)) {
            _ = try LtHash16(bytes: [UInt8](repeating: 0, count: 4095))
        }
    }

    /// `hashlib.shake_128(b"abc").digest(4096)` read as little-endian lanes, and the digest of
    /// {abc, xyz}: SHA-256 over purpose 24 (4 bytes big-endian), length 4096 (4 bytes
    /// big-endian) and the lanes' bytes.
    @Test func matchesAnIndependentImplementation() {
        let abc = LtHash16.expand(Array("abc".utf8))
        #expect(Array(abc.lanes.prefix(4)) == [33112, 11529, 6360, 23743])
        #expect(abc.lanes[2047] == 5346)
        var pair = LtHash16()
        pair.add(element: Array("abc".utf8))
        pair.add(element: Array("xyz".utf8))
        #expect(hex(pair.digest) == "9326c48af368659cee182d3852b2d743497e2006fe2aacd9d0cf08d2285f9c91")
    }
}
