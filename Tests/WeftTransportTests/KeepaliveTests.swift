import NIOCore
import NIOEmbedded
import Testing
import WeftTransport
import WeftWire

/// The keepalive on a channel whose clock the test moves (`EmbeddedEventLoop`): what it takes
/// for alive, and what it closes.
struct KeepaliveTests {
    /// Writes bytes that wait to be written (`bufferedWritableBytes`) from the head of the
    /// pipeline, as the RPC layer's answers wait in NIO's buffer for a slow peer.
    final class Waiting: ChannelInboundHandler {
        typealias InboundIn = Weft.V1.Frame
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        /// The peer has taken everything so far (what waited is written), and `bytes` wait now.
        func nowWaiting(_ bytes: Int) {
            guard let context else { return }
            context.flush()
            context.write(NIOAny(context.channel.allocator.buffer(repeating: 0, count: bytes)), promise: nil)
        }
    }

    /// A peer that sends nothing — no pongs, as a server paused by backpressure reads none —
    /// but takes 64 KiB a second of what waits for it stays connected for as long as it takes
    /// (20 s here, with a 1 s interval and a 3 s timeout); once it takes nothing, the keepalive
    /// closes the connection within interval + timeout (and a last look of 10 ms). Before, it
    /// closed the connection 4 s in, while the peer was taking its answers.
    @Test func aPeerThatTakesWhatWaitsIsAliveAndOneThatTakesNothingIsClosed() throws {
        let loop = EmbeddedEventLoop()
        let waiting = Waiting()
        let channel = EmbeddedChannel(handlers: [waiting, KeepaliveHandler(interval: .seconds(1), timeout: .seconds(3))], loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var bytes = 2 << 20
        waiting.nowWaiting(bytes)
        for _ in 0..<20 {
            loop.advanceTime(by: .seconds(1))
            bytes -= 64 << 10
            waiting.nowWaiting(bytes)
        }
        #expect(channel.isActive, "the keepalive closed a peer that was taking what was written")
        #expect(throws: Never.self) { try channel.throwIfErrorCaught() }
        for _ in 0..<5 {
            loop.advanceTime(by: .seconds(1))
            waiting.nowWaiting(bytes)
        }
        loop.advanceTime(by: .milliseconds(10))  // the last look at the socket before closing
        #expect(!channel.isActive, "a peer that took nothing for 5 s is still connected")
        #expect {
            try channel.throwIfErrorCaught()
        } throws: { error in
            if case .keepaliveTimeout? = error as? TransportError { return true }
            return false
        }
        _ = try? channel.finish()
    }

    /// Turns each frame into bytes of its payload's size plus a header, as `FrameHandler` and
    /// TLS would, so that what waits is counted in bytes (`bufferedWritableBytes`).
    final class Sizer: ChannelOutboundHandler {
        typealias OutboundIn = Weft.V1.Frame
        typealias OutboundOut = ByteBuffer

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            var size = 16
            if case .message(let message)? = unwrapOutboundIn(data).kind { size += message.payload.count }
            context.write(wrapOutboundOut(context.channel.allocator.buffer(repeating: 0, count: size)), promise: promise)
        }
    }

    /// A peer that reads 64 KiB a second while the server queues 128 KiB a second for it (its
    /// streams still have flow-control credit): what waits grows, yet the peer is taking its
    /// answers, and stays connected. Counting only the waiting bytes going down closed it.
    @Test func aPeerThatReadsWhileMoreIsQueuedIsAlive() throws {
        let loop = EmbeddedEventLoop()
        let waiting = Waiting()
        let channel = EmbeddedChannel(
            handlers: [waiting, Sizer(), KeepaliveHandler(interval: .seconds(1), timeout: .seconds(3))], loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let answer = Weft.V1.Frame(streamID: 1, kind: .message(.init(payload: [UInt8](repeating: 7, count: 128 << 10))))
        var backlog = 0
        for _ in 0..<20 {
            loop.advanceTime(by: .seconds(1))
            // The peer took 64 KiB of the backlog; 128 KiB more are written for it.
            backlog = max(backlog - (64 << 10), 0)
            waiting.nowWaiting(backlog)
            channel.write(answer, promise: nil)
            backlog += (128 << 10) + 16  // as the Sizer counts it
        }
        #expect(channel.isActive, "the keepalive closed a peer that was reading while more was queued")
        #expect(throws: Never.self) { try channel.throwIfErrorCaught() }
        _ = try? channel.finish()
    }

    /// With nothing waiting, a ping unanswered for the timeout closes the connection, and a
    /// pong in time keeps it.
    @Test func anUnansweredPingClosesAndAnAnsweredOneKeeps() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handlers: [KeepaliveHandler(interval: .seconds(1), timeout: .seconds(3))], loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        loop.advanceTime(by: .seconds(1))
        guard case .ping(let ping)? = try channel.readOutbound(as: Weft.V1.Frame.self)?.kind else {
            Issue.record("no ping after 1 s of quiet")
            return
        }
        loop.advanceTime(by: .seconds(2))
        try channel.writeInbound(Weft.V1.Frame(streamID: 0, kind: .pong(.init(data: ping.data))))
        loop.advanceTime(by: .seconds(2))
        #expect(channel.isActive, "answered in time")
        loop.advanceTime(by: .seconds(4))
        #expect(!channel.isActive, "the next ping went unanswered for 3 s")
        _ = try? channel.finish()
    }
}
