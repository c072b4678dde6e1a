import Testing

@testable import WeftWire

/// `packedSizeOfFields`: the size `encode` allocates for messages of scalars,
/// strings and bytes, computed from the Swift fields instead of protobuf-c's
/// `get_packed_size`. protobuf-c's `pack` writes without a bound, so the size
/// must be exact: every case here compares it with protobuf-c's own count.
@Suite struct PackedSizeTests {
    /// The size from the Swift fields, or nil when the type leaves it to protobuf-c.
    func fieldSize(_ message: any WireMessage) -> Int?? {
        guard let bridged = message as? any CBackedMessage else { return nil }
        return .some(bridged.packedSizeOfFields)
    }

    /// protobuf-c's `get_packed_size` of the message's C struct.
    func protobufCSize<M: CBackedMessage>(_ message: M) throws -> Int {
        let arena = Arena()
        let c = arena.allocate(M.CStruct.self, count: 1)
        M.cInit(c)
        try message.fill(c, arena)
        return M.cPackedSize(c)
    }

    @Test func everySampleOfEveryTypeIsSizedExactly() throws {
        var sized = 0
        for (name, samples) in allSamples {
            for sample in samples {
                guard let bridged = sample as? any CBackedMessage else {
                    Issue.record("\(name) is not bridged to protobuf-c")
                    continue
                }
                guard let size = bridged.packedSizeOfFields else { continue }
                sized += 1
                #expect(size == (try protobufCSize(bridged)), "\(name)")
                #expect(size == (try sample.serializedBytes().count), "\(name)")
            }
        }
        // The envelope is one of them, and most leaf types are: a regression
        // that returned nil everywhere would pass the checks above.
        #expect(sized >= 60)
        #expect(fieldSize(Weft.V1.Envelope(content: [1], recipients: ["a"])) == .some(6))
    }

    @Test func edgeValuesMatchProtobufC() throws {
        let long = String(repeating: "x", count: 200)
        let longer = String(repeating: "é", count: 9000)  // 18,000 bytes: a 3-byte length prefix
        let cases: [any CBackedMessage] = [
            // A negative int64 is a 10-byte varint; so is a negative enum.
            Weft.V1.Timestamp(microsSinceEpoch: -1),
            Weft.V1.Timestamp(microsSinceEpoch: .max),
            Weft.V1.Timestamp(microsSinceEpoch: 127),
            Weft.V1.Timestamp(microsSinceEpoch: 128),
            Weft.V1.CheckResponse(status: .unrecognized(-1)),
            Weft.V1.CheckResponse(status: .unrecognized(.max)),
            // Repeated strings: an empty element is written, with a zero length.
            Weft.V1.Envelope(content: [], recipients: ["", "", long]),
            Weft.V1.Envelope(content: Array(repeating: 7, count: 127), recipients: []),
            Weft.V1.Envelope(content: Array(repeating: 7, count: 128), recipients: [longer]),
            Weft.V1.Envelope(content: Array(repeating: 7, count: 16_384), recipients: ["né"]),
        ]
        for message in cases {
            let size = try #require(message.packedSizeOfFields)
            #expect(size == (try protobufCSize(message)), "\(message)")
            #expect(size == (try message.serializedBytes().count), "\(message)")
        }
        #expect(Weft.V1.Timestamp(microsSinceEpoch: -1).packedSizeOfFields == 11)
        #expect(Weft.V1.Envelope().packedSizeOfFields == 0)
        #expect(try Weft.V1.Envelope().serializedBytes() == [])
    }

    @Test func leftToProtobufCWhereTheFieldsDoNotTell() throws {
        // A type with submessages or a oneof.
        #expect(Weft.V1.Batch(envelopes: [Weft.V1.Envelope(content: [1], recipients: ["a"])]).packedSizeOfFields == nil)
        // A decoded value nobody has read: `fill` copies its C struct as unpacked.
        let bytes = try Weft.V1.Envelope(content: [1, 2], recipients: ["a"]).serializedBytes()
        let decoded = try Weft.V1.Envelope(serializedBytes: bytes)
        #expect(decoded.packedSizeOfFields == nil)
        #expect(try decoded.serializedBytes() == bytes)
        // Once read, the fields tell.
        #expect(decoded.recipients == ["a"])
        #expect(decoded.packedSizeOfFields == bytes.count)
        // Unknown fields are packed by protobuf-c from what it kept.
        let extra: [UInt8] = [0x98, 0x06, 0x07]
        let withUnknown = try Weft.V1.Envelope(serializedBytes: bytes + extra)
        _ = withUnknown.content
        #expect(withUnknown.packedSizeOfFields == nil)
        #expect(try withUnknown.serializedBytes() == bytes + extra)
    }

    @Test func stringsWithANULAreStillRefused() {
        // The sizes count UTF-8 where protobuf-c counts `strlen`: they agree
        // only because `fill` refuses a NUL before the size is asked for.
        for recipient in ["a\0b", String(repeating: "y", count: 40) + "\0"] {
            #expect(throws: WireError.self) {
                try Weft.V1.Envelope(content: [1], recipients: [recipient]).serializedBytes()
            }
        }
    }
}
