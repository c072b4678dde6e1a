import Testing
import WeftTestSupport

@testable import WeftWire

/// A decode takes at most its memory budget (`DecodeLimits`, `FrameLimits`):
/// input that protobuf-c would turn into far more memory than its size is
/// refused with `WireError.decodeBudgetExceeded`, and every message a Weft
/// node sends, however large, still decodes.
@Suite struct DecodeBudgetTests {
    /// `count` copies of `field` one after another.
    func repeated(_ field: [UInt8], _ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(field.count * count)
        for _ in 0..<count { bytes += field }
        return bytes
    }

    func budgetExceeded(_ message: String, _ bytes: [UInt8], perInputByte: Int = DecodeLimits.memoryBytesPerInputByte)
        -> WireError
    {
        .decodeBudgetExceeded(
            message: message,
            budgetBytes: DecodeLimits.memoryBudgetBytes(forInputBytes: bytes.count, perInputByte: perInputByte))
    }

    // MARK: - Refused

    @Test(arguments: [500, 2_000])
    func aSubmessageRepeatedAndMergedAtEveryRepetitionIsOverTheBudget(_ repetitions: Int) throws {
        // SubmissionRequest.batch (field 3) again and again, one empty envelope each:
        // protobuf-c merges every repetition into the batch so far, copying its
        // envelopes each time, memory quadratic in the count (2,000 repetitions of
        // 4 bytes took 16 MB). 500 repetitions (2,000 bytes) take the pooled path.
        let bytes = repeated([0x1A, 0x02, 0x0A, 0x00], repetitions)
        #expect(throws: budgetExceeded("weft.v1.SubmissionRequest", bytes)) {
            _ = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
        }
        // A few repetitions merge as protobuf requires.
        let merged = try Weft.V1.SubmissionRequest(serializedBytes: repeated([0x1A, 0x02, 0x0A, 0x00], 3))
        #expect(merged.batch?.envelopes.count == 3)
    }

    @Test func manyEmptySubmessagesOfALargeTypeAreOverTheBudget() throws {
        // 65,536 empty CreatedEvents, 2 bytes each: a 120-byte struct, a pointer and
        // a 32-byte scan entry apiece, about 100 times the input.
        let bytes = repeated([0x0A, 0x00], 65_536)
        #expect(throws: budgetExceeded("weft.v1.GetActiveContractsResponse", bytes)) {
            _ = try Weft.V1.GetActiveContractsResponse(serializedBytes: bytes)
        }
    }

    @Test func aFrameOfTinyUnknownFieldsIsRefusedByTheFrameDecoder() throws {
        // 65,536 unknown varint fields (field 15, value 0): 52 times the input in
        // protobuf-c's structs, over a frame's budget (frames carry their message
        // as bytes, so they get less than other messages).
        let body = repeated([0x78, 0x00], 65_536)
        let prefix: [UInt8] = [
            0, 0, UInt8(body.count >> 16), UInt8(truncatingIfNeeded: body.count >> 8),
            UInt8(truncatingIfNeeded: body.count),
        ]
        let expected = budgetExceeded("weft.v1.Frame", body, perInputByte: FrameLimits.decodeMemoryBytesPerFrameByte)
        var whole = FrameDecoder()
        #expect(throws: expected) { _ = try whole.decode(prefix + body) }
        // The same frame arriving in pieces (decoded from the decoder's buffer).
        var pieces = FrameDecoder()
        #expect(try pieces.decode(prefix + body[..<1_000]).isEmpty)
        #expect(throws: expected) { _ = try pieces.decode(Array(body[1_000...])) }
    }

    @Test func aRefusedDecodeLeavesTheThreadsCachesUsable() throws {
        // The refused decode's tree and pooled storage go back to this thread's
        // caches; the decodes after it (same thread: no suspension in between) are whole.
        let request = try ExampleMessages.confirmationRequest()
        let bytes = try request.serializedBytes()
        for _ in 0..<3 {
            #expect(throws: WireError.self) {
                _ = try Weft.V1.SubmissionRequest(serializedBytes: repeated([0x1A, 0x02, 0x0A, 0x00], 500))
            }
            let decoded = try Weft.V1.SubmissionRequest(serializedBytes: bytes)
            #expect(decoded == request)
            #expect(try decoded.serializedBytes() == bytes)
        }
    }

    @Test func theErrorSaysWhatWasRefusedAndWhy() {
        let error = WireError.decodeBudgetExceeded(message: "weft.v1.Frame", budgetBytes: 4_194_304)
        #expect(
            error.description.hasPrefix(
                "weft.v1.Frame refused: decoding it would take more than 4194304 bytes of memory"))
        #expect(error.description.contains("decode memory budget"))
    }

    // MARK: - Still decoded

    @Test func aBatchOfTenThousandEnvelopesDecodes() throws {
        let batch = Weft.V1.Batch(envelopes: Array(repeating: ExampleMessages.envelope(), count: 10_000))
        let bytes = try batch.serializedBytes()
        #expect(bytes.count > 2_000_000)
        #expect(try Weft.V1.Batch(serializedBytes: bytes) == batch)
    }

    @Test func anEnvelopeToTenThousandRecipientsDecodes() throws {
        let fingerprint = "1220" + String(repeating: "ab", count: 32)
        let envelope = Weft.V1.Envelope(
            content: Array(repeating: 7, count: 110),
            recipients: (0..<10_000).map { "PAR::participant\($0)::\(fingerprint)" })
        #expect(try Weft.V1.Envelope(serializedBytes: envelope.serializedBytes()) == envelope)
    }

    @Test func aSequencedEventDeliveringTenThousandEnvelopesDecodes() throws {
        let event = Weft.V1.SequencedEvent(
            counter: 12_345, timestamp: .init(microsSinceEpoch: 1_795_000_000_000_000), domain: "domain1::1220ab",
            recipient: ExampleMessages.mediator,
            event: .deliver(
                .init(
                    sender: ExampleMessages.participants[0], messageID: "4f1d2c3b-9a8e-4b7c-8d6e-5f4a3b2c1d0e",
                    batch: .init(envelopes: Array(repeating: ExampleMessages.envelope(), count: 10_000)))))
        #expect(try Weft.V1.SequencedEvent(serializedBytes: event.serializedBytes()) == event)
    }

    @Test func aSubmissionOfThousandsOfConfirmationEnvelopesDecodes() throws {
        var request = try ExampleMessages.confirmationRequest()
        request.batch!.envelopes = Array(repeating: request.batch!.envelopes, count: 500).flatMap { $0 }
        #expect(try Weft.V1.SubmissionRequest(serializedBytes: request.serializedBytes()) == request)
    }

    @Test func aTopologySnapshotOfTenThousandTransactionsDecodes() throws {
        let fingerprint = "1220" + String(repeating: "ab", count: 32)
        let transaction = try Weft.V1.TopologyTransaction(
            operation: .replace, serial: 1,
            mapping: .init(
                mapping: .partyToParticipant(
                    .init(
                        party: "alice::" + fingerprint, participant: "participant1::" + fingerprint,
                        permission: .submission))),
            domain: "domain1::" + fingerprint
        ).serializedBytes()
        let stored = Weft.V1.StoredTopologyTransaction(
            transaction: .init(
                transaction: transaction,
                signatures: [.init(scheme: .ed25519, signedBy: fingerprint, signature: Array(repeating: 3, count: 64))]),
            validFrom: .init(microsSinceEpoch: 1))
        let snapshot = Weft.V1.TopologySnapshot(
            domain: "domain1::" + fingerprint, transactions: Array(repeating: stored, count: 10_000))
        #expect(try Weft.V1.TopologySnapshot(serializedBytes: snapshot.serializedBytes()) == snapshot)
    }

    @Test func theDensestDamlValuesDecode() throws {
        // Lists of empty lists are the densest legitimate content: 42 bytes decoded
        // per input byte at this length (the scan of the list's elements is then at
        // its largest, twice their count). Small integers take about 30.
        let emptyLists = Weft.V1.ValueList(elements: Array(repeating: .init(sum: .list(.init())), count: 131_057))
        #expect(try Weft.V1.ValueList(serializedBytes: emptyLists.serializedBytes()) == emptyLists)
        let integers = Weft.V1.Record(
            fields: Array(
                repeating: .init(
                    label: "xs",
                    value: .init(sum: .list(.init(elements: Array(repeating: .init(sum: .int64(1)), count: 10_000))))),
                count: 20))
        #expect(try Weft.V1.Record(serializedBytes: integers.serializedBytes()) == integers)
    }

    @Test func aBatchOfEmptyEnvelopesTheSequencerStoresDecodes() throws {
        // The densest batch the sequencer re-encodes and reads back: 68 bytes decoded
        // per input byte. Refusing it would let a sender whose batch decoded (padded
        // with overlong varints, which the re-encoding shortens) leave the sequencer
        // unable to read what it sequenced.
        let bytes = repeated([0x0A, 0x00], 65_521)
        let batch = try Weft.V1.Batch(serializedBytes: bytes)
        #expect(batch.envelopes.count == 65_521)
        #expect(try batch.serializedBytes() == bytes)
    }

    @Test func framesWithLargeMessagesOrDenseMetadataDecode() throws {
        let message = Weft.V1.Frame(
            streamID: 3, kind: .message(.init(payload: Array(repeating: 0xAB, count: 4_000_000))))
        // The most call metadata `maximumMetadataBytes` (16 KiB, 32 per entry) lets
        // through in one-letter entries: 24 bytes decoded per frame byte.
        let metadata = Weft.V1.Frame(
            streamID: 1,
            kind: .open(
                .init(
                    method: "/weft.v1.HealthService/Check",
                    metadata: Array(repeating: .init(key: "a", value: .textValue("")), count: 496))))
        var decoder = FrameDecoder()
        var stream: [UInt8] = []
        try FrameEncoder.append(message, to: &stream)
        try FrameEncoder.append(metadata, to: &stream)
        #expect(try decoder.decode(stream) == [message, metadata])
    }

    // MARK: - The allocator

    @Test func theAllocatorHandsOutNoMoreThanTheBudget() throws {
        let tree = DecodedTree.make(forInputBytes: 1_000)
        let limit = DecodeLimits.memoryBudgetBytes(forInputBytes: 1_000)
        #expect(tree.limitBytes == limit)
        let allocator = tree.protobufAllocator
        var handedOut = 0
        var refusedBytes: Int?
        // Small and large sizes in turn, so that blocks of their own are taken too.
        for index in 0..<100_000 {
            let size = [24, 100, 3_000, 40, 20_000][index % 5]
            // What the arena takes for it: the size word before it, rounded up to the alignment.
            let bytes = (size + 2 * Arena.alignment - 1) & ~(Arena.alignment - 1)
            guard allocator.alloc(allocator.allocator_data, size) != nil else {
                refusedBytes = bytes
                break
            }
            handedOut += bytes
        }
        let refused = try #require(refusedBytes)
        #expect(tree.refusedOverLimit)
        #expect(handedOut <= limit)
        // Refused only because this allocation would have passed the budget.
        #expect(handedOut + refused > limit)
        withExtendedLifetime(tree) {}
    }

    @Test func aLargeAllocationLeavesTheCurrentBlockForTheSmallOnes() {
        let tree = DecodedTree.make(forInputBytes: 1_000)
        tree.withUnsafeMutablePointerToHeader { header in
            // 56 bytes after their size word: 64 in the arena.
            _ = Arena.protobufAllocate(header, 56)
            let cursor = header.pointee.arena.cursor
            // More than the first block has left (however large the thread's cached tree was).
            let largeBytes = (header.pointee.arena.end - cursor + 2 * Arena.alignment - 1) & ~(Arena.alignment - 1)
            #expect(largeBytes >= header.pointee.arena.nextBlockBytes / 8)
            #expect(Arena.protobufAllocate(header, largeBytes - Arena.alignment) != nil)
            #expect(header.pointee.arena.cursor == cursor)
            #expect(header.pointee.arena.overflow != nil)
            // The next small allocation is still in the first block, right after the first.
            #expect(Arena.protobufAllocate(header, 56) == cursor + Arena.alignment)
            #expect(header.pointee.usedBytes == 64 + largeBytes + 64)
        }
        withExtendedLifetime(tree) {}
    }

    // MARK: - Unknown fields as Swift values

    @Test func unknownFieldsKeepEveryFieldInOrder() throws {
        let fields = [
            UnknownField(number: 15, wireType: 0, data: [0x00]),
            UnknownField(number: 536_870_911, wireType: 2, data: [0x81, 0x01] + Array(repeating: 0x61, count: 129)),
            UnknownField(number: 16, wireType: 1, data: [1, 2, 3, 4, 5, 6, 7, 8]),
            UnknownField(number: 17, wireType: 5, data: [9, 9, 9, 9]),
            UnknownField(number: 18, wireType: 2, data: [0x00]),
        ]
        var unknown = UnknownFields(fields: fields)
        #expect(unknown.fields == fields)
        #expect(!unknown.isEmpty)
        #expect(UnknownFields().isEmpty)
        #expect(unknown == UnknownFields(fields: fields))
        #expect(unknown.hashValue == UnknownFields(fields: fields).hashValue)
        #expect(unknown != UnknownFields(fields: fields.reversed()))
        unknown.fields.append(UnknownField(number: 19, wireType: 0, data: [0x7F]))
        #expect(unknown.fields == fields + [UnknownField(number: 19, wireType: 0, data: [0x7F])])
        // On a message, they encode as they came, after the known fields.
        var timestamp = Weft.V1.Timestamp(microsSinceEpoch: 42)
        timestamp.unknownFields = UnknownFields(fields: fields)
        let decoded = try Weft.V1.Timestamp(serializedBytes: timestamp.serializedBytes())
        #expect(decoded.unknownFields.fields == fields)
        #expect(decoded == timestamp)
    }

    @Test func manyTinyUnknownFieldsReencodeToTheSameBytes() throws {
        // 10,000 unknown fields of every wire type after a known one, read (which
        // copies them into Swift) and re-encoded.
        let known = try Weft.V1.Timestamp(microsSinceEpoch: 42).serializedBytes()
        var extra: [UInt8] = []
        for index in 0..<10_000 {
            switch index % 4 {
            case 0: extra += [0x78, UInt8(index % 128)]
            case 1: extra += [0x81, 0x01] + Array(repeating: UInt8(index % 256), count: 8)
            case 2: extra += [0x82, 0x01, 0x02, 0x68, 0x69]
            default: extra += [0x85, 0x01, 1, 2, 3, UInt8(index % 256)]
            }
        }
        let decoded = try Weft.V1.Timestamp(serializedBytes: known + extra)
        #expect(decoded.microsSinceEpoch == 42)
        #expect(decoded.unknownFields.fields.count == 10_000)
        #expect(
            decoded.unknownFields.fields[1]
                == UnknownField(number: 16, wireType: 1, data: Array(repeating: 1, count: 8)))
        #expect(try decoded.serializedBytes() == known + extra)
    }
}
