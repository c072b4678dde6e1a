import Testing
import WeftTestSupport
import WeftWire

/// A decoded message reads its fields from protobuf-c's structs on first use
/// (`LazyFields`). What that must not change: errors at decode, the bytes of a
/// re-encode, value semantics, and reads from many threads at once.
@Suite struct LazyDecodeTests {
    /// Re-encodes `bytes` decoded as the prototype's type without reading any field.
    func reencodeUnread<M: WireMessage>(_ prototype: M, _ bytes: [UInt8]) throws -> [UInt8] {
        try M(serializedBytes: bytes).serializedBytes()
    }

    /// The same after reading the top level only: submessages stay unread.
    func reencodeTopLevelRead<M: WireMessage>(_ prototype: M, _ bytes: [UInt8]) throws -> [UInt8] {
        let decoded = try M(serializedBytes: bytes)
        #expect(decoded.unknownFields == prototype.unknownFields)
        return try decoded.serializedBytes()
    }

    @Test(arguments: allSamples.map(\.name))
    func aMessageNobodyReadReencodesToTheSameBytes(_ name: String) throws {
        for sample in allSamples.first(where: { $0.name == name })!.samples {
            let bytes = try sample.serializedBytes()
            #expect(try reencodeUnread(sample, bytes) == bytes, "\(name), nothing read")
            #expect(try reencodeTopLevelRead(sample, bytes) == bytes, "\(name), top level read")
        }
    }

    @Test func aNULDeepInsideIsRefusedAtDecodeNotWhenRead() throws {
        // SubmissionRequest.batch.envelopes[0].recipients[0] = "a\0b".
        var request = Weft.V1.SubmissionRequest(batch: .init(envelopes: [.init(content: [1], recipients: ["ab"])]))
        request.sender = "s"
        var bytes = try request.serializedBytes()
        let at = bytes.indices.dropLast().first { bytes[$0] == UInt8(ascii: "a") && bytes[$0 + 1] == UInt8(ascii: "b") }!
        bytes[at + 1] = 0
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.Envelope", fieldNumber: 2)) {
            try Weft.V1.SubmissionRequest(serializedBytes: bytes)
        }
        // Invalid UTF-8 likewise.
        bytes[at + 1] = 0xFF
        #expect(throws: WireError.invalidUTF8(message: "weft.v1.Envelope")) {
            try Weft.V1.SubmissionRequest(serializedBytes: bytes)
        }
    }

    @Test func changingACopyOfADecodedMessageLeavesTheOriginal() throws {
        let original = try ExampleMessages.confirmationRequest()
        let bytes = try original.serializedBytes()
        let decoded = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
        var changed = decoded
        changed.batch!.envelopes[0].recipients.append("another")
        changed.messageID = "changed"
        // The copy changed, the decoded value did not, and both encode what they hold.
        #expect(decoded == original)
        #expect(try decoded.serializedBytes() == bytes)
        #expect(changed.batch!.envelopes[0].recipients.last == "another")
        let reread = try Weft.V1.SubmissionRequest(serializedBytes: try changed.serializedBytes())
        #expect(reread == changed)
        #expect(reread.messageID == "changed")
        #expect(reread.batch!.envelopes[1] == original.batch!.envelopes[1])
    }

    @Test func aDecodedMessageReadFromManyTasksAtOnceReadsTheSame() async throws {
        let original = try ExampleMessages.confirmationRequest()
        let bytes = try original.serializedBytes()
        for _ in 0..<20 {
            // A fresh, unread value for each round, shared by 8 tasks that all read it first.
            let decoded = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
            let results = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        decoded == original && decoded.batch?.envelopes.count == original.batch?.envelopes.count
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results == Array(repeating: true, count: 8))
        }
    }

    @Test func aSubmessageOutlivesTheMessageItWasDecodedWith() throws {
        let original = try ExampleMessages.confirmationRequest()
        var envelope: Weft.V1.Envelope?
        do {
            let decoded = try Weft.V1.SubmissionRequest(serializedBytes: try original.serializedBytes())
            envelope = decoded.batch?.envelopes.last
        }
        // The decoded request is gone; the envelope still holds the memory it reads from.
        #expect(envelope == original.batch?.envelopes.last)
        #expect(try envelope?.serializedBytes() == original.batch?.envelopes.last?.serializedBytes())
    }
}
