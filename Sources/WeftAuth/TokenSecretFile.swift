import Foundation

/// Reads an HS256 secret from a file, the same way for the node that verifies and for
/// `weft token` that signs: the file's bytes without trailing line breaks, which editors
/// and `echo` add and which are easy to get wrong on one side only.
public enum TokenSecretFile {
    public static func read(_ path: String) throws -> [UInt8] {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
        return bytes
    }
}
