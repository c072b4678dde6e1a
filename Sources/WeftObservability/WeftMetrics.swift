public import Prometheus
import CoreMetrics

/// The process's metrics: one Prometheus registry behind swift-metrics.
///
/// swift-metrics hands every `Counter`, `Timer` and `Recorder` to the factory
/// installed when it is created, and a factory can be installed once per
/// process: metrics created before `bootstrap()` are no-ops forever. So the
/// `weft` executable calls `bootstrap()` first thing, and every component
/// creates its metrics after it (at start, not in static initializers).
public enum WeftMetrics {
    /// Histogram buckets for durations, in seconds. Finer than swift-prometheus's
    /// defaults (5 ms – 10 s) because a Weft RPC or a group commit takes
    /// between 100 µs and a few ms.
    public static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .microseconds(2_500_000), .seconds(5), .seconds(10),
    ]

    private static let installed: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        MetricsSystem.bootstrap(factory)
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
