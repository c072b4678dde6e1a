import Synchronization
public import WeftWire

/// The serving status of a node (the empty service name) and of the services
/// it names, as `weft.v1.HealthService` reports it.
///
/// A class so that the node's components and the health service share one
/// source of truth; a `Mutex` rather than an actor so that `set` can be called
/// from synchronous code (a database pool noticing an outage) and so that a
/// watcher subscribes and reads the current status in one step, without a
/// window in which a change could be missed.
public final class HealthStatus: Sendable {
    /// One service's entry.
    struct Entry: Equatable {
        var status: Weft.V1.ServingStatus
        var detail: String
    }

    private struct State {
        var entries: [String: Entry]
        var watchers: [UInt64: (service: String, continuation: AsyncStream<Weft.V1.WatchResponse>.Continuation)] = [:]
        var nextWatcher: UInt64 = 0
    }

    private let state: Mutex<State>

    /// A status source whose node entry starts as `status` (SERVING unless the
    /// node has to become ready first, as gRPC's health service starts).
    public init(_ status: Weft.V1.ServingStatus = .serving, detail: String = "") {
        state = Mutex(State(entries: ["": Entry(status: status, detail: detail)]))
    }

    /// Sets the status of `service` (fully qualified, e.g.
    /// `weft.v1.SequencerService`; empty for the node itself), adding it if it
    /// was unknown. Watchers of the service see the change; setting the status
    /// it already has notifies nobody.
    public func set(_ status: Weft.V1.ServingStatus, detail: String = "", for service: String = "") {
        let entry = Entry(status: status, detail: detail)
        state.withLock { state in
            guard state.entries.updateValue(entry, forKey: service) != entry else { return }
            // Yielding under the lock keeps each watcher's updates in the order of the changes.
            for watcher in state.watchers.values where watcher.service == service {
                watcher.continuation.yield(.init(status: status, detail: detail))
            }
        }
    }

    /// Forgets `service`: Check then answers NOT_FOUND and watchers see
    /// SERVICE_UNKNOWN. The node's own entry (the empty name) stays.
    public func remove(service: String) {
        precondition(!service.isEmpty, "the node's own health entry cannot be removed")
        state.withLock { state in
            guard state.entries.removeValue(forKey: service) != nil else { return }
            for watcher in state.watchers.values where watcher.service == service {
                watcher.continuation.yield(.init(status: .serviceUnknown))
            }
        }
    }

    /// The status and detail of `service`, or nil if it is unknown.
    public func status(of service: String = "") -> (status: Weft.V1.ServingStatus, detail: String)? {
        state.withLock { state in state.entries[service].map { ($0.status, $0.detail) } }
    }

    /// The status of `service` now (SERVICE_UNKNOWN if it is unknown), then
    /// each change, until the consuming task is cancelled or stops iterating.
    ///
    /// Only the newest status waits for a slow consumer (as in gRPC's health
    /// service, intermediate states may be skipped), so a watcher that does
    /// not read holds one message, not a backlog.
    public func updates(for service: String = "") -> AsyncStream<Weft.V1.WatchResponse> {
        let (stream, continuation) = AsyncStream<Weft.V1.WatchResponse>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { state in
            let id = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id] = (service, continuation)
            let current = state.entries[service]
            continuation.yield(.init(status: current?.status ?? .serviceUnknown, detail: current?.detail ?? ""))
            return id
        }
        // Safe to set after registering: nobody can iterate (or end) the stream before it is returned.
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }

    /// How many `updates` streams are live, for tests and metrics.
    public var watcherCount: Int { state.withLock { $0.watchers.count } }
}

/// `weft.v1.HealthService` over a `HealthStatus`.
public struct HealthServiceProvider: Weft.V1.HealthService.Provider {
    public let status: HealthStatus

    public init(status: HealthStatus) { self.status = status }

    /// The status of the service asked about; NOT_FOUND (`HEALTH_UNKNOWN_SERVICE`)
    /// for a service the node does not know, as in gRPC's health protocol.
    public func check(_ request: Weft.V1.CheckRequest, context: RPCCallContext) async throws -> Weft.V1.CheckResponse {
        guard let current = status.status(of: request.service) else {
            throw RPCError(.notFound, "no health status for service \(request.service)", errorID: "HEALTH_UNKNOWN_SERVICE")
        }
        return .init(status: current.status, detail: current.detail)
    }

    /// The current status at once (SERVICE_UNKNOWN for an unknown service,
    /// which may appear later), then each change, until the client cancels.
    public func watch(
        _ request: Weft.V1.WatchRequest, responses: RPCMessageWriter<Weft.V1.WatchResponse>, context: RPCCallContext
    ) async throws {
        for await update in status.updates(for: request.service) {
            try await responses.send(update)
        }
        // The updates end only when this task is cancelled (the client cancelled,
        // the deadline passed, the server is closing); the call has ended already.
        try Task.checkCancellation()
    }
}

/// `weft.v1.ReflectionService`: the schema (`Weft.V1.descriptorSet`) and the
/// names of the services the node serves.
public struct ReflectionServiceProvider: Weft.V1.ReflectionService.Provider {
    /// Fully qualified service names, sorted.
    public let services: [String]
    private let descriptorSet: [UInt8]

    /// A provider listing `services` (fully qualified names, e.g. `weft.v1.HealthService`).
    public init(services: [String]) {
        self.services = Array(Set(services)).sorted()
        descriptorSet = Weft.V1.descriptorSet
    }

    /// A provider listing the services of the methods served at `paths`
    /// (`/weft.v1.<Service>/<Method>`, as `RPCRouter.paths` gives them).
    public init(servedPaths paths: [String]) {
        self.init(services: paths.compactMap(Self.serviceName(ofPath:)))
    }

    /// `/weft.v1.HealthService/Check` → `weft.v1.HealthService`; nil for a malformed path.
    static func serviceName(ofPath path: String) -> String? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
        return String(parts[1])
    }

    public func getDescriptorSet(
        _ request: Weft.V1.GetDescriptorSetRequest, context: RPCCallContext
    ) async throws -> Weft.V1.GetDescriptorSetResponse {
        .init(fileDescriptorSet: descriptorSet, services: services)
    }
}

extension RPCRouter {
    /// Registers the services every Weft node serves: `weft.v1.HealthService`
    /// over `health`, and `weft.v1.ReflectionService` listing the services
    /// registered so far plus these two. Call it after the node's own services,
    /// so that reflection lists them.
    public mutating func registerStandardServices(health: HealthStatus) {
        HealthServiceProvider(status: health).register(on: &self)
        let reflection = ReflectionServiceProvider(
            services: paths.compactMap(ReflectionServiceProvider.serviceName(ofPath:))
                + [Weft.V1.ReflectionService.serviceName])
        reflection.register(on: &self)
    }
}
