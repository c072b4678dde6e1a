import Foundation
import Testing
import WeftWire

/// The generated proto3 JSON mapping: every message round-trips, Google's
/// `json_format` writes and reads the same JSON, the lenient inputs the mapping
/// allows are accepted, and bad input is refused with the field named.
@Suite struct JSONMappingTests {
    /// Whether the JSON text of `message` parses back to it.
    func roundTrips<M: JSONMessage>(_ message: M, pretty: Bool) throws -> Bool {
        try M(jsonText: message.jsonText(pretty: pretty)) == message
    }

    /// Whether `text` parses as `expected`, a value of the type to parse.
    func parses<M: JSONMessage>(_ text: String, to expected: M) throws -> Bool {
        try M(jsonText: text) == expected
    }

    /// Whether `text` parses as the default value of `type`.
    func parsesToDefault<M: JSONMessage>(_ type: M.Type, _ text: String) throws -> Bool {
        try M(jsonText: text) == M()
    }

    @Test func everySampleRoundTripsThroughJSON() throws {
        var count = 0
        for (name, samples) in allSamples {
            for (variant, sample) in samples.enumerated() {
                let message = try #require(sample as? any JSONMessage, "\(name) has no JSON mapping")
                for pretty in [false, true] {
                    // Computed outside #expect: the macro would not open the existential.
                    let same = try roundTrips(message, pretty: pretty)
                    #expect(same, "\(name) variant \(variant) changed through JSON: \(message.jsonText())")
                }
                #expect(Weft.V1.jsonMessageType(named: name) != nil)
                count += 1
            }
            // The default value is the empty object, and `{}` reads as the default.
            let type = try #require(Weft.V1.jsonMessageType(named: name))
            #expect(type.init().jsonText() == "{}", "\(name)")
            let isDefault = try parsesToDefault(type, " { } ")
            #expect(isDefault, "\(name)")
        }
        #expect(count == allSamples.map(\.samples.count).reduce(0, +))
    }

    @Test func googlesJSONFormatWritesAndReadsTheSameJSON() async throws {
        let (directory, descriptorSet) = try makeInteropDirectory("weft-json")
        defer { try? FileManager.default.removeItem(at: directory) }
        var lines = ""
        for (name, samples) in allSamples {
            for (variant, sample) in samples.enumerated() {
                lines += try sampleRecord(name, variant, sample, ["json": (sample as! any JSONMessage).jsonText()])
            }
        }
        let weftJSON = directory.appendingPathComponent("weft.jsonl")
        let pythonJSON = directory.appendingPathComponent("python.jsonl")
        try lines.write(to: weftJSON, atomically: true, encoding: .utf8)

        let (status, text) = try await runPythonScript(
            "weft_json_interop.py", ["--descriptor-set", descriptorSet.path, "--weft-json", weftJSON.path, "--python-json-out", pythonJSON.path])
        #expect(status == 0, "weft_json_interop.py (Google's json_format) reported:\n\(text)")
        #expect(text.contains("0 mismatches"), "\(text)")

        // Google wrote, Weft reads.
        var checked = 0
        for line in try String(contentsOf: pythonJSON, encoding: .utf8).split(separator: "\n") {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let name = record["type"] as! String
            let variant = record["variant"] as! Int
            let sample = try #require(allSamples.first { $0.name == name }?.samples[variant])
            let json = record["json"] as! String
            let message = try #require(sample as? any JSONMessage)
            let same = try parses(json, to: message)
            #expect(same, "\(name) variant \(variant): Weft read Google's JSON \(record["json"]!) differently")
            checked += 1
        }
        #expect(checked == allSamples.map(\.samples.count).reduce(0, +))
    }

