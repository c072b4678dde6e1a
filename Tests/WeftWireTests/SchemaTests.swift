import Foundation
import Testing
import WeftWire

/// The generated method table matches the .proto files, including what
/// protobuf-c's descriptors cannot say: whether a method streams.
@Suite struct SchemaTests {
    @Test func methodPathsAreUniqueAndWellFormed() throws {
        let paths = Weft.V1.methods.map(\.path)
        #expect(Set(paths).count == paths.count)
        for path in paths { #expect(path.hasPrefix("/weft.v1.") && path.split(separator: "/").count == 2) }
        // One descriptor per `rpc` declared in Proto/.
        let protoDirectory = repositoryRoot.appendingPathComponent("Proto/weft/v1")
        var declared = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: protoDirectory.path) where file.hasSuffix(".proto") {
            let text = try String(contentsOf: protoDirectory.appendingPathComponent(file), encoding: .utf8)
            declared += text.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("rpc ") }.count
        }
        #expect(paths.count == declared)
    }

    @Test func streamingKindsComeFromTheProtoFiles() {
        #expect(Weft.V1.HealthService.check.kind == .unary)
        #expect(Weft.V1.HealthService.watch.kind == .serverStreaming)
        #expect(Weft.V1.SequencerService.subscribe.kind == .serverStreaming)
        #expect(Weft.V1.SequencerService.send.path == "/weft.v1.SequencerService/Send")
        #expect(Weft.V1.ParticipantAdministrationService.importAcs.kind == .clientStreaming)
        #expect(Weft.V1.TransactionService.getTransactions.descriptor.requestType == "weft.v1.GetTransactionsRequest")
    }

    @Test func embeddedDescriptorSetParses() throws {
        // The reflection payload is itself protobuf: a FileDescriptorSet with
        // one entry (field 1) per proto file. Count them with our own scan.
        let bytes = Weft.V1.descriptorSet
        #expect(bytes.count > 10_000)
        var files = 0
        var position = 0
        while position < bytes.count {
            #expect(bytes[position] == 0x0A)  // field 1, length-delimited
            position += 1
            var length = 0
            var shift = 0
            while true {
                let byte = bytes[position]
                position += 1
                length |= Int(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            position += length
            files += 1
        }
        #expect(position == bytes.count)
        #expect(files == 12)
    }

    @Test func enumCasesStripTheirPrefix() {
        #expect(Weft.V1.ParticipantPermission.knownCases == [.unspecified, .submission, .confirmation, .observation, .disabled])
        #expect(Weft.V1.TrustLevel.vip.rawValue == 2)
        #expect(Weft.V1.ParticipantPermission() == .unspecified)
    }
}
