public import Prometheus
import CoreMetrics

/// The process's metrics: one Prometheus registry behind swift-metrics.
///
/// swift-metrics hands every `Counter`, `Timer` and `Recorder` to the factory
/// installed when it is created, and a factory can be installed once per
/// process: metrics created before `bootstrap()` are no-ops forever. So
/// `weft run` calls `bootstrap()` first thing (before any node starts, with or
/// without a `/metrics` endpoint), and every component creates its metrics
/// after it (at start, not in static initializers).
public enum WeftMetrics {
    /// Histogram buckets for durations, in seconds. Finer than swift-prometheus's
    /// defaults (5 ms – 10 s) because a Weft RPC or a group commit takes
    /// between 100 µs and a few ms.
    public static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .microseconds(2_500_000), .seconds(5), .seconds(10),
    ]

    /// The `# HELP` text of every metric a Weft node serves, by name.
    ///
    /// swift-metrics carries no help text, and `promtool check metrics` (and
    /// the operators reading a scrape) want one for each family, so the factory
    /// looks it up here. A metric missing from this table is served without
    /// `# HELP` and the test suite's promtool check fails: add it here (and to
    /// docs/operations.md §4) when adding a metric. One text per name, because
    /// the registry refuses two help texts for one family.
    public static let descriptions: [String: String] = [
        "weft_rpc_server_calls_total":
            "RPC calls that ended, by method and gRPC status code name (OK, UNAVAILABLE, ...).",
        "weft_rpc_server_call_duration_seconds":
            "RPC call duration in seconds, from the call's open frame to its close, streaming included.",
        "weft_rpc_server_refused_total":
            "RPC calls refused before a handler ran (unknown method, limits, draining), by gRPC status code name.",
        "weft_sequencer_submissions_total":
            "Submissions this sequencer node took, by outcome: sequenced, or duplicate (a message id already used).",
        "weft_sequencer_submission_bytes":
            "Size in bytes of each submitted batch this sequencer node sequenced.",
        "weft_participant_requests_total":
            "Confirmation requests this participant validated and saw decided, by outcome: approved (committed) or rejected.",
        "weft_participant_local_rejections_total":
            "Requests this participant rejected itself when validating, by reject reason id.",
        "weft_participant_inconsistent_approvals_total":
            "Parts of approved transactions this participant left out because they contradict its contracts.",
        "weft_participant_commits_without_packages_total":
            "Approved transactions this participant committed without their tree because they use a package it lacks.",
        "weft_participant_messages_before_topology_total":
            "Confirmation requests and verdicts this participant ignored because they arrived before the domain's topology history.",
        "weft_participant_commitments_sent_total":
            "ACS commitments this participant computed for its counter-participants, one per counter-participant and period.",
        "weft_participant_commitments_rejected_total":
            "ACS commitments received and dropped because a check failed (sender, addressee, period, signature).",
        "weft_participant_commitments_refused_total":
            "ACS commitments of this participant the sequencer refused to deliver (a counter-participant not an enabled member when sequenced).",
        "weft_participant_commitment_mismatches_total":
            "ACS commitment comparisons that did not match: the contracts shared with a counter-participant differ.",
        "weft_participant_commands_total":
            "Commands submitted through this participant that completed, by outcome: succeeded or rejected.",
        "weft_participant_command_duration_seconds":
            "From a command's submission to its completion on this participant, in seconds.",
        "weft_mediator_requests_total":
            "Confirmation requests the mediator registered.",
        "weft_mediator_verdicts_total":
            "Verdicts the mediator sent, by outcome: approved or rejected.",
    ]

    private static let installed: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        factory.valueHistogramBuckets["weft_sequencer_submission_bytes"] = [256, 1024, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304]
        MetricsSystem.bootstrap(DescribedMetricsFactory(base: factory, descriptions: descriptions))
        return registry
    }()

    /// Installs the Prometheus registry as swift-metrics' backend (once; later
    /// calls return the same registry).
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry { installed }

    /// Everything recorded so far, in the Prometheus text exposition format
    /// (version 0.0.4), as `/metrics` serves it.
    public static func exposition() -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        installed.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// swift-prometheus' factory with each metric's help text from
/// `WeftMetrics.descriptions`; everything else (buckets, destruction) is the
/// base factory's.
struct DescribedMetricsFactory: MetricsFactory {
    let base: PrometheusMetricsFactory
    let descriptions: [String: String]

    private var registry: PrometheusCollectorRegistry { base.registry }

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: descriptions[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        let buckets = base.valueHistogramBuckets[label] ?? base.defaultValueHistogramBuckets
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: buckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets = base.durationHistogramBuckets[label] ?? base.defaultDurationHistogramBuckets
        return registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: buckets)
    }

    func destroyCounter(_ handler: any CounterHandler) { base.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        base.destroyFloatingPointCounter(handler)
    }
    func destroyRecorder(_ handler: any RecorderHandler) { base.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { base.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { base.destroyTimer(handler) }
}
