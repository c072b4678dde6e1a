import Testing
import WeftWire

/// The length-prefixed frame codec: incremental decoding from arbitrary
/// pieces, limits checked before buffering, typed errors.
@Suite struct FrameCodecTests {
    let frames: [Weft.V1.Frame] = [
        .init(
            streamID: 1,
            kind: .open(
                .init(
                    method: "/weft.v1.HealthService/Check",
                    metadata: [.init(key: "traceparent", value: .textValue("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))],
                    timeout: .init(micros: 5_000_000)))),
        .init(streamID: 1, kind: .message(.init(payload: Array(repeating: 0xAB, count: 70_000)))),
        .init(streamID: 1, kind: .halfClose(.init())),
        .init(streamID: 1, kind: .close(.init(status: .init(code: 5, message: "no such member", errorID: "SEQUENCER_UNKNOWN_MEMBER")))),
        .init(streamID: 0, kind: .ping(.init(data: 0xFFFF_FFFF_FFFF))),
        .init(streamID: 0, kind: nil),  // an empty frame body: zero length
    ]

    func stream() throws -> [UInt8] {
        var bytes: [UInt8] = []
        for frame in frames { try FrameEncoder.append(frame, to: &bytes) }
        return bytes
    }

    @Test func prefixIsFlagAndBigEndianLength() throws {
        let frame = Weft.V1.Frame(streamID: 3, kind: .ping(.init(data: 1)))
        let body = try frame.serializedBytes()
        let bytes = try FrameEncoder.encode(frame)
        #expect(Array(bytes[..<5]) == [0, 0, 0, 0, UInt8(body.count)])
        #expect(Array(bytes[5...]) == body)
    }

    @Test func wholeStreamAtOnce() throws {
        var decoder = FrameDecoder()
        #expect(try decoder.decode(try stream()) == frames)
        #expect(decoder.bufferedBytes == 0)
        try decoder.finish()
    }

    @Test func dripFedOneByteAtATime() throws {
        var decoder = FrameDecoder()
        var decoded: [Weft.V1.Frame] = []
        for byte in try stream() { decoded += try decoder.decode([byte]) }
        #expect(decoded == frames)
        try decoder.finish()
    }

    @Test func randomSplits() throws {
        let bytes = try stream()
        for seed in 0..<50 as Range<UInt64> {
            var random = SeededRandom(seed: seed)
            var decoder = FrameDecoder()
            var decoded: [Weft.V1.Frame] = []
            var position = 0
            while position < bytes.count {
                let size = min(Int.random(in: 1...9_000, using: &random), bytes.count - position)
                decoded += try decoder.decode(Array(bytes[position..<position + size]))
                position += size
            }
            #expect(decoded == frames, "seed \(seed)")
            try decoder.finish()
        }
    }

    @Test func oversizedLengthIsRefusedBeforeBuffering() throws {
        var decoder = FrameDecoder(maximumFrameBytes: 1024)
        // The prefix alone, announcing 4 GiB - 1: refused with nothing buffered.
        #expect(throws: WireError.frameTooLarge(lengthBytes: 0xFFFF_FFFF, limitBytes: 1024)) {
            try decoder.decode([0, 0xFF, 0xFF, 0xFF, 0xFF])
        }
        #expect(decoder.bufferedBytes == 0)
        // Split prefix: the check happens when its fifth byte arrives.
        var split = FrameDecoder(maximumFrameBytes: 1024)
        #expect(try split.decode([0, 0, 0]) == [])
        #expect(throws: WireError.frameTooLarge(lengthBytes: 1025, limitBytes: 1024)) {
            try split.decode([0x04, 0x01] + Array(repeating: 0, count: 1025))
        }
        #expect(split.bufferedBytes == 0)
        // The decoder stays failed: the connection's framing is lost.
        #expect(throws: WireError.frameTooLarge(lengthBytes: 1025, limitBytes: 1024)) { try split.decode([0]) }
    }

    @Test func exactlyTheLimitIsAccepted() throws {
        let frame = Weft.V1.Frame(streamID: 1, kind: .message(.init(payload: Array(repeating: 1, count: 1000))))
        let size = try frame.serializedBytes().count
        var decoder = FrameDecoder(maximumFrameBytes: size)
        #expect(try decoder.decode(FrameEncoder.encode(frame, maximumFrameBytes: size)) == [frame])
        #expect(throws: WireError.frameTooLarge(lengthBytes: size, limitBytes: size - 1)) {
            try FrameEncoder.encode(frame, maximumFrameBytes: size - 1)
        }
    }

    @Test func compressedFlagIsRefused() {
        var decoder = FrameDecoder()
        #expect(throws: WireError.unsupportedFrameFlag(1)) { try decoder.decode([1, 0, 0, 0, 0]) }
    }

    @Test func truncatedStreamIsReportedAtTheEnd() throws {
        let bytes = try FrameEncoder.encode(frames[0])
        var decoder = FrameDecoder()
        #expect(try decoder.decode(Array(bytes.dropLast(3))) == [])
        #expect(throws: WireError.truncatedFrame(expectedBytes: bytes.count, receivedBytes: bytes.count - 3)) {
            try decoder.finish()
        }
        var prefixOnly = FrameDecoder()
        _ = try prefixOnly.decode([0, 0])
        #expect(throws: WireError.truncatedFrame(expectedBytes: 5, receivedBytes: 2)) { try prefixOnly.finish() }
    }

    @Test func garbageBodyIsMalformed() {
        // A well-formed prefix announcing 4 bytes of a field with wire type 7.
        var decoder = FrameDecoder()
        #expect(throws: WireError.malformed(message: "weft.v1.Frame", byteCount: 4)) {
            try decoder.decode([0, 0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0x7F])
        }
    }

    @Test func randomGarbageNeverCrashes() {
        var random = SeededRandom(seed: 7)
        var failures = 0
        for _ in 0..<2_000 {
            var decoder = FrameDecoder(maximumFrameBytes: 4096)
            let garbage = random.bytes(Int.random(in: 1...64, using: &random))
            do {
                _ = try decoder.decode(garbage)
                try decoder.finish()
            } catch { failures += 1 }
        }
        #expect(failures > 1_900)
    }

    @Test func prefaceIsWeftVersionOneCRLF() {
        #expect(ConnectionPreface.bytes == Array("WEFT".utf8) + [1, 0] + Array("\r\n".utf8))
    }
}
