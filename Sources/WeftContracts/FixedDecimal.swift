/// The contract language's `Decimal`: fixed point with exactly 10 fractional
/// digits and at most 38 significant digits (Daml's `Numeric 10`).
///
/// It is an `Int128` count of 10⁻¹⁰ units, so every operation is exact
/// integer arithmetic and the same on every machine. Multiplication and
/// division round half to even to 10 digits. Every operation returns `nil`
/// on overflow instead of trapping; the interpreter turns that into an error.
public struct FixedDecimal: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Count of 10⁻¹⁰ units; |units| < `unitsLimit`.
    public let units: Int128

    /// Digits after the point.
    public static let scale = 10
    /// Units in 1.
    public static let unitsPerOne: Int128 = 10_000_000_000
    /// Exclusive bound on |units|: 10³⁸, i.e. 28 digits before the point.
    public static let unitsLimit: Int128 = 100_000_000_000_000_000_000_000_000_000_000_000_000

    public static let zero = FixedDecimal(checked: 0)

    /// A decimal of `units` × 10⁻¹⁰; nil if out of range.
    public init?(units: Int128) {
        guard units > -Self.unitsLimit, units < Self.unitsLimit else { return nil }
        self.units = units
    }

    init(checked units: Int128) { self.units = units }

    /// The decimal equal to `value`.
    public init(_ value: Int64) { self.units = Int128(value) * Self.unitsPerOne }

    /// Parses `-12.5`, `7`, `0.0000000001`: optional `-`, digits, optional
    /// `.` and 1 to 10 digits. Nil if malformed or out of range.
    public init?(_ text: String) {
        var bytes = Array(text.utf8)[...]
        var negative = false
        if bytes.first == UInt8(ascii: "-") {
            negative = true
            bytes = bytes.dropFirst()
        }
        let point = bytes.firstIndex(of: UInt8(ascii: ".")) ?? bytes.endIndex
        let whole = bytes[bytes.startIndex..<point]
        let fraction = point < bytes.endIndex ? bytes[(point + 1)...] : []
        guard !whole.isEmpty, whole.count <= 28, fraction.count <= Self.scale,
            point == bytes.endIndex || !fraction.isEmpty
        else { return nil }
        var units: Int128 = 0
        for byte in whole {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            units = units * 10 + Int128(byte - UInt8(ascii: "0"))
        }
        for index in 0..<Self.scale {
            let digit: Int128
            if index < fraction.count {
                let byte = fraction[fraction.startIndex + index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                digit = Int128(byte - UInt8(ascii: "0"))
            } else {
                digit = 0
            }
            units = units * 10 + digit
        }
        self.init(units: negative ? -units : units)
    }

    /// The canonical text of `weft.v1.Value.decimal`: no trailing zeros, no
    /// point for a whole number (`-12.5`, `7`).
    public var description: String {
        let magnitude = units.magnitude
        let whole = magnitude / UInt128(Self.unitsPerOne)
        var fraction = magnitude % UInt128(Self.unitsPerOne)
        var text = (units < 0 ? "-" : "") + String(whole)
        if fraction != 0 {
            var digits = Self.scale
            while fraction % 10 == 0 {
                fraction /= 10
                digits -= 1
            }
            let fractionText = String(fraction)
            text += "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
        }
        return text
    }

    /// The form of a `Decimal` literal in the language: always with a point
    /// (`7.0`), so it never reads back as an `Int`.
    var literalText: String {
        let text = description
        return text.contains(".") ? text : text + ".0"
    }

    public static func < (lhs: FixedDecimal, rhs: FixedDecimal) -> Bool { lhs.units < rhs.units }

    /// The sum; nil on overflow. (Two values near 10³⁸ add up past
    /// `Int128.max`, so the machine addition itself must be checked.)
    public func adding(_ other: FixedDecimal) -> FixedDecimal? {
        let (sum, overflow) = units.addingReportingOverflow(other.units)
        return overflow ? nil : FixedDecimal(units: sum)
    }

    /// The difference; nil on overflow.
    public func subtracting(_ other: FixedDecimal) -> FixedDecimal? {
        let (difference, overflow) = units.subtractingReportingOverflow(other.units)
        return overflow ? nil : FixedDecimal(units: difference)
    }

    public func negated() -> FixedDecimal { FixedDecimal(checked: -units) }

    /// The product rounded half to even to 10 digits; nil on overflow.
    public func multiplying(by other: FixedDecimal) -> FixedDecimal? {
        // |a|·|b| < 10⁷⁶ fits 256 bits; the quotient by 10¹⁰ fits 128 bits
        // exactly when the high word is below the divisor.
        let product = units.magnitude.multipliedFullWidth(by: other.units.magnitude)
        let divisor = UInt128(Self.unitsPerOne)
        guard product.high < divisor else { return nil }
        let (quotient, remainder) = divisor.dividingFullWidth(product)
        return Self.rounded(quotient, remainder, divisor, negative: (units < 0) != (other.units < 0))
    }

    /// The quotient rounded half to even to 10 digits; nil on overflow or
    /// when `other` is zero.
    public func dividing(by other: FixedDecimal) -> FixedDecimal? {
        guard other.units != 0 else { return nil }
        let divisor = other.units.magnitude
        let scaled = units.magnitude.multipliedFullWidth(by: UInt128(Self.unitsPerOne))
        guard scaled.high < divisor else { return nil }
        let (quotient, remainder) = divisor.dividingFullWidth(scaled)
        return Self.rounded(quotient, remainder, divisor, negative: (units < 0) != (other.units < 0))
    }

    private static func rounded(_ quotient: UInt128, _ remainder: UInt128, _ divisor: UInt128, negative: Bool)
        -> FixedDecimal?
    {
        // Out of range already, so checked before rounding: a quotient of UInt128.max (which
        // the callers' guards allow) would trap on the increment below.
        guard quotient < UInt128(unitsLimit) else { return nil }
        var magnitude = quotient
        // remainder < divisor < 2¹²⁷ here, so doubling cannot overflow.
        let twice = remainder * 2
        if twice > divisor || (twice == divisor && magnitude % 2 == 1) { magnitude += 1 }
        guard magnitude < UInt128(unitsLimit) else { return nil }
        let signed = Int128(magnitude)
        return FixedDecimal(checked: negative ? -signed : signed)
    }
}
