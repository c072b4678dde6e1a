public import NIOCore
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

    public init(
        method: String, metadata: [Weft.V1.MetadataEntry] = [], deadline: NIODeadline? = nil, streamID: UInt32 = 0,
        remoteAddress: SocketAddress? = nil
    ) {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.streamID = streamID
        self.remoteAddress = remoteAddress
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
    /// Bytes this entry counts against `RPCConfiguration.maximumMetadataBytes`:
    /// its key and its value.
    var countedBytes: Int {
        switch value {
        case .textValue(let text)?: key.utf8.count + text.utf8.count
        case .binaryValue(let bytes)?: key.utf8.count + bytes.count
        case nil: key.utf8.count
        }
    }
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

/// One direction of a stream's flow control (docs/wire-protocol.md §4.2), on
/// the connection's event loop. The sender's side: how much it may still send,
/// and the messages waiting for credit. The receiver's side: how much the peer
/// may still send, and how much has been read since the last window update.
struct StreamWindows {
    /// Credit to send; a message may go while it is positive (it may then go negative).
    var send = FlowControl.initialWindowBytes
    /// Messages waiting for credit, with the promises their writers await.
    var blocked: [(payload: [UInt8], promise: EventLoopPromise<Void>)] = []
    /// Credit the peer still has to send to us.
    var receive = FlowControl.initialWindowBytes
    /// Bytes read by the application and not yet granted back.
    var readSinceUpdate = 0

    /// Our receive window is `windowBytes`: the grant to send right after open
    /// (nil when the initial window is already that big).
    mutating func openReceiveWindow(to windowBytes: Int) -> UInt32? {
        let extra = windowBytes - FlowControl.initialWindowBytes
        guard extra > 0 else { return nil }
        receive += extra
        return UInt32(extra)
    }

    /// The peer sent a message of `count` bytes; false if it had no credit.
    mutating func received(_ count: Int) -> Bool {
        guard receive > 0 else { return false }
        receive -= count
        return true
    }

    /// The application read `count` bytes: the window update to send, once half
    /// the window has been read (fewer, larger updates).
    mutating func read(_ count: Int, windowBytes: Int) -> UInt32? {
        readSinceUpdate += count
        guard readSinceUpdate >= max(windowBytes / 2, 1) else { return nil }
        let increment = min(readSinceUpdate, Int(UInt32.max))
        readSinceUpdate -= increment
        receive += increment
        return UInt32(increment)
    }

    /// The peer granted `increment`; false if the window would pass the maximum.
    mutating func granted(_ increment: UInt32) -> Bool {
        let window = send + Int(increment)
        guard window <= FlowControl.maximumWindowBytes else { return false }
        send = window
        return true
    }

    /// Whether a message may go now (credit left and nothing queued before it).
    var canSend: Bool { send > 0 && blocked.isEmpty }

    /// Fails every waiting writer: the call is over.
    mutating func failBlocked(_ error: any Error) {
        let waiting = blocked
        blocked = []
        for entry in waiting { entry.promise.fail(error) }
    }
}
