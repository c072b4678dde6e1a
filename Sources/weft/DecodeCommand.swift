import ArgumentParser
import Foundation
import WeftWire

/// `weft decode`: frame bytes (as a capture or a log shows them) as readable
/// messages, with the fields this schema does not know shown, not dropped.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Show Weft frames (or one message) from hex or binary bytes as JSON or text.",
        discussion: """
            Input: the hex argument (whitespace allowed), --file, or standard input; hex unless --binary. \
            It may start with the connection preface (5745465401000d0a). Each frame is shown with its \
            5-byte prefix, the weft.v1.Frame fields, and its payload decoded as the method's request or \
            response: the method comes from the stream's open frame in the input (or --method), the \
            direction is request when that open frame is in the input (the client's side of a \
            connection), response otherwise (or --direction). --type weft.v1.X decodes the input as \
            one bare message instead. Output: one JSON object per frame (JSON lines), or text. \
            Fields the schema does not know appear under "@unknown" (number, wire type, base64 data). \
            Bytes that are not frames give the byte offset and what was expected there, exit 1.
            """)

    @Argument(help: "Hex bytes (whitespace and newlines allowed). Without it: --file, or standard input.")
    var hex: [String] = []

    @Option(help: "Read the bytes from this file ('-' for standard input).")
    var file: String?

    @Flag(help: "The input is raw bytes, not hex.")
    var binary = false

    @Option(help: ArgumentHelp("Decode the input as one message of this type, not as frames.", valueName: "weft.v1.Message"))
    var type: String?

    @Option(help: ArgumentHelp("The method of frames whose open frame is not in the input.", valueName: "/weft.v1.Service/Method"))
    var method: String?

    @Option(help: "request or response: how to read the payloads (default: request if the stream's open frame is in the input).")
    var direction: FrameDump.Direction?

    @Option(help: "json (one object per frame) or text.")
    var output: OutputFormat = .json

    func validate() throws {
        guard hex.isEmpty || file == nil else { throw ValidationError("give the bytes as an argument or with --file, not both") }
        guard !(binary && !hex.isEmpty) else { throw ValidationError("--binary reads --file or standard input, not an argument") }
        if let type, Weft.V1.jsonMessageType(named: type) == nil {
            throw ValidationError("--type \(type): no such message in weft.v1 (names are fully qualified, e.g. weft.v1.Frame)")
        }
        if let method, FrameDump.methodDescriptor(method) == nil {
            throw ValidationError("--method \(method): no such method; the methods are listed in docs/methods.md")
        }
        guard type == nil || (method == nil && direction == nil) else {
            throw ValidationError("--type decodes one bare message; --method and --direction are for frames")
        }
    }

    func run() throws {
        let bytes: [UInt8]
        do {
            bytes = try readInput()
        } catch let error as FrameDump.InputError {
            FileHandle.standardError.write(Data("weft decode: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        guard !bytes.isEmpty else {
            FileHandle.standardError.write(Data("weft decode: no bytes to decode; give hex as an argument, --file, or standard input\n".utf8))
            throw ExitCode(1)
        }
        if let type {
            let messageType = Weft.V1.jsonMessageType(named: type)!
            do {
                let message = try messageType.init(serializedBytes: bytes)
                print(message.jsonText(pretty: output == .text))
            } catch {
                FileHandle.standardError.write(
                    Data("weft decode: the \(bytes.count) bytes are not a \(type): \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        var dump = FrameDump(method: method, direction: direction)
        let result = dump.decode(bytes)
        for entry in result.entries {
            switch output {
            case .json: print(entry.json.serialized())
            case .text: print(entry.text)
            }
        }
        if let failure = result.failure {
            FileHandle.standardError.write(Data("weft decode: \(failure)\n".utf8))
            throw ExitCode(1)
        }
        if result.undecodedPayloads > 0 {
            FileHandle.standardError.write(
                Data("weft decode: \(result.undecodedPayloads) payload(s) did not decode as their method's message (see \"payloadError\"); give --method or --direction if the guess was wrong\n".utf8))
            throw ExitCode(1)
        }
    }

    private func readInput() throws -> [UInt8] {
        let raw: [UInt8]
        if !hex.isEmpty {
            raw = Array(hex.joined(separator: " ").utf8)
        } else if let file, file != "-" {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw FrameDump.InputError(description: "cannot read \(file)")
            }
            raw = [UInt8](data)
        } else {
            raw = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        }
        return binary ? raw : try FrameDump.unhex(raw)
    }
}

/// Splits bytes into the preface and frames and decodes each, keeping what
/// it learnt from open frames (each stream's method) for the frames after.
struct FrameDump {
    enum Direction: String, ExpressibleByArgument, CaseIterable {
        case request, response
    }

    /// Input that is not hex, or unreadable.
    struct InputError: Error, CustomStringConvertible {
        var description: String
    }

    /// One decoded piece of the input.
    struct Entry {
        var json: JSONValue
        var text: String
    }

    var method: String?
    var direction: Direction?
    /// Methods of the streams whose open frame was in the input.
    private var openedStreams: [UInt32: String] = [:]

    init(method: String?, direction: Direction?) {
        self.method = method
        self.direction = direction
    }

    static func methodDescriptor(_ path: String) -> MethodDescriptor? {
        Weft.V1.methods.first { $0.path == path }
    }

    /// Hex digits to bytes; whitespace is skipped, anything else is an error
    /// naming its position.
    static func unhex(_ text: [UInt8]) throws -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(text.count / 2)
        var high: UInt8?
        var highPosition = 0
        for (position, character) in text.enumerated() {
            if [0x20, 0x0A, 0x0D, 0x09].contains(character) { continue }
            guard let digit = UInt8(String(UnicodeScalar(character)), radix: 16) else {
                let shown = character >= 0x21 && character < 0x7F ? "'\(String(UnicodeScalar(character)))'" : String(format: "byte 0x%02x", character)
                throw InputError(
                    description: "character \(position) of the input (\(shown)) is not a hexadecimal digit; give hex (e.g. 00000000 04…) or use --binary for raw bytes")
            }
            if let pending = high {
                result.append(pending << 4 | digit)
                high = nil
            } else {
                high = digit
                highPosition = position
            }
        }
        if high != nil {
            throw InputError(description: "odd number of hex digits: the digit at character \(highPosition) has no partner")
        }
        return result
    }

    /// Decodes every frame of `bytes`, stopping at the first thing that is not
    /// a frame (reported in `failure` with its byte offset).
    mutating func decode(_ bytes: [UInt8]) -> (entries: [Entry], failure: String?, undecodedPayloads: Int) {
        var entries: [Entry] = []
        var undecoded = 0
        var offset = 0
        if bytes.starts(with: ConnectionPreface.bytes) {
            entries.append(
                Entry(
                    json: .object([.init("offset", .number("0")), .init("preface", .string("WEFT 1.0"))]),
                    text: "byte 0: connection preface WEFT 1.0"))
            offset = ConnectionPreface.bytes.count
        }
        while offset < bytes.count {
            let remaining = bytes.count - offset
            guard remaining >= FrameLimits.prefixBytes else {
                return (entries, "byte \(offset): expected a 5-byte frame prefix (flag 0, 4-byte big-endian length), but only \(remaining) byte(s) remain", undecoded)
            }
            let flag = bytes[offset]
            guard flag == 0 else {
                return (
                    entries,
                    String(format: "byte %d: expected a frame's flag byte 0 (uncompressed), found 0x%02x; input must start at a frame (or at the preface 5745465401000d0a)", offset, flag),
                    undecoded
                )
            }
            let length = bytes[offset + 1..<offset + 5].reduce(0) { $0 << 8 | Int($1) }
            guard length <= remaining - FrameLimits.prefixBytes else {
                return (entries, "byte \(offset + 1): the frame's length is \(length) bytes, but only \(remaining - FrameLimits.prefixBytes) follow its prefix (truncated input?)", undecoded)
            }
            let body = Array(bytes[offset + 5..<offset + 5 + length])
            let frame: Weft.V1.Frame
            do {
                frame = try Weft.V1.Frame(serializedBytes: body)
            } catch {
                return (entries, "bytes \(offset + 5)…\(offset + 4 + length): the \(length)-byte frame body is not a weft.v1.Frame (\(error))", undecoded)
            }
            let (entry, decodedPayload) = describe(frame, offset: offset, length: length)
            if !decodedPayload { undecoded += 1 }
            entries.append(entry)
            offset += 5 + length
        }
        return (entries, nil, undecoded)
    }

    /// The entry of one frame; false when its payload did not decode as the type expected.
    private mutating func describe(_ frame: Weft.V1.Frame, offset: Int, length: Int) -> (Entry, Bool) {
        var members: [JSONMember] = [
            .init("offset", .number(String(offset))),
            .init("prefix", .object([.init("flag", .number("0")), .init("length", .number(String(length)))])),
            .init("frame", frame.jsonValue()),
        ]
        var text = "byte \(offset): frame of \(length) bytes, stream \(frame.streamID)"
        var ok = true
        switch frame.kind {
        case .open(let open)?:
            openedStreams[frame.streamID] = open.method
            text += ", open \(open.method)"
        case .message(let message)?:
            let path = openedStreams[frame.streamID] ?? method
            let direction = self.direction ?? (openedStreams[frame.streamID] != nil ? .request : .response)
            text += ", message"
            if let path, let descriptor = Self.methodDescriptor(path) {
                let typeName = direction == .request ? descriptor.requestType : descriptor.responseType
                members += [
                    .init("method", .string(path)), .init("direction", .string(direction.rawValue)),
                    .init("payloadType", .string(typeName)),
                ]
                text += " of \(path) (\(direction.rawValue), \(typeName))"
                do {
                    let payload = try Weft.V1.jsonMessageType(named: typeName)!.init(serializedBytes: message.payload)
                    members.append(.init("payload", payload.jsonValue()))
                } catch {
                    ok = false
                    members.append(.init("payloadError", .string("not a \(typeName): \(error)")))
                }
            } else if let path {
                members.append(.init("payloadError", .string("unknown method \(path): payload left as bytes")))
                ok = false
            } else {
                text += " (method unknown: give --method to decode the payload)"
            }
        case nil: text += ", no kind"
        default:
            // The member of the `kind` oneof, by its JSON name.
            if case .object(let fields) = frame.jsonValue(),
                let kind = fields.first(where: { $0.key != "streamId" && $0.key != JSONUnknownFields.key })
            {
                text += ", \(kind.key)"
            }
        }
        let json = JSONValue.object(members)
        var pretty = text
        for member in members where ["frame", "payload", "payloadError"].contains(member.key) {
            pretty += "\n  \(member.key): " + member.value.serialized(pretty: true).replacingOccurrences(of: "\n", with: "\n  ")
        }
        return (Entry(json: json, text: pretty), ok)
    }
}
