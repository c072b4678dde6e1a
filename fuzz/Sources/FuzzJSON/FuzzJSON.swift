import FuzzDriver
import WeftWire

// Failed checks call `fatalError`, not `precondition`: in a release build
// `precondition` traps without its message, and the message is the report.

/// Hands control to libFuzzer, which calls `fuzz` once per input.
@main
enum FuzzJSONMain {
    static func main() { runLibFuzzer { data, count in data.map { fuzz($0, count) } ?? 0 } }
}

/// libFuzzer entry point: the first byte picks one of `Weft.V1.messageTypes`,
/// the rest is JSON text (what `weft call --json` reads) parsed as that type.
/// Any input must give a value or a typed error; a JSON document must print
/// and parse back to itself, and a message read from JSON must survive its
/// own JSON and its protobuf encoding unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: start, count: count)
    // Each input starts from empty thread caches (see `WireThreadCaches.release`).
    defer { WireThreadCaches.release() }
    let types = Weft.V1.messageTypes
    guard let type = types[Int(input[0]) % types.count] as? any JSONMessage.Type else {
        fatalError("\(types[Int(input[0]) % types.count].protoMessageName) has no JSON mapping")
    }
    let value: JSONValue
    do { value = try JSONValue(parsing: Array(input[1...])) } catch { return 0 }
    let printed = value.serialized()
    guard (try? JSONValue(parsing: printed)) == value else {
        fatalError("JSON changed when printed and parsed again:\n\(printed)")
    }
    check(type, value)
    return 0
}

/// Opens the existential so the round trips compare values of one static type.
private func check<M: JSONMessage>(_ type: M.Type, _ value: JSONValue) {
    let message: M
    do { message = try M(jsonValue: value) } catch { return }
    let text = message.jsonText()
    guard let again = try? M(jsonText: text), again == message else {
        fatalError("\(M.protoMessageName) read from JSON changed through its own JSON:\n\(value.serialized())\n\(text)")
    }
    // Strings with NUL cannot be encoded by protobuf-c: a typed error, not a change.
    guard let bytes = try? message.serializedBytes() else { return }
    let decoded: M
    do { decoded = try M(serializedBytes: bytes) } catch {
        // JSON may nest deeper than the protobuf decoder accepts; that refusal is typed.
        if case .nestingTooDeep = error { return }
        fatalError("\(M.protoMessageName) read from JSON does not decode from its encoding: \(error)\n\(text)")
    }
    guard decoded == message else {
        fatalError("\(M.protoMessageName) read from JSON changed through protobuf:\n\(text)")
    }
}
