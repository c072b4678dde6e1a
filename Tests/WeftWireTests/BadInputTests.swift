import Testing
import WeftWire

/// Truncated, random, deeply nested and otherwise invalid bytes give a typed
/// `WireError` from every decoder, never a crash.
@Suite struct BadInputTests {
    @Test(arguments: allSamples.map(\.name))
    func truncatedInputIsRefusedOrDiffers(_ name: String) throws {
        let sample = allSamples.first { $0.name == name }!.samples[0]
        let bytes = try sample.serializedBytes()
        for length in 0..<bytes.count {
            switch decodeOutcome(sample, Array(bytes[..<length])) {
            case .success(let equalsWhole):
                // Cut at a field boundary the rest is still a valid message,
                // but never the original one: every sample field is non-default.
                #expect(!equalsWhole, "\(name) cut at \(length) decoded as the whole")
            case .failure(.malformed), .failure(.invalidUTF8):
                break
            case .failure(let error):
                Issue.record("unexpected \(error) for \(name) cut at \(length)")
            }
        }
    }

    @Test(arguments: allSamples.map(\.name))
    func randomBytesNeverCrash(_ name: String) throws {
        let sample = allSamples.first { $0.name == name }!.samples[0]
        var random = SeededRandom(seed: UInt64(truncatingIfNeeded: name.utf8.reduce(5381) { $0 &* 33 &+ Int($1) }))
        var refused = 0
        for round in 0..<300 {
            let input = random.bytes(Int.random(in: 0...(round < 150 ? 16 : 512), using: &random))
            if case .failure = decodeOutcome(sample, input) { refused += 1 }
        }
        // Random bytes are mostly invalid protobuf; a decoder that accepted
        // nearly all of them would not be checking anything.
        #expect(refused > 30, "\(name) accepted \(300 - refused) of 300 random inputs")
    }

    @Test(arguments: allSamples.map(\.name))
    func oversizedLengthPrefixIsMalformed(_ name: String) {
        // Field 1, length-delimited, claiming 2^40 bytes (1 TiB) with 3 present,
        // and the largest varint length: refused without allocating for it.
        let sample = allSamples.first { $0.name == name }!.samples[0]
        for claim in [1 << 40, Int.max] {
            let input: [UInt8] = [0x0A] + varint(claim) + [1, 2, 3]
            guard case .failure(let error) = decodeOutcome(sample, input) else {
                Issue.record("\(name) accepted a field claiming \(claim) bytes")
                continue
            }
            #expect(error == .malformed(message: name, byteCount: input.count), "\(name): \(error)")
        }
    }