    @Test func outputIsCanonical() throws {
        let entry = Weft.V1.MetadataEntry(key: "k", value: .binaryValue([0xFB, 0xFF, 0x01]))
        #expect(entry.jsonText() == #"{"key":"k","binaryValue":"+/8B"}"#)
        // A oneof member at its default value is still written: being set is the information.
        #expect(Weft.V1.MetadataEntry(value: .textValue("")).jsonText() == #"{"textValue":""}"#)
        #expect(Weft.V1.Duration(micros: Int64.min).jsonText() == #"{"micros":"-9223372036854775808"}"#)
        #expect(Weft.V1.CheckResponse(status: .notServing).jsonText() == #"{"status":"SERVING_STATUS_NOT_SERVING"}"#)
        #expect(Weft.V1.CheckResponse(status: .init(rawValue: 42)).jsonText() == #"{"status":42}"#)
        #expect(Weft.V1.Status(code: 5, errorID: "X").jsonText() == #"{"code":5,"errorId":"X"}"#)
        #expect(Weft.V1.Status(message: "tab\there \"q\" \u{1}é").jsonText() == #"{"message":"tab\there \"q\" \u0001é"}"#)
    }

    @Test func inputMayUseWhatTheMappingAllows() throws {
        // Original field names, 64-bit integers as exact numbers, URL-safe base64 without padding,
        // enums by number, null for defaults.
        #expect(try Weft.V1.Status(jsonText: #"{"error_id":"E","correlationId":"c","code":"7"}"#) == .init(code: 7, errorID: "E", correlationID: "c"))
        #expect(try Weft.V1.Duration(jsonText: #"{"micros":9007199254740993}"#).micros == 9_007_199_254_740_993)
        #expect(try Weft.V1.Duration(jsonText: #"{"micros":"-9223372036854775808"}"#).micros == .min)
        #expect(try Weft.V1.Duration(jsonText: #"{"micros":1e3}"#).micros == 1000)
        #expect(try Weft.V1.MetadataEntry(jsonText: #"{"binaryValue":"-_8B"}"#).value == .binaryValue([0xFB, 0xFF, 0x01]))
        #expect(try Weft.V1.MetadataEntry(jsonText: #"{"binary_value":"+/8B"}"#).value == .binaryValue([0xFB, 0xFF, 0x01]))
        #expect(try Weft.V1.CheckResponse(jsonText: #"{"status":2}"#).status == .notServing)
        #expect(try Weft.V1.CheckResponse(jsonText: #"{"status":"SERVING_STATUS_SERVING","detail":null}"#) == .init(status: .serving))
        #expect(try Weft.V1.Frame(jsonText: #"{"streamId":3,"open":null,"ping":{"data":"18446744073709551615"}}"#) == .init(streamID: 3, kind: .ping(.init(data: .max))))
        #expect(try Weft.V1.Status(jsonText: #"{"details":null}"#) == .init())
    }

    /// The reason and path of the error parsing `text` as `M`, or nil if it parsed.
    func failure<M: JSONMessage>(_ type: M.Type, _ text: String) -> JSONMappingError? {
        do throws(JSONMappingError) {
            _ = try M(jsonText: text)
            return nil
        } catch { return error }
    }

