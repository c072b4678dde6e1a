public import NIOCore
import Synchronization
public import WeftWire

/// What a server handler knows about its call besides the request: the method,
/// the caller's metadata and address, the deadline.
public struct RPCCallContext: Sendable {
    /// `/weft.v1.<Service>/<Method>`.
    public let method: String
    /// The caller's metadata (headers), in the order sent.
    public let metadata: [Weft.V1.MetadataEntry]
    /// When the call's deadline passes (the server then cancels the handler); nil: none.
    public let deadline: NIODeadline?
    /// The stream the call runs on, for logs.
    public let streamID: UInt32
    /// The caller's address.
    public let remoteAddress: SocketAddress?
    /// Identifies the connection the call came on, unique in this process: a
    /// session bound to it (a sequencer token) is useless on another connection.
    public let connectionID: UInt64

    public init(
        method: String, metadata: [Weft.V1.MetadataEntry] = [], deadline: NIODeadline? = nil, streamID: UInt32 = 0,
        remoteAddress: SocketAddress? = nil, connectionID: UInt64 = 0
    ) {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.streamID = streamID
        self.remoteAddress = remoteAddress
        self.connectionID = connectionID
    }

    /// The first text value of `key` (lower-case), e.g. `authorization`.
    public subscript(key: String) -> String? {
        for entry in metadata where entry.key == key {
            if case .textValue(let text)? = entry.value { return text }
        }
        return nil
    }

    /// The W3C trace id from `traceparent` (32 hex digits), if the caller sent one.
    public var traceID: String? {
        guard let parent = self["traceparent"] else { return nil }
        let parts = parent.split(separator: "-")
        guard parts.count >= 2, parts[1].count == 32 else { return nil }
        return String(parts[1])
    }
}

extension Weft.V1.MetadataEntry {
    /// Bytes this entry counts against `RPCConfiguration.maximumMetadataBytes`: its key and
    /// its value, and 32 for the entry itself (as HTTP/2 counts a header): an entry costs the
    /// server far more than its two bytes on the wire, and a call of a million empty entries
    /// counted as nothing and was held for the whole call.
    var countedBytes: Int {
        Self.overheadBytes
            + {
                switch value {
                case .textValue(let text)?: key.utf8.count + text.utf8.count
                case .binaryValue(let bytes)?: key.utf8.count + bytes.count
                case nil: key.utf8.count
                }
            }()
    }

    /// What each entry counts beyond its key and value.
    static let overheadBytes = 32
}

/// The messages one side of a call receives, in order, as an `AsyncSequence`:
/// a server's requests of a client-streaming call, a client's responses of a
/// server-streaming call.
///
/// Reading a message returns its bytes to the sender's flow-control window,
/// so a reader that stops reading stops the sender once the window
/// (`RPCConfiguration.streamWindowBytes`) is full: memory stays bounded.
public struct RPCMessageStream<Message: WireMessage>: AsyncSequence, Sendable {
    public typealias Element = Message

    let payloads: AsyncThrowingStream<[UInt8], any Error>
    /// Called with each message's size as it is read: returns flow-control credit.
    let consumed: @Sendable (Int) -> Void
    /// The call's error for a message that does not decode.
    let malformed: @Sendable (WireError) -> RPCError

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: payloads.makeAsyncIterator(), consumed: consumed, malformed: malformed)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        let consumed: @Sendable (Int) -> Void
        let malformed: @Sendable (WireError) -> RPCError

        public mutating func next() async throws -> Message? {
            guard let payload = try await base.next() else { return nil }
            consumed(payload.count)
            do {
                return try Message(serializedBytes: payload)
            } catch {
                throw malformed(error)
            }
        }
    }
}

/// Sends the messages of one side of a call: a server's responses of a
/// server-streaming call, a client's requests of a client-streaming call.
///
/// `send` suspends while the stream's flow-control window is used up, that is
/// until the receiver has read enough; it throws once the call is over.
public struct RPCMessageWriter<Message: WireMessage>: Sendable {
    let sendBytes: @Sendable ([UInt8]) async throws -> Void

    /// Sends `message` to the other side.
    public func send(_ message: Message) async throws {
        try await sendBytes(try message.serializedBytes())
    }
}

