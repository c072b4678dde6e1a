import Foundation

/// Ports for processes that bind later: the demo's and tests' `weft run` nodes, whose addresses
/// other nodes' configurations name before they start.
public enum LoopbackPort {
    public struct Exhausted: Error, CustomStringConvertible {
        public var description: String { "no free loopback port between 20000 and 32000" }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now, never one of `taken`. Below the
    /// kernel's ephemeral range (32768…): a port released here is not taken by some outgoing
    /// connection before the node binds it (an ephemeral one was, with EADDRINUSE, on a busy
    /// machine). Nor one handed out lately by any process on this machine (`reserve`).
    public static func unused(besides taken: Set<Int> = []) throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20000..<32000)
            if taken.contains(port) || !reserve(port) { continue }
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard socket >= 0 else { continue }
            defer { close(socket) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
        throw Exhausted()
    }

    /// Where pickers mark the ports they handed out, one empty file per port.
    @_spi(Testing) public static let reservations = FileManager.default.temporaryDirectory.appendingPathComponent("weft-loopback-ports").path
    /// How long a mark keeps a port from being handed out again: far longer than any node takes
    /// to bind the port it was given.
    @_spi(Testing) public static let reservationSeconds = 600

    /// Marks `port` as handed out, for every process on this machine; false when a picker
    /// marked it within `reservationSeconds`. The bind probe cannot see a port that another
    /// picker chose but whose node has not bound it yet: two pickers at once (the tests of one
    /// run in parallel, the demo's process and the test suite's, two test runs) handed out the
    /// same port, and the slower node failed with EADDRINUSE. Where marks cannot be written,
    /// the probe alone decides.
    @_spi(Testing) public static func reserve(_ port: Int) -> Bool {
        let path = reservations + "/\(port)"
        if create(path) { return true }
        guard errno == EEXIST else {
            mkdir(reservations, 0o777)
            return create(path) || errno != EEXIST
        }
        var info = stat()
        guard stat(path, &info) == 0, Int(time(nil)) - Int(info.st_mtim.tv_sec) > reservationSeconds else { return false }
        // A stale mark: one picker takes it over (a rename succeeds once), the others skip the port.
        let claimed = path + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        guard rename(path, claimed) == 0 else { return false }
        unlink(claimed)
        return create(path)
    }

    /// Creates the empty file at `path`, failing (errno EEXIST) when it exists.
    private static func create(_ path: String) -> Bool {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o666)
        guard descriptor >= 0 else { return false }
        close(descriptor)
        return true
    }
}
