import FuzzDriver
import WeftWire

// Failed checks call `fatalError`, not `precondition`: in a release build
// `precondition` traps without its message, and the message is the report.

/// Hands control to libFuzzer, which calls `fuzz` once per input.
@main
enum FuzzFrameDecoderMain {
    static func main() { runLibFuzzer { data, count in data.map { fuzz($0, count) } ?? 0 } }
}

/// libFuzzer entry point: the input is a byte stream fed to a `FrameDecoder`.
///
/// The first byte picks the chunk size (1 to 256 bytes), so the fuzzer drives
/// both the fast path (prefix and body in one chunk) and the buffered path
/// (frames split across chunks). Every decoded frame must survive a
/// re-encode and decode unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    // Each input starts from empty thread caches (see `WireThreadCaches.release`).
    defer { WireThreadCaches.release() }
    let chunkBytes = Int(input[0]) + 1
    let stream = UnsafeRawBufferPointer(rebasing: input[1...])

    var decoder = FrameDecoder()
    var position = 0
    while position < stream.count {
        let end = min(position + chunkBytes, stream.count)
        let chunk = UnsafeRawBufferPointer(rebasing: stream[position..<end])
        position = end
        let frames: [Weft.V1.Frame]
        do { frames = try decoder.decode(chunk) } catch { return 0 }
        for frame in frames { checkRoundTrip(frame) }
    }
    do { try decoder.finish() } catch { return 0 }
    guard decoder.bufferedBytes == 0 else { fatalError("finish() accepted a stream with buffered bytes") }
    return 0
}

/// A decoded frame, encoded again, must decode to the same value, both alone
/// and through `FrameEncoder` and a fresh `FrameDecoder`.
private func checkRoundTrip(_ frame: Weft.V1.Frame) {
    let bytes: [UInt8]
    do { bytes = try frame.serializedBytes() } catch {
        fatalError("decoded frame does not encode: \(error)\n\(frame)")
    }
    let again: Weft.V1.Frame
    do { again = try Weft.V1.Frame(serializedBytes: bytes) } catch {
        fatalError("re-encoded frame does not decode: \(error)\n\(frame)")
    }
    guard again == frame else { fatalError("frame changed in a round trip:\n\(frame)\n\(again)") }

    var framed: [Weft.V1.Frame] = []
    do {
        var decoder = FrameDecoder()
        framed = try decoder.decode(try FrameEncoder.encode(frame))
        try decoder.finish()
    } catch {
        fatalError("re-framed frame does not decode: \(error)\n\(frame)")
    }
    guard framed == [frame] else {
        fatalError("frame changed through FrameEncoder:\n\(frame)\n\(framed)")
    }
}
