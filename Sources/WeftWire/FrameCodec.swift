/// The 8 bytes a client sends first on a new connection, after the TLS
/// handshake: `WEFT`, the protocol version 1.0, `\r\n`. A server that reads
/// anything else closes the connection.
public enum ConnectionPreface {
    /// `W E F T 0x01 0x00 \r \n`.
    public static let bytes: [UInt8] = [0x57, 0x45, 0x46, 0x54, 0x01, 0x00, 0x0D, 0x0A]
}

/// Limits of the frame codec.
public enum FrameLimits {
    /// Largest serialized frame accepted by default: 4 MiB, gRPC's default.
    public static let defaultMaximumFrameBytes = 4 * 1024 * 1024
    /// Bytes before each frame: a flag byte and a 4-byte big-endian length.
    public static let prefixBytes = 5
    /// Bytes decoding a frame may take per byte of it, at least
    /// `DecodeLimits.minimumMemoryBytes`: less than other messages may
    /// (`DecodeLimits.memoryBytesPerInputByte`), since frames arrive before any
    /// authentication and carry their message as bytes. Measured: a frame with
    /// a message takes about 1 per byte, call metadata up to 24 (hundreds of
    /// one-letter entries, within `maximumMetadataBytes`); tiny unknown fields
    /// 52, a kind repeated 64.
    public static let decodeMemoryBytesPerFrameByte = 32
}

/// Writes frames in gRPC's length-prefixed form: flag 0, 4-byte big-endian
/// length, then the serialized `weft.v1.Frame`.
public enum FrameEncoder {
    /// The bytes of one frame, prefix included.
    public static func encode(
        _ frame: Weft.V1.Frame, maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes
    ) throws(WireError) -> [UInt8] {
        var output: [UInt8] = []
        try append(frame, to: &output, maximumFrameBytes: maximumFrameBytes)
        return output
    }

    /// Appends one frame, prefix included, to `output`. Refuses a frame the
    /// peer's limit would refuse, so the error shows on the sending side.
    public static func append(
        _ frame: Weft.V1.Frame, to output: inout [UInt8],
        maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes
    ) throws(WireError) {
        let body = try frame.serializedBytes()
        guard body.count <= maximumFrameBytes else {
            throw .frameTooLarge(lengthBytes: body.count, limitBytes: maximumFrameBytes)
        }
        let length = UInt32(body.count)
        output.reserveCapacity(output.count + FrameLimits.prefixBytes + body.count)
        output.append(0)
        output.append(UInt8(truncatingIfNeeded: length >> 24))
        output.append(UInt8(truncatingIfNeeded: length >> 16))
        output.append(UInt8(truncatingIfNeeded: length >> 8))
        output.append(UInt8(truncatingIfNeeded: length))
        output.append(contentsOf: body)
    }
}

/// Reads frames from a byte stream that arrives in arbitrary pieces.
///
/// A frame's length is checked against `maximumFrameBytes` as soon as its
/// 5-byte prefix is complete, before any of its body is copied, so a peer
/// announcing a huge frame costs nothing. The decoder keeps at most one
/// partial frame. After an error it stays failed: the connection must close,
/// since the stream's framing can no longer be trusted.
public struct FrameDecoder: Sendable {
    /// Largest frame body accepted.
    public let maximumFrameBytes: Int

    private var pending: [UInt8] = []
    /// Body length of the frame in `pending`, once its prefix is complete.
    private var pendingBodyBytes: Int?
    private var failure: WireError?

    public init(maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes) {
        precondition(maximumFrameBytes >= 0 && maximumFrameBytes <= Int(UInt32.max))
        self.maximumFrameBytes = maximumFrameBytes
    }

    /// Bytes of an incomplete frame held (prefix included).
    public var bufferedBytes: Int { pending.count }

