import FuzzDriver
import WeftWire

// Failed checks call `fatalError`, not `precondition`: in a release build
// `precondition` traps without its message, and the message is the report.

/// Hands control to libFuzzer, which calls `fuzz` once per input.
@main
enum FuzzMessagesMain {
    static func main() { runLibFuzzer { data, count in data.map { fuzz($0, count) } ?? 0 } }
}

/// libFuzzer entry point: the first byte picks one of `Weft.V1.messageTypes`,
/// the rest is decoded as that type. A decoded value must survive a re-encode
/// and decode unchanged, and a trip through its proto3 JSON (text, parsed back)
/// unchanged too: unknown fields, unrecognized enum numbers and all.
///
/// The round trip runs twice: the second takes the storage objects the first
/// left in the thread's pool (`StoragePool`), so every input also exercises a
/// pooled storage's reuse. The thread's caches are then released, so that each
/// input starts from the same state and a report reproduces from its input
/// alone (see `WireThreadCaches.release`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    let types = Weft.V1.messageTypes
    let type = types[Int(input[0]) % types.count]
    defer { WireThreadCaches.release() }
    let bytes = UnsafeRawBufferPointer(rebasing: input[1...])
    check(type, bytes)
    check(type, bytes)
    return 0
}

/// Opens the existential so the round trip compares values of one static type.
private func check<M: WireMessage>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) {
    let message: M
    do { message = try M(serializedBytes: bytes) } catch { return }
    let encoded: [UInt8]
    do { encoded = try message.serializedBytes() } catch {
        fatalError("decoded \(M.protoMessageName) does not encode: \(error)\n\(message)")
    }
    let again: M
    do { again = try M(serializedBytes: encoded) } catch WireError.decodeBudgetExceeded where encoded.count < bytes.count {
        // The input was padded (overlong varints, which protobuf-c accepts and re-encoding
        // shortens): the same tree from fewer bytes may pass the decode memory budget
        // (docs/wire-protocol.md §2). Canonical bytes within it always decode again.
        return
    } catch {
        fatalError("re-encoded \(M.protoMessageName) does not decode: \(error)\n\(message)")
    }
    guard again == message else {
        fatalError("\(M.protoMessageName) changed in a round trip:\n\(message)\n\(again)")
    }
    if let json = message as? any JSONMessage { checkJSON(json) }
}

/// The JSON text of a decoded message parses back to the same message.
private func checkJSON<M: JSONMessage>(_ message: M) {
    let text = message.jsonText()
    let back: M
    do { back = try M(jsonText: text) } catch {
        fatalError("JSON of \(M.protoMessageName) does not parse: \(error)\n\(text)")
    }
    guard back == message else {
        fatalError("\(M.protoMessageName) changed through JSON:\n\(text)\n\(message)\n\(back)")
    }
}
