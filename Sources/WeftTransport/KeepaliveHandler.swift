public import NIOCore
public import WeftWire

/// Keeps a quiet connection honest (docs/wire-protocol.md §4.4): after
/// `interval` without receiving anything it sends a PING, and if nothing at
/// all arrives within `timeout` after that it closes the connection with
/// `TransportError.keepaliveTimeout`. Answers the peer's pings with pongs.
///
/// A peer that takes what this side writes is alive too: while a server's
/// backpressure pauses reading a slow client (`BackPressureHandler`), the
/// client's pongs wait unread, and only the bytes it takes from the socket
/// show that it is there. Times are the event loop's (`EventLoop.now`).
///
/// The timeout measures the peer, not this process: when the check runs late
/// (this event loop was blocked, or the process was not scheduled), the pong
/// may not have been read yet, or a peer on the same stalled machine may not
/// have had its turn, so an expired ping gets one fresh timeout from then
/// instead of closing a connection whose peer did nothing wrong; and before
/// closing, it looks once more 10 ms later, by when the loop has usually read
/// what the socket already holds.
///
/// Sits between `FrameHandler` and the RPC handler; pings and pongs stop here.
public final class KeepaliveHandler: ChannelDuplexHandler {
    public typealias InboundIn = Weft.V1.Frame
    public typealias InboundOut = Weft.V1.Frame
    public typealias OutboundIn = Weft.V1.Frame
    public typealias OutboundOut = Weft.V1.Frame

    private let interval: TimeAmount?
    private let timeout: TimeAmount
    private var lastReceived = NIODeadline.now()
    private var timer: Scheduled<Void>?
    /// The ping awaiting its pong.
    private struct Outstanding {
        var data: UInt64
        var sent: NIODeadline
        /// Its timeout was restarted once because this side's check ran late.
        var restarted = false
        /// Its timeout passed, and one more pass reads what the socket holds before closing.
        var lastLook = false
    }
    private var outstanding: Outstanding?
    /// When the scheduled check should run: how late it runs tells a stall of this side.
    private var checkDue: NIODeadline?
    private var nextPingData: UInt64 = 1
    /// Payload bytes of the messages this side handed down the pipeline: what NIO's buffered
    /// byte count grows by, give or take frame and record headers (`peerTookBytes`).
    private var payloadBytesWritten = 0
    /// `payloadBytesWritten` less what the channel held to write, at the last check.
    private var lastTaken: Int?

    public init(interval: TimeAmount?, timeout: TimeAmount) {
        self.interval = interval
        self.timeout = timeout
    }

    public convenience init(configuration: RPCConfiguration) {
        self.init(interval: configuration.keepaliveInterval, timeout: configuration.keepaliveTimeout)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        lastReceived = context.eventLoop.now
        if context.channel.isActive { schedule(context, in: interval) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        lastReceived = context.eventLoop.now
        schedule(context, in: interval)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is PeerBytesReceived else { return context.fireUserInboundEventTriggered(event) }
        lastReceived = context.eventLoop.now
        outstanding = nil  // the pong may wait behind the rest of the frame under way
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastReceived = context.eventLoop.now
        outstanding = nil  // anything from the peer shows it is alive
        let frame = unwrapInboundIn(data)
        switch frame.kind {
        case .ping(let ping)?:
            context.writeAndFlush(wrapOutboundOut(.init(streamID: 0, kind: .pong(.init(data: ping.data)))), promise: nil)
        case .pong?:
            break
        default:
            context.fireChannelRead(data)
        }
    }

    private func schedule(_ context: ChannelHandlerContext, in delay: TimeAmount?) {
        guard let delay, timer == nil else { return }
        checkDue = context.eventLoop.now + delay
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.check(context)
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .message(let message)? = unwrapOutboundIn(data).kind { payloadBytesWritten &+= message.payload.count }
        context.write(data, promise: promise)
    }

    /// Whether the peer took some of what this side wrote since the last check: what was
    /// handed down less what still waits went up. It is alive, even though nothing arrives
    /// from it while reading it is paused. Counting what was written too, not only the waiting
    /// bytes going down, sees a peer that reads while more is queued for it (streams with
    /// flow-control credit left). A peer that takes nothing keeps nothing alive: each frame's
    /// headers, not counted as written, only push the figure down.
    private func peerTookBytes(_ context: ChannelHandlerContext) -> Bool {
        guard let buffered = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes) else { return false }
        let taken = payloadBytesWritten &- buffered
        defer { lastTaken = taken }
        guard let last = lastTaken else { return false }
        return taken > last
    }

    /// How late a check may run before this side counts as stalled: a loaded loop's timers
    /// run some milliseconds late; a quarter of a second is a stall.
    private var stallTolerance: TimeAmount { min(.nanoseconds(timeout.nanoseconds / 4), .milliseconds(250)) }

    private func check(_ context: ChannelHandlerContext) {
        guard let interval, context.channel.isActive else { return }
        let now = context.eventLoop.now
        let late = checkDue.map { now - $0 } ?? .zero
        if peerTookBytes(context) {
            lastReceived = now
            outstanding = nil
        }
        if var ping = outstanding {
            guard now - ping.sent >= timeout else { return schedule(context, in: timeout - (now - ping.sent)) }
            if late > stallTolerance, !ping.restarted {
                // This side was not looking: the peer gets a whole timeout from now.
                ping.sent = now
                ping.restarted = true
                ping.lastLook = false
                outstanding = ping
                return schedule(context, in: timeout)
            }
            if !ping.lastLook {
                // A loop that was busy until just now runs its due timers before it reads: the
                // pong may be in the socket. A moment later the loop has read what is there.
                ping.lastLook = true
                outstanding = ping
                return schedule(context, in: .milliseconds(10))
            }
            context.fireErrorCaught(TransportError.keepaliveTimeout(timeout))
            context.close(promise: nil)
        } else if now - lastReceived >= interval {
            outstanding = Outstanding(data: nextPingData, sent: now)
            context.writeAndFlush(wrapOutboundOut(.init(streamID: 0, kind: .ping(.init(data: nextPingData)))), promise: nil)
            nextPingData &+= 1
            schedule(context, in: timeout)
        } else {
            schedule(context, in: interval - (now - lastReceived))
        }
    }
}