    @Test func badInputIsRefusedNamingTheFieldAndTheType() throws {
        let unknown = try #require(failure(Weft.V1.Frame.self, #"{"streamId":1,"open":{"methd":"/x"}}"#))
        #expect(unknown.reason == .unknownField(field: "methd", message: "weft.v1.FrameOpen"))
        #expect(unknown.path == "weft.v1.Frame.open")
        #expect(unknown.description.contains("unknown field \"methd\" in weft.v1.FrameOpen"), "\(unknown)")

        let duplicate = try #require(failure(Weft.V1.Status.self, #"{"errorId":"a","error_id":"b"}"#))
        #expect(duplicate.reason == .duplicateField(field: "error_id", message: "weft.v1.Status"))
        let conflict = try #require(failure(Weft.V1.Frame.self, #"{"ping":{},"pong":{}}"#))
        #expect(conflict.reason == .oneofConflict(oneof: "kind", field: "pong", message: "weft.v1.Frame"))

        let wrongType = try #require(failure(Weft.V1.Status.self, #"{"details":[{"key":1}]}"#))
        #expect(wrongType.path == "weft.v1.Status.details[0].key" && wrongType.description.contains("expected a string, found a number"), "\(wrongType)")
        #expect(failure(Weft.V1.Status.self, #"{"code":-1}"#)?.path == "weft.v1.Status.code")
        #expect(failure(Weft.V1.Status.self, #"{"code":4294967296}"#) != nil)
        #expect(failure(Weft.V1.Duration.self, #"{"micros":1.5}"#) != nil)
        #expect(failure(Weft.V1.Duration.self, #"{"micros":"0x10"}"#) != nil)
        #expect(failure(Weft.V1.MetadataEntry.self, #"{"binaryValue":"not base64!"}"#) != nil)
        #expect(failure(Weft.V1.CheckResponse.self, #"{"status":"SERVING"}"#)?.description.contains("a value name of weft.v1.ServingStatus") == true)
        #expect(failure(Weft.V1.Status.self, #"{"details":[null]}"#)?.path == "weft.v1.Status.details[0]")
        #expect(failure(Weft.V1.Status.self, #"[]"#) != nil)

        // Not JSON: the position and what was expected there.
        let syntax = try #require(failure(Weft.V1.Status.self, "{\n  \"code\": 5,\n  \"message\" \"x\"\n}"))
        guard case .syntax(let position) = syntax.reason else {
            Issue.record("expected a syntax error, got \(syntax)")
            return
        }
        #expect(position.line == 3 && position.column == 13 && position.offset == 27, "\(position)")
        #expect(syntax.description.contains("line 3, column 13") && syntax.description.contains("':'"), "\(syntax)")
        #expect(failure(Weft.V1.Status.self, "{\"code\": 5,}") != nil)
        #expect(failure(Weft.V1.Status.self, "{\"code\": 05}") != nil)
        #expect(failure(Weft.V1.Status.self, "{} x") != nil)
        #expect(failure(Weft.V1.Status.self, String(repeating: "[", count: 10_000)) != nil)
        #expect(failure(Weft.V1.Status.self, "{\"message\": \"\\ud800\"}") != nil)
    }

    @Test func unknownProtobufFieldsAreShownAndKept() throws {
        // CheckRequest{service: "a"} followed by fields 9 (varint 300), 10 (bytes "hi"), 11 (fixed32 7), 12 (fixed64 1).
        let bytes: [UInt8] = [0x0A, 0x01, 0x61, 0x48, 0xAC, 0x02, 0x52, 0x02, 0x68, 0x69, 0x5D, 7, 0, 0, 0, 0x61, 1, 0, 0, 0, 0, 0, 0, 0]
        let message = try Weft.V1.CheckRequest(serializedBytes: bytes)
        let json = message.jsonValue()
        let unknown = try #require(json["@unknown"])
        guard case .array(let entries) = unknown else {
            Issue.record("@unknown is not an array: \(json.serialized())")
            return
        }
        #expect(entries.count == 4)
        #expect(entries[0] == .object([.init("number", .number("9")), .init("wireType", .number("0")), .init("data", .string("rAI=")), .init("varint", .string("300"))]))
        // Length-delimited: the wire value (length prefix included) and, readable, its content.
        #expect(entries[1]["data"] == .string("Amhp") && entries[1]["bytes"] == .string("aGk="), "\(entries[1])")
        #expect(entries[2]["fixed32"] == .number("7") && entries[3]["fixed64"] == .string("1"))
        let back = try Weft.V1.CheckRequest(jsonValue: json)
        #expect(try back.serializedBytes() == bytes)
        // The readable values alone re-encode too.
        let readable = try Weft.V1.CheckRequest(
            jsonText: #"{"@unknown":[{"number":9,"wireType":0,"varint":"300"},{"number":10,"wireType":2,"bytes":"aGk="},{"number":12,"wireType":1,"fixed64":"1"}]}"#)
        #expect(try readable.serializedBytes() == [0x48, 0xAC, 0x02, 0x52, 0x02, 0x68, 0x69, 0x61, 1, 0, 0, 0, 0, 0, 0, 0])
        // Entries that would encode to something else than an unknown field: refused.
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":0,"wireType":0,"varint":"1"}]}"#) != nil)
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":1,"wireType":2,"bytes":"aGk="}]}"#) != nil)
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":9,"wireType":0,"data":"gA=="}]}"#)?.path == "weft.v1.CheckRequest.@unknown[0].data")
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":9,"wireType":2,"data":"BWhp"}]}"#) != nil)
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":9,"wireType":5,"data":"AQI="}]}"#) != nil)
        #expect(failure(Weft.V1.CheckRequest.self, #"{"@unknown":[{"number":9,"wireType":3,"data":""}]}"#) != nil)
    }
}