    /// Decodes every frame completed by `chunk`.
    public mutating func decode(_ chunk: [UInt8]) throws(WireError) -> [Weft.V1.Frame] {
        let result: Result<[Weft.V1.Frame], WireError> = chunk.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try decode(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Decodes every frame completed by `chunk`.
    public mutating func decode(_ chunk: UnsafeRawBufferPointer) throws(WireError) -> [Weft.V1.Frame] {
        if let failure { throw failure }
        do throws(WireError) {
            return try decodeChunk(chunk)
        } catch {
            failure = error
            pending = []
            throw error
        }
    }

    /// Call at the end of the stream: throws if it ended inside a frame.
    public func finish() throws(WireError) {
        if let failure { throw failure }
        guard pending.isEmpty else {
            let expected = pendingBodyBytes.map { $0 + FrameLimits.prefixBytes } ?? FrameLimits.prefixBytes
            throw .truncatedFrame(expectedBytes: expected, receivedBytes: pending.count)
        }
    }

    private mutating func decodeChunk(_ chunk: UnsafeRawBufferPointer) throws(WireError) -> [Weft.V1.Frame] {
        var frames: [Weft.V1.Frame] = []
        var position = 0
        while position < chunk.count {
            if pending.isEmpty, chunk.count - position >= FrameLimits.prefixBytes {
                // Fast path: the prefix is in this chunk, and maybe the body too.
                let length = try checkedLength(
                    flag: chunk[position], chunk[position + 1], chunk[position + 2], chunk[position + 3],
                    chunk[position + 4])
                let bodyStart = position + FrameLimits.prefixBytes
                if chunk.count - bodyStart >= length {
                    let body = UnsafeRawBufferPointer(rebasing: chunk[bodyStart..<bodyStart + length])
                    frames.append(try Self.frame(body))
                    position = bodyStart + length
                    continue
                }
                pending.reserveCapacity(FrameLimits.prefixBytes + length)
                pending.append(contentsOf: chunk[position..<bodyStart])
                pendingBodyBytes = length
                position = bodyStart
            }
            if pendingBodyBytes == nil {
                // Complete the prefix a byte at a time; nothing else is buffered before it is checked.
                let take = min(FrameLimits.prefixBytes - pending.count, chunk.count - position)
                pending.append(contentsOf: chunk[position..<position + take])
                position += take
                guard pending.count == FrameLimits.prefixBytes else { break }
                let length = try checkedLength(
                    flag: pending[0], pending[1], pending[2], pending[3], pending[4])
                pending.reserveCapacity(FrameLimits.prefixBytes + length)
                pendingBodyBytes = length
            }
            let needed = FrameLimits.prefixBytes + pendingBodyBytes! - pending.count
            let take = min(needed, chunk.count - position)
            pending.append(contentsOf: chunk[position..<position + take])
            position += take
            guard take == needed else { break }
            let result: Result<Weft.V1.Frame, WireError> = pending[FrameLimits.prefixBytes...].withUnsafeBytes { body in
                do throws(WireError) { return .success(try Self.frame(body)) } catch { return .failure(error) }
            }
            frames.append(try result.get())
            pending.removeAll(keepingCapacity: false)
            pendingBodyBytes = nil
        }
        return frames
    }

    /// A frame's body decoded, within the frames' memory budget.
    private static func frame(_ body: UnsafeRawBufferPointer) throws(WireError) -> Weft.V1.Frame {
        try Weft.V1.Frame.decodePooled(body, memoryBytesPerInputByte: FrameLimits.decodeMemoryBytesPerFrameByte)
    }

    private func checkedLength(flag: UInt8, _ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) throws(WireError)
        -> Int
    {
        guard flag == 0 else { throw .unsupportedFrameFlag(flag) }
        let length = Int(b0) << 24 | Int(b1) << 16 | Int(b2) << 8 | Int(b3)
        guard length <= maximumFrameBytes else {
            throw .frameTooLarge(lengthBytes: length, limitBytes: maximumFrameBytes)
        }
        return length
    }
}
