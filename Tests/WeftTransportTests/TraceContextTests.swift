import Testing

@testable import WeftTransport

/// W3C trace contexts: the ids Weft makes, and the `traceparent` values it accepts.
@Suite struct TraceContextTests {
    func isLowerHex(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    @Test func newTracesHaveWellFormedIdsThatRoundTrip() throws {
        for _ in 0..<1_000 {
            let trace = TraceContext.newTrace()
            #expect(isLowerHex(trace.traceID, count: 32))
            #expect(isLowerHex(trace.spanID, count: 16))
            #expect(trace.traceID.utf8.contains { $0 != 48 } && trace.spanID.utf8.contains { $0 != 48 })
            #expect(trace.sampled)
            let parsed = try #require(TraceContext(traceparent: trace.traceparent))
            #expect(parsed == trace)
        }
    }

    @Test func idsDoNotRepeatAcrossThreads() async {
        // 4 tasks × 5,000 traces, each with a span: 40,000 ids, all distinct.
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    (0..<5_000).flatMap { _ -> [String] in
                        let trace = TraceContext.newTrace()
                        return [trace.traceID, trace.spanID]
                    }
                }
            }
            var all: [String] = []
            for await part in group { all += part }
            return all
        }
        #expect(ids.count == 40_000)
        #expect(Set(ids).count == ids.count)
    }

    @Test func digitsAreSpreadOverEveryPosition() {
        // Each of the 32 positions of a trace id takes all 16 digits within 2,000 ids: a
        // formatter that dropped a nibble or a word would leave a position stuck.
        var seen = Array(repeating: Set<UInt8>(), count: 32)
        for _ in 0..<2_000 {
            for (position, digit) in TraceContext.newTrace().traceID.utf8.enumerated() { seen[position].insert(digit) }
        }
        #expect(seen.allSatisfy { $0.count == 16 })
    }

    @Test func aChildSpanKeepsTheTraceAndFlags() throws {
        let parent = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        let child = parent.childSpan()
        #expect(child.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(child.spanID != parent.spanID && isLowerHex(child.spanID, count: 16))
        #expect(!child.sampled)
        #expect(child.traceparent.hasPrefix("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        #expect(child.traceparent.hasSuffix("-00"))
    }

    @Test(arguments: [
        "",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // unknown version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero span id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // no flags
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
    ])
    func malformedValuesAreRefused(_ value: String) {
        #expect(TraceContext(traceparent: value) == nil)
    }
}