    @Test func lengthPastTheEndIsMalformed() {
        // Field 1 (bytes) claims 100 bytes; 2 follow.
        #expect(throws: WireError.malformed(message: "weft.v1.Envelope", byteCount: 4)) {
            try Weft.V1.Envelope(serializedBytes: [0x0A, 100, 1, 2])
        }
    }

    @Test func deepNestingIsRefusedBeforeUnpacking() throws {
        // Value.list (field 9) → ValueList.elements (field 1) → Value … 5,000
        // levels: enough to exhaust the stack of a recursive decoder.
        var bytes: [UInt8] = [0x18, 0x02]  // innermost: Value.int64 = 1 (zigzag 2)
        for level in 0..<5_000 {
            let field: UInt8 = level % 2 == 0 ? 0x0A : 0x4A  // ValueList.elements, then Value.list
            bytes = [field] + varint(bytes.count) + bytes
        }
        #expect(throws: WireError.nestingTooDeep(message: "weft.v1.Value", limit: 100)) {
            try Weft.V1.Value(serializedBytes: bytes)
        }
        // Nesting within the limit still decodes.
        var shallow: Weft.V1.Value = .init(sum: .int64(1))
        for _ in 0..<40 { shallow = .init(sum: .list(.init(elements: [shallow]))) }
        #expect(try Weft.V1.Value(serializedBytes: shallow.serializedBytes()) == shallow)
    }

    @Test func stringsWithNULAreRefusedBothWays() throws {
        let message = Weft.V1.CheckRequest(service: "weft.v1\u{0}evil")
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.CheckRequest", fieldNumber: 1)) {
            try message.serializedBytes()
        }
        // The same bytes from another implementation: field 1 = "a\0b".
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.CheckRequest", fieldNumber: 1)) {
            try Weft.V1.CheckRequest(serializedBytes: [0x0A, 0x03, 0x61, 0x00, 0x62])
        }
        // Nested: Frame.open.method with a NUL.
        let frame = Weft.V1.Frame(streamID: 1, kind: .open(.init(method: "/a\u{0}")))
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.FrameOpen", fieldNumber: 1)) {
            try frame.serializedBytes()
        }
    }

    @Test func stringsWithNULAreRefusedAfterUnpacking() throws {
        // Envelope.recipients (field 2) = ["a\0b"]: a message that is not scanned before
        // unpacking; the string's length from the decode arena gives the NUL away.
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.Envelope", fieldNumber: 2)) {
            try Weft.V1.Envelope(serializedBytes: [0x12, 0x03, 0x61, 0x00, 0x62])
        }
        // A NUL as the last byte, and as the only byte.
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.Envelope", fieldNumber: 2)) {
            try Weft.V1.Envelope(serializedBytes: [0x12, 0x02, 0x61, 0x00])
        }
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.CheckRequest", fieldNumber: 1)) {
            try Weft.V1.CheckRequest(serializedBytes: [0x0A, 0x01, 0x00])
        }
        // Inside a oneof of a recursive message, nested in a list: Value.list (9) →
        // ValueList.elements (1) → Value.text (5) = "x\0".
        let text: [UInt8] = [0x2A, 0x02, 0x78, 0x00]
        let list: [UInt8] = [0x0A, UInt8(text.count)] + text
        #expect(throws: WireError.embeddedNUL(message: "weft.v1.Value", fieldNumber: 5)) {
            try Weft.V1.Value(serializedBytes: [0x4A, UInt8(list.count)] + list)
        }
        // The same strings without the NUL decode, and an empty string present on the
        // wire reads as "".
        #expect(try Weft.V1.Envelope(serializedBytes: [0x12, 0x03, 0x61, 0x62, 0x63, 0x12, 0x00]).recipients == ["abc", ""])
        #expect(try Weft.V1.CheckRequest(serializedBytes: [0x0A, 0x00]).service == "")
        #expect(try Weft.V1.CheckRequest(serializedBytes: []).service == "")
        // A string that appears twice: protobuf-c keeps the last, and so does Weft.
        #expect(try Weft.V1.CheckRequest(serializedBytes: [0x0A, 0x01, 0x61, 0x0A, 0x02, 0x62, 0x63]).service == "bc")
    }

    @Test func longStringsDecodeWhateverBlockOfTheArenaTheyLandIn() throws {
        // Longer than the arena's first block (32 KiB): protobuf-c's copy lands in an
        // overflow block, whose size word must be right too.
        for length in [1, 15, 16, 127, 128, 40_000, 70_000] {
            let service = String(repeating: "é", count: length / 2) + String(repeating: "a", count: length % 2)
            let decoded = try Weft.V1.CheckRequest(serializedBytes: Weft.V1.CheckRequest(service: service).serializedBytes())
            #expect(decoded.service == service)
        }
    }

    @Test func aNULOrNonASCIIByteIsFoundAtEveryPositionOfEveryLength() throws {
        // The decode checks a string eight and 32 bytes at a time, with an
        // overlapping last word and a byte loop for short strings: a NUL (refused)
        // and a two-byte UTF-8 character (accepted) at each position, for every
        // length around those word sizes.
        func envelope(_ recipient: [UInt8]) throws(WireError) -> Weft.V1.Envelope {
            try Weft.V1.Envelope(serializedBytes: [0x12, UInt8(recipient.count)] + recipient)
        }
        for length in 1...80 {
            let plain = [UInt8](repeating: UInt8(ascii: "p"), count: length)
            #expect(try envelope(plain).recipients == [String(decoding: plain, as: UTF8.self)])
            for position in 0..<length {
                var withNUL = plain
                withNUL[position] = 0
                #expect(throws: WireError.embeddedNUL(message: "weft.v1.Envelope", fieldNumber: 2)) {
                    try envelope(withNUL)
                }
                guard position + 1 < length else { continue }
                var accented = plain
                accented[position] = 0xC3  // "é"
                accented[position + 1] = 0xA9
                #expect(try envelope(accented).recipients == [String(decoding: accented, as: UTF8.self)])
                var cut = accented
                cut[position + 1] = UInt8(ascii: "p")  // 0xC3 without its continuation byte
                #expect(throws: WireError.invalidUTF8(message: "weft.v1.Envelope")) { try envelope(cut) }
            }
        }
    }

    @Test func invalidUTF8IsRefused() {
        // CheckRequest.service = 0xFF 0xFE.
        #expect(throws: WireError.invalidUTF8(message: "weft.v1.CheckRequest")) {
            try Weft.V1.CheckRequest(serializedBytes: [0x0A, 0x02, 0xFF, 0xFE])
        }
    }

    @Test func wrongWireTypeIsMalformed() {
        // Field 1 of Timestamp is a varint; here it comes as fixed32.
        #expect(throws: WireError.self) { try Weft.V1.Timestamp(serializedBytes: [0x0D, 1, 2, 3, 4]) }
    }
}

