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
    /// machine).
    public static func unused(besides taken: Set<Int> = []) throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20000..<32000)
            if taken.contains(port) { continue }
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
}
