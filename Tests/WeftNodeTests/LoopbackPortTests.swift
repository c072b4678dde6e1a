import Foundation
import Testing
@_spi(Testing) import WeftTestSupport

/// Ports handed out for nodes that bind later are not handed out twice, by any process on the
/// machine, until their mark is stale.
struct LoopbackPortTests {
    @Test func aPortHandedOutIsNotHandedOutAgainUntilItsMarkIsStale() throws {
        var handedOut = Set<Int>()
        for _ in 0..<50 {
            let port = try LoopbackPort.unused()
            #expect(handedOut.insert(port).inserted, "port \(port) handed out twice")
            // Another picker (this process or another) skips it: the mark is there.
            #expect(!LoopbackPort.reserve(port), "port \(port) could be reserved again")
        }
        // A mark older than the reservation is taken over, once.
        let port = try #require(handedOut.first)
        let path = LoopbackPort.reservations + "/\(port)"
        let old = Date().addingTimeInterval(-Double(LoopbackPort.reservationSeconds) - 60)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: path)
        #expect(LoopbackPort.reserve(port))
        #expect(!LoopbackPort.reserve(port))
    }
}
