/// Why bytes could not be turned into a message or a frame, or a message into
/// bytes.
///
/// Every decoder in `WeftWire` throws only this type, so a caller can map each
/// case to a gRPC status (INVALID_ARGUMENT or RESOURCE_EXHAUSTED) and a log line
/// without inspecting strings.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The bytes are not a valid encoding of `message` (truncated, a bad
    /// varint, a length past the end, a field of the wrong wire type).
    case malformed(message: String, byteCount: Int)
    /// A string field holds bytes that are not UTF-8; proto3 requires UTF-8.
    case invalidUTF8(message: String)
    /// A string field contains a NUL character. protobuf-c, which Weft's wire
    /// layer runs on, stores strings NUL-terminated, so such a value would be
    /// silently cut; it is refused instead, on the way in and on the way out.
    case embeddedNUL(message: String, fieldNumber: Int32)
    /// Messages nested deeper than `limit`; refused before protobuf-c's
    /// recursive decoder could exhaust the stack.
    case nestingTooDeep(message: String, limit: Int)
    /// Decoding the bytes as `message` would take more memory than the
    /// decode's budget, `budgetBytes` (`DecodeLimits`, `FrameLimits`: a
    /// multiple of the input's size). Many tiny fields (unknown fields, empty
    /// submessages or strings) or one submessage repeated, merged again at
    /// every repetition, take far more memory decoded than on the wire; the
    /// decode stops at the budget instead. (No byte count beside it: a third
    /// payload word would make every `WireError` a word larger, which the
    /// typed throws of every decode copy.)
    case decodeBudgetExceeded(message: String, budgetBytes: Int)
    /// A frame's length prefix announces more than the configured maximum.
    /// Raised from the 5-byte prefix alone, before any of the body is
    /// buffered.
    case frameTooLarge(lengthBytes: Int, limitBytes: Int)
    /// A frame's flag byte is not 0 (compressed frames are not defined).
    case unsupportedFrameFlag(UInt8)
    /// The input ended inside a frame: `receivedBytes` of `expectedBytes`
    /// (prefix included) had arrived.
    case truncatedFrame(expectedBytes: Int, receivedBytes: Int)

    public var description: String {
        switch self {
        case .malformed(let message, let byteCount):
            return "malformed \(message): \(byteCount) bytes are not a valid protobuf encoding of it"
        case .invalidUTF8(let message):
            return "malformed \(message): a string field is not valid UTF-8"
        case .embeddedNUL(let message, let fieldNumber):
            return "\(message) field \(fieldNumber): strings must not contain NUL characters"
        case .nestingTooDeep(let message, let limit):
            return "malformed \(message): messages nested deeper than \(limit) levels"
        case .decodeBudgetExceeded(let message, let budgetBytes):
            return
                "\(message) refused: decoding it would take more than \(budgetBytes) bytes of memory, "
                + "over the decode memory budget for its size (docs/wire-protocol.md §2); "
                + "such input is made of many tiny or repeated fields, which no Weft node sends"
        case .frameTooLarge(let lengthBytes, let limitBytes):
            // The wording follows gRPC's, which operators already search for.
            return "grpc: received message larger than max (\(lengthBytes) vs. \(limitBytes))"
        case .unsupportedFrameFlag(let flag):
            return "unsupported frame flag \(flag): only 0 (uncompressed) is defined"
        case .truncatedFrame(let expectedBytes, let receivedBytes):
            return "connection ended inside a frame: \(receivedBytes) of \(expectedBytes) bytes received"
        }
    }
}
