import Testing
import WeftTestSupport

@testable import WeftWire

/// A thread reuses the tree of a decoded value that died holding its last
/// reference (`DecodedTree.recycle`, `make`), and an encode points protobuf-c at a long string's own
/// storage instead of copying it (`Arena.terminatedStorage`). What that must
/// not change: a value still alive keeps its memory, and every string encodes
/// to exactly its bytes or is refused.
@Suite struct DecodeTreeReuseTests {
    // Each test body below is synchronous: no suspension point, so every call
    // runs on the same thread and meets that thread's cached tree.

    @Test func aTreeIsRecycledOnlyWithItsLastReference() {
        let tree = DecodedTree.make(forInputBytes: 100)
        let id = ObjectIdentifier(tree)
        // Another reference remains (`tree`): recycling one must not cache it.
        DecodedTree.recycle(.passRetained(tree))
        let second = DecodedTree.make(forInputBytes: 100)
        #expect(ObjectIdentifier(second) != id)
        // The last reference: cached, and the next decode on this thread gets it.
        DecodedTree.recycle(.passRetained(consume tree))
        let third = DecodedTree.make(forInputBytes: 100)
        #expect(ObjectIdentifier(third) == id)
        withExtendedLifetime(second) {}
        withExtendedLifetime(third) {}
    }

    @Test func aRecycledTreeIsRewound() {
        let tree = DecodedTree.make(forInputBytes: 100)
        let id = ObjectIdentifier(tree)
        // Fill past the first block so that an overflow block is chained.
        tree.withUnsafeMutablePointerToHeader { header in
            _ = Arena.protobufAllocate(header, 40_000)
            #expect(header.pointee.arena.overflow != nil)
        }
        DecodedTree.recycle(.passRetained(consume tree))
        let reused = DecodedTree.make(forInputBytes: 50)
        #expect(ObjectIdentifier(reused) == id)
        reused.withUnsafeMutablePointers { header, elements in
            #expect(header.pointee.arena.overflow == nil)
            #expect(
                header.pointee.arena.cursor
                    == UnsafeMutableRawPointer(elements).alignedUp(toMultipleOf: Arena.alignment))
            #expect(header.pointee.arena.end - header.pointee.arena.cursor == header.pointee.arena.firstBlockBytes)
            #expect(header.pointee.usedBytes == 0)
        }
        // A decode that needs more than the cached tree's first block gets a tree its size.
        let reusedBytes = reused.withUnsafeMutablePointerToHeader { $0.pointee.arena.firstBlockBytes }
        DecodedTree.recycle(.passRetained(consume reused))
        let larger = DecodedTree.make(forInputBytes: reusedBytes + 1)
        #expect(
            larger.withUnsafeMutablePointerToHeader { $0.pointee.arena.firstBlockBytes } == 256 + 3 * (reusedBytes + 1))
        withExtendedLifetime(larger) {}
    }

    @Test func valuesKeptAliveReadWhatTheyDecodedWhileLaterDecodesRun() throws {
        // 50 envelopes with different contents, each decoded and kept unread while the
        // next decodes run on the same thread; then every one is read and re-encoded.
        let originals = (0..<50).map { index in
            Weft.V1.Envelope(
                content: (0..<(20 + index)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) },
                recipients: ["participant\(index)::1220" + String(repeating: "ab", count: 32)])
        }
        let encoded = try originals.map { try $0.serializedBytes() }
        var kept: [Weft.V1.Envelope] = []
        for bytes in encoded {
            kept.append(try Weft.V1.Envelope(serializedBytes: bytes))
            // A value dropped at once between them: its tree is the one reused next.
            _ = try Weft.V1.Envelope(serializedBytes: encoded[0]).serializedBytes()
        }
        for (index, value) in kept.enumerated() {
            #expect(try value.serializedBytes() == encoded[index], "unread re-encode of \(index)")
            #expect(value == originals[index], "fields of \(index)")
        }
    }

    @Test func aValueDroppedOnAnotherThreadLeavesTheNextDecodeCorrect() async throws {
        let original = try ExampleMessages.confirmationRequest()
        let bytes = try original.serializedBytes()
        for _ in 0..<50 {
            let decoded = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
            // Read and dropped by another task, possibly on another thread, while this
            // task decodes again.
            let reader = Task.detached { decoded == original }
            let next = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
            #expect(await reader.value)
            #expect(next == original)
        }
    }

    @Test func longStringsEncodeFromTheirOwnStorageToExactlyTheirBytes() throws {
        var reserved = String()
        reserved.reserveCapacity(200)
        reserved += String(repeating: "r", count: 40)
        var shortened = String(repeating: "s", count: 60)
        shortened.removeLast(10)
        let cases: [String] = [
            "a literal string longer than fifteen bytes",
            String(repeating: "n", count: 16),
            String(repeating: "é", count: 30),
            reserved,
            shortened,
            String("a substring made into a string, longer than fifteen".dropFirst(2)),
            "short",
            "",
        ]
        for recipient in cases {
            let envelope = Weft.V1.Envelope(content: [1], recipients: [recipient, recipient + "!"])
            let decoded = try Weft.V1.Envelope(serializedBytes: envelope.serializedBytes())
            #expect(decoded.recipients == [recipient, recipient + "!"], "\(recipient.utf8.count) bytes")
        }
        // A NUL in a long string is refused as in a short one, wherever it is.
        for text in [String(repeating: "x", count: 20) + "\u{0}", "\u{0}" + String(repeating: "x", count: 20)] {
            #expect(throws: WireError.embeddedNUL(message: "weft.v1.Envelope", fieldNumber: 2)) {
                try Weft.V1.Envelope(content: [1], recipients: [text]).serializedBytes()
            }
        }
    }
}
