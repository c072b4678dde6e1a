import Foundation
import Testing
import WeftObservability

/// Every metric the sources create has a `# HELP` text in `WeftMetrics.descriptions` and a row
/// in docs/operations.md §4. swift-metrics carries no help text, so a metric added without an
/// entry is served bare and only `promtool` on a node kind's scrape would notice, if that kind
/// happened to create it during the run; reading the sources catches it for every metric.
@Suite struct MetricDescriptionsTests {
    /// The repository root, from this file's path (`Tests/WeftObservabilityTests/…`).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The names given as `label: "weft_…"` to a swift-metrics `Counter`, `Timer`, `Recorder`,
    /// `Gauge` or `Meter` anywhere under Sources/ (loggers are labelled `weft.…`, with dots).
    static func metricNamesInSources() throws -> Set<String> {
        let pattern = try NSRegularExpression(pattern: #"label:\s*"(weft_[a-z0-9_]+)""#)
        var names: Set<String> = []
        let sources = root.appendingPathComponent("Sources")
        guard let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: sources.path])
        }
        for case let file as URL in files where file.pathExtension == "swift" {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { names.insert(String(text[range])) }
            }
        }
        return names
    }

    @Test func everyMetricInTheSourcesHasADescriptionAndADocumentedRow() throws {
        let names = try Self.metricNamesInSources()
        // The scan finds what it should: metrics of every component, across line breaks.
        #expect(names.isSuperset(of: ["weft_rpc_server_calls_total", "weft_mediator_verdicts_total", "weft_participant_commitments_sent_total"]))
        let undescribed = names.subtracting(WeftMetrics.descriptions.keys).sorted()
        #expect(undescribed.isEmpty, "no # HELP text in WeftMetrics.descriptions: \(undescribed)")
        let operations = try String(contentsOf: Self.root.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        let undocumented = names.filter { !operations.contains("| `\($0)` |") }.sorted()
        #expect(undocumented.isEmpty, "no row in docs/operations.md §4: \(undocumented)")
        // A description for a metric nothing creates any more is stale.
        let stale = Set(WeftMetrics.descriptions.keys).subtracting(names).sorted()
        #expect(stale.isEmpty, "described but created nowhere: \(stale)")
    }
}
