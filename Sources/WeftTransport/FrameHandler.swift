public import NIOCore
public import WeftWire

/// Why a connection's byte stream was refused. Each closes that connection
/// only; the node keeps serving others.
public enum TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The first 8 bytes were not `WEFT 01 00 \r\n`.
    case badPreface(received: [UInt8])
    /// The frame layer refused the bytes (malformed, too large, truncated).
    case frame(WireError)
    /// Nothing arrived for this long after a keepalive PING: the peer or the
    /// path to it is gone.
    case keepaliveTimeout(TimeAmount)

    public var description: String {
        switch self {
        case .badPreface(let received):
            let hex = received.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined(separator: " ")
            return "the connection did not start with the Weft preface (57 45 46 54 01 00 0d 0a) but with \(hex)"
        case .frame(let error):
            return "frame stream: \(error)"
        case .keepaliveTimeout(let timeout):
            return "no answer to a keepalive ping within \(timeout); the connection was closed (check the peer and the network path)"
        }
    }
}

/// Turns the plaintext byte stream of a connection into `weft.v1.Frame`s and
/// back: the client sends the preface first, the server checks it, then both
/// exchange length-prefixed frames (docs/wire-protocol.md §3).
///
/// Limits are checked before buffering (`FrameDecoder`). Any refusal fires a
/// `TransportError` and closes the connection.
public final class FrameHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Weft.V1.Frame
    public typealias OutboundIn = Weft.V1.Frame
    public typealias OutboundOut = ByteBuffer

    public enum Role: Sendable {
        /// Sends the preface when the channel becomes active.
        case client
        /// Expects the preface before anything else.
        case server
    }

    private let role: Role
    private let maximumFrameBytes: Int
    private var decoder: FrameDecoder
    /// Preface bytes still expected (server), or nil once seen.
    private var prefaceReceived: [UInt8]? = []
    private var failed = false

    public init(role: Role, maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes) {
        self.role = role
        self.maximumFrameBytes = maximumFrameBytes
        decoder = FrameDecoder(maximumFrameBytes: maximumFrameBytes)
        if case .client = role { prefaceReceived = nil }
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendPreface(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        sendPreface(context)
        context.fireChannelActive()
    }

    private var prefaceSent = false

    private func sendPreface(_ context: ChannelHandlerContext) {
        guard case .client = role, !prefaceSent else { return }
        prefaceSent = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: ConnectionPreface.bytes)), promise: nil)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var buffer = unwrapInboundIn(data)
        if var seen = prefaceReceived {
            let needed = ConnectionPreface.bytes.count - seen.count
            seen += buffer.readBytes(length: min(needed, buffer.readableBytes)) ?? []
            guard seen == Array(ConnectionPreface.bytes.prefix(seen.count)) else {
                refuse(context, .badPreface(received: seen))
                return
            }
            prefaceReceived = seen.count == ConnectionPreface.bytes.count ? nil : seen
            if prefaceReceived != nil { return }
        }
        let result: Result<[Weft.V1.Frame], WireError> = buffer.withUnsafeReadableBytes { bytes in
            do throws(WireError) { return .success(try decoder.decode(bytes)) } catch { return .failure(error) }
        }
        switch result {
        case .success(let frames):
            // Bytes of a frame not complete yet: the peer is alive all the same (a large frame
            // on a slow link can take longer than the keepalive timeout).
            if frames.isEmpty { context.fireUserInboundEventTriggered(PeerBytesReceived()) }
            for frame in frames { context.fireChannelRead(wrapInboundOut(frame)) }
        case .failure(let error):
            refuse(context, .frame(error))
        }
    }

    /// The peer's bytes break the protocol: tell it why (a `go_away` whose status is the
    /// error, while the outbound framing is still intact), then close. Without it the peer saw
    /// only EOF, a retryable UNAVAILABLE, and retried into the same wall (a request over this
    /// side's frame limit, sent again and again).
    private func refuse(_ context: ChannelHandlerContext, _ error: TransportError) {
        let status: Weft.V1.Status
        switch error {
        case .frame(.frameTooLarge(let length, let limit)):
            status = .init(
                code: StatusCode.resourceExhausted.rawValue,
                message: "received message larger than max (\(length) vs. \(limit)); split it, or raise maximumFrameBytes on both sides",
                errorID: "RPC_FRAME_TOO_LARGE")
        default:
            status = .init(code: StatusCode.invalidArgument.rawValue, message: "\(error)", errorID: "RPC_PROTOCOL_ERROR")
        }
        let frame = Weft.V1.Frame(streamID: 0, kind: .goAway(.init(lastStreamID: UInt32(Int32.max), status: status)))
        if let bytes = try? FrameEncoder.encode(frame, maximumFrameBytes: maximumFrameBytes) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
        }
        fail(context, error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !failed {
            do throws(WireError) {
                try decoder.finish()
            } catch {
                failed = true
                context.fireErrorCaught(TransportError.frame(error))
            }
        }
        context.fireChannelInactive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        do throws(WireError) {
            let bytes = try FrameEncoder.encode(frame, maximumFrameBytes: maximumFrameBytes)
            context.write(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: promise)
        } catch {
            // Most writes pass no promise: dropped silently, the frame would leave its peer
            // waiting (a close never sent) or answering a stream it never saw opened. A frame
            // this side cannot encode is a bug or content it should have refused before: the
            // connection ends, and the handlers above log why.
            promise?.fail(TransportError.frame(error))
            fail(context, .frame(error))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: TransportError) {
        failed = true
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

/// Fired by `FrameHandler` when bytes arrived that did not complete a frame: activity for
/// `KeepaliveHandler`, which otherwise sees whole frames only.
struct PeerBytesReceived: Sendable {}
