import Foundation
import Testing
import WeftTestSupport

@testable import WeftWire

/// A thread reuses the storage object of a small decoded value once the value
/// is gone (`StoragePool`). What that must not change: a later decode shows
/// only its own fields, a value still alive (here, on another thread, or after
/// its thread exited) keeps its own, and mutating a decoded value changes that
/// value alone.
@Suite struct StoragePoolTests {
    // The test bodies that count on reuse are synchronous: no suspension point,
    // so every decode runs on the same thread and meets that thread's pool.

    private func signedEvent(counter: UInt64, signature: Weft.V1.Signature?) -> Weft.V1.SignedSequencedEvent {
        var event = Weft.V1.SignedSequencedEvent()
        event.event = Array("event \(counter)".utf8)
        event.counter = counter
        event.signature = signature
        return event
    }

    @Test func aReusedStorageShowsNoFieldOfTheValueBeforeIt() throws {
        let signature = Weft.V1.Signature(
            scheme: .ed25519, signedBy: "sequencer1::1220" + String(repeating: "cd", count: 32),
            signature: Array(repeating: 7, count: 64))
        let signed = try signedEvent(counter: 1, signature: signature).serializedBytes()
        let unsigned = try signedEvent(counter: 2, signature: nil).serializedBytes()
        for _ in 0..<3 {
            // Every field read, so the storage holds them when the value dies.
            let first = try Weft.V1.SignedSequencedEvent(serializedBytes: signed)
            #expect(first.signature == signature)
            #expect(first.counter == 1)
        }
        // The next decode reuses that storage: an absent submessage must read as absent.
        let second = try Weft.V1.SignedSequencedEvent(serializedBytes: unsigned)
        #expect(second.signature == nil)
        #expect(second.event == Array("event 2".utf8))
        #expect(second.counter == 2)
        #expect(try second.serializedBytes() == unsigned)
    }

    @Test func theStorageOfALiveValueIsNotReused() throws {
        let a = try Weft.V1.Envelope(content: [1, 2, 3], recipients: ["mediator1"]).serializedBytes()
        let b = try Weft.V1.Envelope(content: [9], recipients: ["participant1", "participant2"]).serializedBytes()
        let kept = try Weft.V1.Envelope(serializedBytes: a)
        // Unread, then read after another decode of the same type on this thread.
        let other = try Weft.V1.Envelope(serializedBytes: b)
        #expect(kept.content == [1, 2, 3])
        #expect(kept.recipients == ["mediator1"])
        #expect(other.recipients == ["participant1", "participant2"])
        // Read before, then checked after more decodes.
        for _ in 0..<5 { _ = try Weft.V1.Envelope(serializedBytes: b).recipients }
        #expect(kept.recipients == ["mediator1"])
        #expect(try kept.serializedBytes() == a)
    }

    @Test func mutatingADecodedValueChangesItAlone() throws {
        let bytes = try Weft.V1.Envelope(content: [1, 2, 3], recipients: ["mediator1"]).serializedBytes()
        var changed = try Weft.V1.Envelope(serializedBytes: bytes)
        let copy = changed
        changed.recipients.append("participant1")
        changed.content[0] = 42
        #expect(copy.recipients == ["mediator1"])
        #expect(copy.content == [1, 2, 3])
        #expect(changed.recipients == ["mediator1", "participant1"])
        #expect(changed.content == [42, 2, 3])
        // Neither the change nor the copy leaks into later decodes.
        let next = try Weft.V1.Envelope(serializedBytes: bytes)
        #expect(next.recipients == ["mediator1"])
        #expect(next.content == [1, 2, 3])
        #expect(try copy.serializedBytes() == bytes)
    }

    @Test func aDecodeThatFailsLeavesThePoolUsable() throws {
        let good = try Weft.V1.Envelope(content: [5], recipients: ["mediator1"]).serializedBytes()
        _ = try Weft.V1.Envelope(serializedBytes: good).recipients
        // A string with invalid UTF-8 fails validation after the unpack.
        let invalid: [UInt8] = [0x12, 0x02, 0xC3, 0x28]
        #expect(throws: WireError.self) { try Weft.V1.Envelope(serializedBytes: invalid) }
        // Truncated: protobuf-c's unpack fails.
        #expect(throws: WireError.self) { try Weft.V1.Envelope(serializedBytes: Array(good.dropLast())) }
        let after = try Weft.V1.Envelope(serializedBytes: good)
        #expect(after.recipients == ["mediator1"])
        #expect(after.content == [5])
    }

    @Test func aValueOutlivesTheThreadThatDecodedIt() throws {
        let original = Weft.V1.Envelope(content: Array(0..<100), recipients: ["participant1::1220abcd"])
        let box = ResultBox(bytes: try original.serializedBytes())
        // A POSIX thread, so that `pthread_join` waits for the end of its exit
        // destructors, which release what the thread's pool held.
        var thread = pthread_t()
        let context = Unmanaged.passRetained(box).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            let box = Unmanaged<ResultBox>.fromOpaque(context!).takeRetainedValue()
            // Decoded, read and kept: the thread's pool holds the storage too until it exits.
            let value = try! Weft.V1.Envelope(serializedBytes: box.bytes)
            _ = value.recipients
            box.set(value)
            return nil
        }, context)
        try #require(created == 0)
        #expect(pthread_join(thread, nil) == 0)
        let value = try #require(box.value)
        #expect(value == original)
        #expect(try value.serializedBytes() == box.bytes)
    }

    @Test func valuesDroppedOnOtherThreadsLeaveLaterDecodesCorrect() async throws {
        let messages = (0..<8).map { index in
            Weft.V1.Envelope(
                content: (0..<(10 + index * 13)).map { UInt8(truncatingIfNeeded: $0 &+ index) },
                recipients: (0...index % 3).map { "participant\($0 + index)" })
        }
        let encoded = try messages.map { try $0.serializedBytes() }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var ok = true
                    for round in 0..<2_000 {
                        let index = (round + worker) % encoded.count
                        let value = try Weft.V1.Envelope(serializedBytes: encoded[index])
                        // Every other value is read and dropped by another task.
                        if round % 2 == 0 {
                            ok = ok && value == messages[index]
                        } else {
                            ok = await Task.detached { value == messages[index] }.value && ok
                        }
                    }
                    return ok
                }
            }
            for try await ok in group { #expect(ok) }
        }
    }
}

/// Bytes to decode on another thread, and the value decoded there.
private final class ResultBox: @unchecked Sendable {
    let bytes: [UInt8]
    private let lock = NSLock()
    private var stored: Weft.V1.Envelope?
    init(bytes: [UInt8]) { self.bytes = bytes }
    func set(_ value: Weft.V1.Envelope) { lock.withLock { stored = value } }
    var value: Weft.V1.Envelope? { lock.withLock { stored } }
}