func varint(_ value: Int) -> [UInt8] {
    var value = UInt64(value)
    var bytes: [UInt8] = []
    repeat {
        var byte = UInt8(value & 0x7F)
        value >>= 7
        if value != 0 { byte |= 0x80 }
        bytes.append(byte)
    } while value != 0
    return bytes
}

/// Found by the fuzzer (fuzz/FuzzMessages, fuzz/FuzzFrameDecoder): protobuf-c
/// accepts field number 0 behind a non-minimal tag varint and could not read
/// its own re-encoding of it; and field numbers past protobuf's range.
@Suite struct FieldNumberZeroTests {
    @Test func fieldNumberZeroIsMalformed() throws {
        #expect(throws: WireError.malformed(message: "weft.v1.SubmissionRequest", byteCount: 3)) {
            try Weft.V1.SubmissionRequest(serializedBytes: [0x80, 0x00, 0x00])
        }
        #expect(throws: WireError.malformed(message: "weft.v1.Timestamp", byteCount: 3)) {
            try Weft.V1.Timestamp(serializedBytes: [0x80, 0x00, 0x00])
        }
        // Found by the JSON check of fuzz/FuzzMessages: a field number above 2^29 - 1 in a 5-byte tag.
        #expect(throws: WireError.malformed(message: "weft.v1.Timestamp", byteCount: 6)) {
            try Weft.V1.Timestamp(serializedBytes: [0xB0, 0xAF, 0xAF, 0xAC, 0x50, 0x01])
        }
        // The largest field number is an ordinary unknown field.
        #expect(try Weft.V1.Timestamp(serializedBytes: [0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]).unknownFields.fields.first?.number == 536_870_911)
        // The frame the fuzzer found: field 0 as fixed64 inside a Frame.
        var decoder = FrameDecoder()
        #expect(throws: WireError.malformed(message: "weft.v1.Frame", byteCount: 10)) {
            try decoder.decode([0x00, 0x00, 0x00, 0x00, 0x0A, 0x81, 0x00, 0x00, 0x0A, 0x81, 0x10, 0x63, 0x6C, 0x69, 0x77])
        }
    }
}

/// Found by the fuzzer: a oneof member set to the empty string is present,
/// and must survive a round trip as such (protobuf-c skips NULL strings).
@Suite struct EmptyOneofMemberTests {
    @Test func emptyStringInAOneofSurvivesARoundTrip() throws {
        let entry = Weft.V1.MetadataEntry(key: "k", value: .textValue(""))
        #expect(try Weft.V1.MetadataEntry(serializedBytes: entry.serializedBytes()) == entry)
        #expect(try Weft.V1.MetadataEntry(serializedBytes: [0x12, 0x00]).value == .textValue(""))
        for value in [Weft.V1.Value(sum: .text("")), .init(sum: .party("")), .init(sum: .decimal("")), .init(sum: .int64(0)),
                      .init(sum: .bool(false)), .init(sum: .list(.init()))] {
            let bytes = try value.serializedBytes()
            #expect(!bytes.isEmpty, "\(value.sum!) was dropped")
            #expect(try Weft.V1.Value(serializedBytes: bytes) == value)
        }
    }
}
