import COpenSSL
import WeftWire

/// A homomorphic multiset hash: LtHash with 2048 lanes of 16 bits (Bellare–Micciancio's
/// lattice hash as Facebook's and Canton's `LtHash16`), for ACS commitments.
///
/// An element (a contract) is expanded by SHAKE128 into 2048 little-endian `UInt16` lanes;
/// the hash of a set is the lane-wise sum modulo 2^16 of its elements' expansions. Adding and
/// removing are lane-wise addition and subtraction, so the hash of a set follows its changes
/// at a cost per change independent of the set's size, in any order, and removing undoes
/// adding. Finding two different sets with the same sum is a short-vector lattice problem
/// (Canton relies on the same construction, with 2048 × 16 bits ≈ 200 bits of security).
public struct LtHash16: Sendable, Equatable {
    /// Lanes of the hash.
    public static let laneCount = 2048
    /// Bytes of the lanes as they are stored and digested (little-endian).
    public static let byteCount = laneCount * 2

    /// The lane-wise sum, modulo 2^16.
    public private(set) var lanes: [UInt16]

    /// The hash of the empty set (every lane 0).
    public init() { lanes = [UInt16](repeating: 0, count: Self.laneCount) }

    /// A hash stored before as its `bytes`.
    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidLength(what: "an LtHash16", expected: Self.byteCount, actual: bytes.count)
        }
        lanes = (0..<Self.laneCount).map { UInt16(bytes[2 * $0]) | UInt16(bytes[2 * $0 + 1]) << 8 }
    }

    /// Whether no element was added (or each was removed again).
    public var isEmpty: Bool { lanes.allSatisfy { $0 == 0 } }

    /// The lanes as little-endian bytes: what is stored.
    public var bytes: [UInt8] {
        var result = [UInt8](repeating: 0, count: Self.byteCount)
        for (index, lane) in lanes.enumerated() {
            result[2 * index] = UInt8(truncatingIfNeeded: lane)
            result[2 * index + 1] = UInt8(truncatingIfNeeded: lane >> 8)
        }
        return result
    }

    /// A 32-byte digest of the lanes (purpose `ACS_COMMITMENT_DIGEST`): what participants send
    /// and compare instead of 4 KiB.
    public var digest: [UInt8] { PurposeHasher.hash(.acsCommitmentDigest, bytes).digest }

    /// Adds the element whose 32-byte hash is `element` (e.g. an `ACS_COMMITMENT_CONTRACT` hash).
    public mutating func add(element: [UInt8]) { add(Self.expand(element)) }

    /// Removes the element `add(element:)` added.
    public mutating func remove(element: [UInt8]) { subtract(Self.expand(element)) }

    /// Adds every element of `other`.
    public mutating func add(_ other: LtHash16) {
        lanes.withUnsafeMutableBufferPointer { mine in
            other.lanes.withUnsafeBufferPointer { theirs in
                for index in 0..<Self.laneCount { mine[index] &+= theirs[index] }
            }
        }
    }

    /// Removes every element of `other`.
    public mutating func subtract(_ other: LtHash16) {
        lanes.withUnsafeMutableBufferPointer { mine in
            other.lanes.withUnsafeBufferPointer { theirs in
                for index in 0..<Self.laneCount { mine[index] &-= theirs[index] }
            }
        }
    }

    /// The set `{element}`: SHAKE128 of `element`, 4096 bytes read as little-endian lanes.
    public static func expand(_ element: [UInt8]) -> LtHash16 {
        var output = [UInt8](repeating: 0, count: byteCount)
        guard let context = EVP_MD_CTX_new() else { fatalError("OpenSSL cannot allocate a digest context") }
        defer { EVP_MD_CTX_free(context) }
        let done =
            EVP_DigestInit_ex2(context, shake128, nil) == 1
            && element.withUnsafeBufferPointer { EVP_DigestUpdate(context, $0.baseAddress, $0.count) } == 1
            && EVP_DigestFinalXOF(context, &output, byteCount) == 1
        guard done else { fatalError("OpenSSL SHAKE128 failed: \(OpenSSL.takeError())") }
        var expanded = LtHash16()
        expanded.lanes.withUnsafeMutableBufferPointer { lanes in
            for index in 0..<laneCount {
                lanes[index] = UInt16(output[2 * index]) | UInt16(output[2 * index + 1]) << 8
            }
        }
        return expanded
    }

    /// SHAKE128, fetched once (OpenSSL 3 otherwise looks it up on every initialization).
    nonisolated(unsafe) private static let shake128: OpaquePointer = {
        guard let digest = EVP_MD_fetch(nil, "SHAKE128", nil) else {
            fatalError("OpenSSL has no SHAKE128: \(OpenSSL.takeError())")
        }
        return digest
    }()
}