/// The receiving side of a stream's flow control (docs/wire-protocol.md
/// §4.2), on the connection's event loop: how much the peer may still send.
struct ReceiveWindow {
    /// Credit the peer still has to send to us.
    private(set) var credit = FlowControl.initialWindowBytes

    /// Our receive window is `windowBytes`: the grant to send right after open
    /// (nil when the initial window is already that big).
    mutating func open(to windowBytes: Int) -> UInt32? {
        let extra = windowBytes - FlowControl.initialWindowBytes
        guard extra > 0 else { return nil }
        credit += extra
        return UInt32(extra)
    }

    /// The peer sent a message of `count` bytes; false if it had no credit.
    mutating func received(_ count: Int) -> Bool {
        guard credit > 0 else { return false }
        credit -= count
        return true
    }

    /// We sent the peer a window update of `increment`.
    mutating func granted(_ increment: UInt32) { credit += Int(increment) }
}

/// Bytes the application has read and not yet granted back, from whatever
/// thread reads: one window update per half window, not one hop per message.
final class ReadCredit: Sendable {
    private let unreported = Mutex(0)
    private let threshold: Int

    init(windowBytes: Int) { threshold = max(windowBytes / 2, 1) }

    /// Records `count` bytes read; returns the increment to grant once half the window has been read.
    func read(_ count: Int) -> UInt32? {
        unreported.withLock { unreported in
            unreported += count
            guard unreported >= threshold else { return nil }
            let increment = min(unreported, Int(UInt32.max))
            unreported -= increment
            return UInt32(increment)
        }
    }
}

/// The sending side of a stream's flow control, shared by the writer (any
/// thread) and the event loop that receives window updates: a message may go
/// while the credit is positive, and takes its size from it.
///
/// Writers take credit here without visiting the event loop, so a stream of
/// messages costs one hop per message to the loop (fire and forget) and no
/// hop back; the window alone bounds what can be queued.
final class SendWindow: Sendable {
    private struct State {
        var credit = FlowControl.initialWindowBytes
        var waiting: [(id: UInt64, count: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiter: UInt64 = 0
        var closed: RPCError?
    }

    private let state = Mutex(State())

    /// Takes `count` bytes of credit, waiting while there is none (or others wait first).
    func acquire(_ count: Int) async throws {
        let immediate: Result<Void, RPCError>? = state.withLock { state in
            if let closed = state.closed { return .failure(closed) }
            guard state.credit > 0, state.waiting.isEmpty else { return nil }
            state.credit -= count
            return .success(())
        }
        if let immediate { return try immediate.get() }
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        // A writer waiting for credit that is cancelled (its handler ended: a subscription cut
        // at its token's expiry while the client reads nothing) stops waiting, rather than hold
        // the handler until the peer reads or goes.
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let failure: (any Error)? = state.withLock { state in
                    if let closed = state.closed { return closed }
                    if Task.isCancelled { return CancellationError() }
                    if state.credit > 0, state.waiting.isEmpty {
                        state.credit -= count
                        continuation.resume()
                        return nil
                    }
                    state.waiting.append((id, count, continuation))
                    return nil
                }
                if let failure { continuation.resume(throwing: failure) }
            }
        } onCancel: {
            let cancelled = state.withLock { state in
                state.waiting.firstIndex { $0.id == id }.map { state.waiting.remove(at: $0).continuation }
            }
            cancelled?.resume(throwing: CancellationError())
        }
    }

    /// Takes `count` bytes whatever the credit: the single message of a unary side.
    func take(_ count: Int) { state.withLock { $0.credit -= count } }

    /// The peer granted `increment` more; false if the window would pass the maximum.
    func grant(_ increment: UInt32) -> Bool {
        state.withLock { state in
            let window = state.credit + Int(increment)
            guard window <= FlowControl.maximumWindowBytes else { return false }
            state.credit = window
            while state.credit > 0, !state.waiting.isEmpty {
                let next = state.waiting.removeFirst()
                state.credit -= next.count
                next.continuation.resume()
            }
            return true
        }
    }

    /// The call is over: waiting and later writers fail with `error`.
    func close(_ error: RPCError) {
        let waiting = state.withLock { state in
            if state.closed == nil { state.closed = error }
            defer { state.waiting = [] }
            return state.waiting
        }
        for entry in waiting { entry.continuation.resume(throwing: error) }
    }
}
