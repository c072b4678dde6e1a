public import WeftContracts
public import WeftTopology

/// A request's id: its sequencing timestamp, which the sequencer makes unique across the
/// domain, and the root hash of its transaction, which says what it is about.
public struct RequestID: Hashable, Sendable, CustomStringConvertible {
    public let timestamp: SequencingTimestamp
    public let rootHash: Digest32

    public init(timestamp: SequencingTimestamp, rootHash: Digest32) {
        self.timestamp = timestamp
        self.rootHash = rootHash
    }

    public var description: String { "\(timestamp)/\(String(rootHash.description.prefix(16)))" }
}
