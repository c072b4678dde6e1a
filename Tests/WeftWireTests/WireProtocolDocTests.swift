import Foundation
import Testing
import WeftWire

/// The hex test vectors in docs/wire-protocol.md decode to the frames the
/// document describes, and Weft encodes those frames to the same bytes.
@Suite struct WireProtocolDocTests {
    func vectors() throws -> [String: [UInt8]] {
        let doc = try String(
            contentsOf: repositoryRoot.appendingPathComponent("docs/wire-protocol.md"), encoding: .utf8)
        let block = try #require(doc.components(separatedBy: "<!-- vectors:begin -->").last?
            .components(separatedBy: "<!-- vectors:end -->").first)
        var result: [String: [UInt8]] = [:]
        for line in block.split(separator: "\n") where line.contains(": ") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            result[parts[0]] = unhex(parts[1])
        }
        return result
    }

    @Test func vectorsMatchWeftsEncoding() throws {
        let vectors = try vectors()
        let frames: [String: Weft.V1.Frame] = [
            "open": .init(
                streamID: 1,
                kind: .open(
                    .init(
                        method: "/weft.v1.HealthService/Check",
                        metadata: [.init(key: "traceparent", value: .textValue("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))],
                        timeout: .init(micros: 5_000_000)))),
            "request-message": .init(
                streamID: 1, kind: .message(.init(payload: try Weft.V1.CheckRequest(service: "weft.v1.SequencerService").serializedBytes()))),
            "half-close": .init(streamID: 1, kind: .halfClose(.init())),
            "response-message": .init(
                streamID: 1, kind: .message(.init(payload: try Weft.V1.CheckResponse(status: .serving).serializedBytes()))),
            "close-ok": .init(streamID: 1, kind: .close(.init(status: .init(code: 0)))),
            "close-not-found": .init(
                streamID: 3,
                kind: .close(.init(status: .init(code: 5, message: "unknown member PAR::p9::1220ab", errorID: "SEQUENCER_UNKNOWN_MEMBER")))),
            "ping": .init(streamID: 0, kind: .ping(.init(data: 42))),
            "go-away": .init(streamID: 0, kind: .goAway(.init(lastStreamID: 7))),
        ]
        #expect(vectors["preface"] == ConnectionPreface.bytes)
        #expect(Set(vectors.keys) == Set(frames.keys).union(["preface"]))
        for (name, frame) in frames {
            let bytes = try #require(vectors[name], "vector \(name) missing from the document")
            #expect(try FrameEncoder.encode(frame) == bytes, "\(name)")
            var decoder = FrameDecoder()
            #expect(try decoder.decode(bytes) == [frame], "\(name)")
        }
    }
}
