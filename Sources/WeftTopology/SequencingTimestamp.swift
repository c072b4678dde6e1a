public import WeftWire

/// A point on the domain's sequencing clock: microseconds since the Unix epoch, UTC.
///
/// Topology is indexed by sequencing time rather than by any node's wall clock, because the
/// sequencer assigns the same timestamp to an event for every recipient: answering "as of T"
/// in sequencing time is what makes every node give the same answer.
public struct SequencingTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z; negative before it.
    public let microsSinceEpoch: Int64

    public init(microsSinceEpoch: Int64) {
        self.microsSinceEpoch = microsSinceEpoch
    }

    /// From the wire form.
    public init(_ timestamp: Weft.V1.Timestamp) {
        microsSinceEpoch = timestamp.microsSinceEpoch
    }

    /// The wire form.
    public var wire: Weft.V1.Timestamp { .init(microsSinceEpoch: microsSinceEpoch) }

    /// This time moved by `micros`, saturating at the ends of the range instead of trapping:
    /// a timestamp taken from the network must never crash the node.
    public func adding(micros: Int64) -> SequencingTimestamp {
        let (sum, overflow) = microsSinceEpoch.addingReportingOverflow(micros)
        guard overflow else { return .init(microsSinceEpoch: sum) }
        return .init(microsSinceEpoch: micros > 0 ? .max : .min)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.microsSinceEpoch < rhs.microsSinceEpoch }

    /// ISO 8601 with microseconds, e.g. `2025-03-01T12:00:00.000250Z`.
    public var description: String {
        let (seconds, micros) = Self.floorDivide(microsSinceEpoch, 1_000_000)
        let (days, secondOfDay) = Self.floorDivide(seconds, 86_400)
        let (year, month, day) = Self.civilDate(daysSinceEpoch: days)
        let hour = secondOfDay / 3600
        let minute = secondOfDay % 3600 / 60
        let second = secondOfDay % 60
        return "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2))T"
            + "\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):\(Self.pad(second, 2)).\(Self.pad(micros, 6))Z"
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let quotient = value / divisor
        let remainder = value % divisor
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    /// The proleptic Gregorian date of a day count (Howard Hinnant's `civil_from_days`), so
    /// that the description needs no Foundation and no time zone database.
    private static func civilDate(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value.magnitude)
        let sign = value < 0 ? "-" : ""
        return sign + String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
