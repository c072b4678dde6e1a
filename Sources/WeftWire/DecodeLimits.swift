/// How much memory one decode may take.
///
/// protobuf-c's unpack allocates a struct, an array slot and a 32-byte scan
/// entry for each field it reads, so a message of tiny fields (2-byte unknown
/// fields, empty submessages or strings) takes 40 to 100 times its size
/// decoded, and a submessage field repeated, which protobuf-c merges again at
/// every repetition, takes memory quadratic in its count. So the allocator of
/// a decode (`DecodedTree`) hands out at most `memoryBudgetBytes`, held in
/// blocks of about half again as much at worst; past it the unpack fails, and the decode
/// with `WireError.decodeBudgetExceeded`.
///
/// The budget is set so that no message a Weft node sends is refused, nor any
/// that a sequencer re-encodes and reads back. Measured in bytes handed out
/// per input byte: the protocol's messages (batches of envelopes, sequenced
/// events, confirmation requests, topology snapshots) under 3; Daml values of
/// tiny elements, the densest legitimate content, up to 43 (long lists of
/// small integers 31, of empty lists or records 43); a batch of empty
/// envelopes, which a sender may submit and the sequencer stores re-encoded,
/// 68. 80 is above all of them. Below 68, a sender could submit such a batch
/// padded with overlong varints (protobuf-c accepts them; re-encoding shortens
/// them) and leave the sequencer unable to read back what it sequenced.
public enum DecodeLimits {
    /// Bytes a decode may take per byte of its input.
    public static let memoryBytesPerInputByte = 80

    /// Bytes any decode may take, however small its input. Not less than a
    /// thread's cached decode tree (`DecodedTree.reusableBytes`), which a
    /// small decode may start in, and room for a frame whose call metadata is
    /// at its limit in the tiniest entries (16 KiB counted at 32 bytes an
    /// entry: 512 entries, ~80 KB decoded), which must reach the metadata
    /// check and its per-call refusal rather than lose the connection.
    public static let minimumMemoryBytes = 128 * 1024

    /// The memory budget of decoding `byteCount` bytes at `perInputByte`
    /// bytes for each.
    @inline(__always)
    public static func memoryBudgetBytes(
        forInputBytes byteCount: Int, perInputByte: Int = memoryBytesPerInputByte
    ) -> Int {
        max(minimumMemoryBytes, perInputByte &* byteCount)
    }
}
