import Testing
import WeftWire

/// Every message type, with a non-default value in every field (generated
/// samples, one per oneof member), survives encode → decode unchanged.
@Suite struct RoundTripTests {
    @Test func samplesCoverEveryMessageType() {
        #expect(allSamples.count == Weft.V1.messageTypes.count)
        let names = Set(allSamples.map(\.name))
        for type in Weft.V1.messageTypes { #expect(names.contains(type.protoMessageName)) }
    }

    @Test(arguments: allSamples.map(\.name))
    func roundTrip(_ name: String) throws {
        let samples = allSamples.first { $0.name == name }!.samples
        for sample in samples {
            let bytes = try sample.serializedBytes()
            let decoded: any WireMessage = try decodeLike(sample, bytes)
            let equal = isEqual(sample, decoded)
            #expect(equal, "\(name) changed in a round trip")
            // Re-encoding is stable, so signatures over re-encoded bytes hold.
            let reencoded = try decoded.serializedBytes()
            #expect(reencoded == bytes)
        }
    }

    @Test func samplesHaveNoDefaultFields() throws {
        // A sample with every field set differs from the default message
        // whenever the type has fields; an empty encoding would mean the
        // sample generator or the bridge dropped values.
        for (name, samples) in allSamples {
            for sample in samples {
                let bytes = try sample.serializedBytes()
                let isEmptyType = isDefault(sample)
                #expect(bytes.isEmpty == isEmptyType, "\(name)")
            }
        }
    }

    @Test func unknownFieldsSurviveReencoding() throws {
        // Field 99 (varint 7) and field 100 (bytes "hi") are not in the schema.
        let known = try Weft.V1.Timestamp(microsSinceEpoch: 42).serializedBytes()
        let extra: [UInt8] = [0x98, 0x06, 0x07, 0xA2, 0x06, 0x02, 0x68, 0x69]
        let decoded = try Weft.V1.Timestamp(serializedBytes: known + extra)
        #expect(decoded.microsSinceEpoch == 42)
        #expect(decoded.unknownFields.fields.map(\.number) == [99, 100])
        #expect(try decoded.serializedBytes() == known + extra)
    }

    @Test func unrecognizedEnumValuesAreKept() throws {
        // CheckResponse.status = 77, a value no version of the schema declares.
        let decoded = try Weft.V1.CheckResponse(serializedBytes: [0x08, 77])
        #expect(decoded.status == .unrecognized(77))
        #expect(try decoded.serializedBytes() == [0x08, 77])
        #expect(Weft.V1.ServingStatus(rawValue: 1) == .serving)
    }
}
