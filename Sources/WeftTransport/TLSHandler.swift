import COpenSSL
public import NIOCore
import WeftCrypto

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Fired inbound once the TLS handshake has completed and the peer agreed on `weft/1`.
public struct TLSHandshakeCompleted: Sendable, Hashable {
    /// The negotiated ALPN protocol id.
    public let applicationProtocol: String
}

/// TLS 1.3 on OpenSSL as a SwiftNIO channel handler: ciphertext in and out
/// on the network side, plaintext `ByteBuffer`s on the application side.
///
/// OpenSSL runs over two memory BIOs: bytes read from the socket are written
/// into the read BIO, and whatever OpenSSL puts in the write BIO is sent. The
/// handler is a small state machine (handshaking → active → closed, or
/// failed); writes made before the handshake completes wait and go out after
/// it. Failures are a `TLSError` fired as an error, and close the channel.
/// Modelled on swift-nio-ssl's `NIOSSLHandler` (which uses BoringSSL).
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case handshaking
        case active
        case closed
        case failed
    }

    private let tls: TLSContext
    private let ssl: OpaquePointer
    private let readBIO: OpaquePointer
    private let writeBIO: OpaquePointer
    private let handshakeTimeout: TimeAmount
    private var state = State.idle
    private var timeout: Scheduled<Void>?
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// Largest plaintext chunk read at a time (one TLS record).
    private static let readChunkBytes = 16_384

    public init(context tls: TLSContext, handshakeTimeout: TimeAmount = .seconds(10)) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(tls.pointer), let readBIO = BIO_new(BIO_s_mem()), let writeBIO = BIO_new(BIO_s_mem()) else {
            throw .configuration("SSL_new: \(OpenSSL.takeError())")
        }
        COpenSSL_BIO_set_mem_eof_return(readBIO, -1)
        COpenSSL_BIO_set_mem_eof_return(writeBIO, -1)
        SSL_set_bio(ssl, readBIO, writeBIO)  // the SSL owns both BIOs from here
        self.tls = tls
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
        self.handshakeTimeout = handshakeTimeout
        switch tls.configuration.role {
        case .client(let hostname):
            SSL_set_connect_state(ssl)
            if OpenSSL.isIPAddress(hostname) {
                guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), hostname) == 1 else {
                    throw .configuration("cannot verify IP address \(hostname)")
                }
            } else {
                guard COpenSSL_SSL_set_tlsext_host_name(ssl, hostname) == 1, SSL_set1_host(ssl, hostname) == 1 else {
                    throw .configuration("cannot verify hostname \(hostname)")
                }
            }
        case .server:
            SSL_set_accept_state(ssl)
        }
    }

    deinit { SSL_free(ssl) }

    // MARK: - Life cycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        state = .handshaking
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (handler, context) = loopBound.value
            if case .handshaking = handler.state { handler.fail(context, .handshakeTimeout) }
        }
        if case .client = tls.configuration.role { handshake(context) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if case .handshaking = state { fail(context, .closedDuringHandshake) }
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var ciphertext = unwrapInboundIn(data)
        let written = ciphertext.withUnsafeReadableBytes { BIO_write(readBIO, $0.baseAddress, Int32($0.count)) }
        ciphertext.moveReaderIndex(forwardBy: Int(max(written, 0)))
        switch state {
        case .handshaking: handshake(context)
        case .active: readPlaintext(context)
        case .idle, .closed, .failed: break
        }
    }

    private func handshake(_ context: ChannelHandlerContext) {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        sendCiphertext(context, promise: nil)
        context.flush()
        guard result == 1 else {
            let error = SSL_get_error(ssl, result)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return }
            fail(context, handshakeError())
            return
        }
        var selected: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &selected, &length)
        let protocolID = selected.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(length)), as: UTF8.self) }
        guard protocolID == tls.configuration.applicationProtocol else {
            fail(context, .applicationProtocolMismatch(offered: protocolID))
            return
        }
        state = .active
        timeout?.cancel()
        timeout = nil
        context.fireUserInboundEventTriggered(TLSHandshakeCompleted(applicationProtocol: protocolID!))
        let writes = pendingWrites
        pendingWrites = []
        for (buffer, promise) in writes { encrypt(context, buffer, promise: promise) }
        if !writes.isEmpty { context.flush() }
        readPlaintext(context)  // data may have arrived with the last handshake message
    }

    private func handshakeError() -> TLSError {
        let verification = SSL_get_verify_result(ssl)
        let reason = OpenSSL.takeError()
        if verification != X509_V_OK {
            return .handshakeFailed(reason: reason, verification: String(cString: X509_verify_cert_error_string(verification)))
        }
        return .handshakeFailed(reason: reason, verification: nil)
    }

    private func readPlaintext(_ context: ChannelHandlerContext) {
        var producedAny = false
        while case .active = state {
            var buffer = context.channel.allocator.buffer(capacity: Self.readChunkBytes)
            var status: Int32 = 0
            ERR_clear_error()
            let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readChunkBytes) { bytes in
                status = SSL_read(ssl, bytes.baseAddress, Int32(bytes.count))
                return Int(max(status, 0))
            }
            if read > 0 {
                producedAny = true
                context.fireChannelRead(wrapInboundOut(buffer))
                continue
            }
            let error = SSL_get_error(ssl, status)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { break }
            if error == SSL_ERROR_ZERO_RETURN {
                // The peer sent close_notify: answer it and close.
                shutDownAndClose(context, mode: .all, promise: nil)
                break
            }
            fail(context, .recordFailed(reason: "reading: \(OpenSSL.takeError())"))
            break
        }
        // Post-handshake messages (TLS 1.3 session tickets) may need sending.
        sendCiphertext(context, promise: nil)
        if producedAny { context.fireChannelReadComplete() }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking: pendingWrites.append((plaintext, promise))
        case .active: encrypt(context, plaintext, promise: promise)
        case .closed, .failed: promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard case .active = state, mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        shutDownAndClose(context, mode: mode, promise: promise)
    }

    /// Sends close_notify, then closes once it is written. Closing at once would drop whatever
    /// the socket has not taken yet (NIO fails pending writes on close): the tail of the last
    /// responses of a draining connection, to a client that reads slower than the server
    /// writes. TCP keeps order, so once close_notify is written everything before it is. A
    /// peer that reads nothing gets `closeWriteTimeout`, then the connection closes anyway.
    private func shutDownAndClose(_ context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        state = .closed
        ERR_clear_error()
        SSL_shutdown(ssl)  // queue close_notify
        let written = context.eventLoop.makePromise(of: Void.self)
        sendCiphertext(context, promise: written)
        context.flush()
        if let promise { context.channel.closeFuture.cascade(to: promise) }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let forced = context.eventLoop.scheduleTask(in: Self.closeWriteTimeout) { bound.value.close(mode: mode, promise: nil) }
        written.futureResult.whenComplete { _ in
            forced.cancel()
            bound.value.close(mode: mode, promise: nil)
        }
    }

    /// How long a closing connection waits for what it wrote to leave (`shutDownAndClose`).
    static let closeWriteTimeout: TimeAmount = .seconds(10)

    private func encrypt(_ context: ChannelHandlerContext, _ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?) {
        var remaining = plaintext
        ERR_clear_error()
        while remaining.readableBytes > 0 {
            let written = remaining.withUnsafeReadableBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard written > 0 else {
                // Part of a record may already sit in the write BIO: nothing after it could be
                // read by the peer, so the connection ends here rather than fail each write.
                let error = TLSError.recordFailed(reason: "writing: \(OpenSSL.takeError())")
                promise?.fail(error)
                fail(context, error)
                return
            }
            remaining.moveReaderIndex(forwardBy: Int(written))
        }
        sendCiphertext(context, promise: promise)
    }

    /// Moves whatever OpenSSL wrote into the write BIO to the network.
    private func sendCiphertext(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let pending = COpenSSL_BIO_pending(writeBIO)
        guard pending > 0 else {
            promise?.succeed(())
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(BIO_read(writeBIO, bytes.baseAddress, Int32(pending)), 0))
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    private func fail(_ context: ChannelHandlerContext, _ error: TLSError) {
        guard state != .failed, state != .closed else { return }
        state = .failed
        timeout?.cancel()
        timeout = nil
        sendCiphertext(context, promise: nil)  // a fatal alert, if OpenSSL wrote one
        context.flush()
        failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        let writes = pendingWrites
        pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }
}
