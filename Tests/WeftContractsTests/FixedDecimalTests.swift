// Decimal: text form, range, and arithmetic checked against exact integer
// arithmetic on seeded random operands.

import Testing
import WeftContracts

@Suite("FixedDecimal")
struct FixedDecimalTests {
    @Test(
        "text round-trips in canonical form",
        arguments: [
            ("0", "0"), ("-0", "0"), ("1.50", "1.5"), ("-12.5", "-12.5"), ("0.0000000001", "0.0000000001"),
            ("9999999999999999999999999999.9999999999", "9999999999999999999999999999.9999999999"), ("007", "7"),
        ])
    func text(input: String, canonical: String) throws {
        let value = try #require(FixedDecimal(input))
        #expect(value.description == canonical)
        #expect(FixedDecimal(canonical) == value)
    }

    @Test(
        "malformed or out-of-range text is refused",
        arguments: [
            "", "-", ".5", "5.", "1.2.3", "1e5", "0.00000000001", "10000000000000000000000000000", "+1", " 1", "1_000",
        ])
    func malformed(input: String) {
        #expect(FixedDecimal(input) == nil)
    }

    @Test("arithmetic agrees with exact integer arithmetic, rounding half to even")
    func againstExactArithmetic() throws {
        var random = SeededGenerator(seed: 0xDEC1_0A15)
        let one = FixedDecimal.unitsPerOne
        for _ in 0..<2_000 {
            // Operands up to ±10¹⁴ units keep products within Int128 for the
            // reference computation.
            let a = Int128(Int64.random(in: -100_000_000_000_000...100_000_000_000_000, using: &random))
            let b = Int128(Int64.random(in: -100_000_000_000_000...100_000_000_000_000, using: &random))
            let x = FixedDecimal(units: a)!
            let y = FixedDecimal(units: b)!
            #expect(x.adding(y)?.units == a + b)
            #expect(x.subtracting(y)?.units == a - b)
            #expect(x.multiplying(by: y)?.units == roundHalfEven(a * b, one))
            if b != 0 {
                #expect(x.dividing(by: y)?.units == roundHalfEven(a * one, b), "\(x) / \(y)")
            } else {
                #expect(x.dividing(by: y) == nil)
            }
        }
    }

    @Test("results past 28 integer digits are nil, never a trap")
    func overflow() throws {
        let max = try #require(FixedDecimal("9999999999999999999999999999.9999999999"))
        let min = max.negated()
        #expect(max.adding(max) == nil)
        #expect(min.subtracting(max) == nil)
        #expect(max.multiplying(by: max) == nil)
        #expect(max.dividing(by: FixedDecimal("0.0000000001")!) == nil)
        // Quotients of exactly UInt128.max units that round up: nil, not a trap on the increment.
        let product = (try #require(FixedDecimal("3.4028236712")), try #require(FixedDecimal("9999999994150107211801936269.3026340746")))
        #expect(product.0.multiplying(by: product.1) == nil)
        let quotient = (try #require(FixedDecimal("9999999993004751512471957074.2377885769")), try #require(FixedDecimal("0.2938735875")))
        #expect(quotient.0.dividing(by: quotient.1) == nil)
        #expect(max.multiplying(by: FixedDecimal(1)) == max)
        #expect(min.dividing(by: FixedDecimal(-1)) == max)
    }
}

/// n / d rounded half to even, exactly.
private func roundHalfEven(_ n: Int128, _ d: Int128) -> Int128 {
    var quotient = n / d
    let remainder = n % d
    let twice = remainder.magnitude * 2
    if twice > d.magnitude || (twice == d.magnitude && quotient % 2 != 0) {
        quotient += (n < 0) != (d < 0) ? -1 : 1
    }
    return quotient
}
