public import NIOCore
public import WeftWire

/// Keeps a quiet connection honest (docs/wire-protocol.md §4.4): after
/// `interval` without receiving anything it sends a PING, and if nothing at
/// all arrives within `timeout` after that it closes the connection with
/// `TransportError.keepaliveTimeout`. Answers the peer's pings with pongs.
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
    /// The data of the ping awaiting its pong, and when it was sent.
    private var outstanding: (data: UInt64, sent: NIODeadline)?
    private var nextPingData: UInt64 = 1

    public init(interval: TimeAmount?, timeout: TimeAmount) {
        self.interval = interval
        self.timeout = timeout
    }

    public convenience init(configuration: RPCConfiguration) {
        self.init(interval: configuration.keepaliveInterval, timeout: configuration.keepaliveTimeout)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { schedule(context, in: interval) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        lastReceived = .now()
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
        lastReceived = .now()
        outstanding = nil  // the pong may wait behind the rest of the frame under way
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastReceived = .now()
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
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.timer = nil
            handler.check(context)
        }
    }

    private func check(_ context: ChannelHandlerContext) {
        guard let interval, context.channel.isActive else { return }
        let now = NIODeadline.now()
        if let outstanding {
            guard now - outstanding.sent < timeout else {
                context.fireErrorCaught(TransportError.keepaliveTimeout(timeout))
                context.close(promise: nil)
                return
            }
            schedule(context, in: timeout - (now - outstanding.sent))
        } else if now - lastReceived >= interval {
            outstanding = (nextPingData, now)
            context.writeAndFlush(wrapOutboundOut(.init(streamID: 0, kind: .ping(.init(data: nextPingData)))), promise: nil)
            nextPingData &+= 1
            schedule(context, in: timeout)
        } else {
            schedule(context, in: interval - (now - lastReceived))
        }
    }
}
