public import Logging
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A notification sent with PostgreSQL's `NOTIFY` (or `pg_notify`) to a channel some
/// connection listens on.
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    /// The server process of the connection that sent it.
    public let senderProcessID: Int32

    public init(channel: String, payload: String, senderProcessID: Int32) {
        self.channel = channel
        self.payload = payload
        self.senderProcessID = senderProcessID
    }
}

/// Keeps one connection that `LISTEN`s on some channels and hands every notification to a
/// callback, so that components wake up when another process commits instead of polling.
///
/// Why a connection and a thread of its own: a listening connection must not run other
/// statements for the pool's callers, and waiting for it (`poll` on its socket) blocks a
/// thread, which must never be an event loop or one of Swift's cooperative threads.
///
/// Notifications can be lost: while the connection is down (the server restarted, the
/// network dropped) nothing is delivered, and no notification sent in that time ever will be.
/// The listener reconnects by itself, and reports `.listening` each time `LISTEN` is in
/// place again; a user must then look for itself at what it may have missed, and must not
/// depend on notifications for progress, only for speed.
public final class PostgresListener: Sendable {
    /// What the callback receives, on the listener's thread: it must return quickly.
    public enum Event: Sendable, Equatable {
        /// `LISTEN` is in place, first or after a reconnection: whatever was sent while the
        /// listener was not listening is lost.
        case listening
        case notification(PostgresNotification)
    }

    private let url: String
    private let channels: [String]
    private let reconnectDelay: Duration
    private let idleCheckInterval: Duration
    private let logger: Logger
    private let onEvent: @Sendable (Event) -> Void
    private let thread: NIOThreadPool
    private let stopping = Atomic<Bool>(false)
    /// A pipe whose read end the listening thread polls beside the socket: `stop` writes to
    /// it, so the thread wakes at once instead of at its next timeout.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let running = Mutex<Task<Void, Never>?>(nil)

    /// Listens on `channels` (lower-case letters, digits and `_`; checked) once `start` is
    /// called. After a lost connection it waits `reconnectDelay` between attempts; while no
    /// notification comes for `idleCheckInterval` it checks the connection with a query, so a
    /// connection that died silently is noticed.
    public init(
        url: String, channels: [String], reconnectDelay: Duration = .milliseconds(100), idleCheckInterval: Duration = .seconds(10),
        logger: Logger = Logger(label: "weft.store"), onEvent: @escaping @Sendable (Event) -> Void
    ) throws(PostgresError) {
        for channel in channels {
            guard !channel.isEmpty, channel.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) else {
                throw PostgresError(code: .invalidParameter, message: "a channel name is lower-case letters, digits and '_': \(channel)")
            }
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw PostgresError(code: .connectionFailed, message: "cannot create the listener's wake-up pipe (errno \(errno))")
        }
        self.url = url
        self.channels = channels
        self.reconnectDelay = reconnectDelay
        self.idleCheckInterval = idleCheckInterval
        self.logger = logger
        self.onEvent = onEvent
        wakeRead = fds[0]
        wakeWrite = fds[1]
        thread = NIOThreadPool(numberOfThreads: 1)
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Starts listening on the listener's own thread; returns at once.
    public func start() {
        running.withLock { running in
            guard running == nil, !stopping.load(ordering: .relaxed) else { return }
            thread.start()
            running = Task { [self] in
                _ = try? await thread.runIfActive { self.run() }
            }
        }
    }

    /// Stops listening, closes the connection and the thread; returns once they are gone.
    public func stop() async {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        let task = running.withLock { $0 }
        await task?.value
        if task != nil { try? await thread.shutdownGracefully() }
    }

    /// Connects, listens and delivers until stopped, reconnecting whenever the connection is lost.
    private func run() {
        var failures = 0
        while !stopping.load(ordering: .acquiring) {
            do throws(PostgresError) {
                let connection = try PostgresConnection(url: url)
                for channel in channels { _ = try connection.execute("LISTEN \"\(channel)\"") }
                if failures > 0 {
                    logger.info("listening for database notifications again", metadata: ["channels": "\(channels)"])
                }
                failures = 0
                onEvent(.listening)
                try deliver(from: connection)
            } catch {
                guard !stopping.load(ordering: .acquiring) else { break }
                failures += 1
                // Once when it happens, then now and then while it lasts (a long restart).
                if failures == 1 || failures % 100 == 0 {
                    logger.warning(
                        "lost the database connection that listens for notifications; reconnecting",
                        metadata: ["channels": "\(channels)", "error": "\(error)", "attempts": "\(failures)"])
                }
                _ = waitReadable(nil, timeout: reconnectDelay)
            }
        }
    }

    /// Hands over notifications as they arrive, until stopped or the connection fails.
    private func deliver(from connection: PostgresConnection) throws(PostgresError) {
        // Notifications that arrived with LISTEN's own answer.
        for notification in try connection.takeNotifications() { onEvent(.notification(notification)) }
        while !stopping.load(ordering: .acquiring) {
            let socket = connection.socketDescriptor
            guard socket >= 0 else { throw PostgresError(code: .connectionLost, message: "the listening connection has no socket") }
            if !waitReadable(socket, timeout: idleCheckInterval) {
                // Quiet for a while: make sure the connection is still there.
                _ = try connection.execute("SELECT 1")
            }
            guard !stopping.load(ordering: .acquiring) else { return }
            for notification in try connection.takeNotifications() { onEvent(.notification(notification)) }
        }
    }

    /// Blocks until `socket` is readable (true), `timeout` passes or `stop` is called (false).
    private func waitReadable(_ socket: Int32?, timeout: Duration) -> Bool {
        var descriptors = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        if let socket { descriptors.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let result = poll(&descriptors, nfds_t(descriptors.count), milliseconds)
        guard result > 0, descriptors.count == 2 else { return false }
        // An error or hang-up on the socket is readable too: reading it reports the failure.
        return descriptors[1].revents != 0
    }
}
