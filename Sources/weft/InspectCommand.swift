import ArgumentParser
import Foundation
import WeftCrypto
import WeftStore
import WeftWire

/// `weft inspect`: reads a sequencer's PostgreSQL store offline — the domain's golden source —
/// and shows what it holds for a member: its events by counter, and one event's envelopes in
/// full. Given a participant's encryption key it opens the views wrapped for that key, and
/// only those, so an operator sees exactly what that participant could read.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Read a sequencer's store: members, a member's events, one event's envelopes.",
        discussion: """
            Reads the database of a sequencer node (-c nodes.yaml [--node NAME], as `weft db status`)
            or --database-url directly; never writes. Counters are the member's, as its
            subscription numbers them (0, 1, 2 … after any pruned ones).
            """,
        subcommands: [Members.self, Events.self, Event.self])

    /// Where the store is: a node's configuration or a libpq URL.
    struct StoreOptions: ParsableArguments {
        @OptionGroup var configuration: ConfigurationOptions
        @Option(help: "The sequencer node (nodes.<name>) whose database to read; default: the only node.")
        var node: String?
        @Option(name: .customLong("database-url"), help: "libpq URL of the sequencer database, instead of -c.")
        var databaseURL: String?

        func connect() throws -> PostgresConnection {
            let url: String
            if let databaseURL {
                url = databaseURL
            } else {
                guard configuration.file != nil || ProcessInfo.processInfo.environment["WEFT_CONFIG"] != nil else {
                    throw ValidationError("name the store: -c nodes.yaml (a sequencer node) or --database-url URL")
                }
                let settings = try DatabaseCommand.node(configuration, node)
                guard settings.kind == .sequencer else {
                    throw ValidationError(
                        "node \(settings.name) is a \(settings.kind.rawValue), not a sequencer; name the sequencer with --node"
                    )
                }
                url = settings.databaseURL
            }
            do {
                return try PostgresConnection(url: url)
            } catch {
                throw InspectError("cannot reach the sequencer database: \(error)")
            }
        }
    }

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the members the sequencer knows.")
        @OptionGroup var store: StoreOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            try InspectError.reported {
                let rows = try store.connect().execute(
                    "SELECT member, enabled::text, registered_ts FROM sequencer_members ORDER BY id"
                ).rows
                for row in rows {
                    let member = try row[0].string ?? ""
                    let enabled = try row[1].string == "true"
                    switch output {
                    case .text: print("\(member)\(enabled ? "" : " (disabled)")")
                    case .json:
                        try printJSON([
                            "member": member, "enabled": enabled, "registered_micros": try row[2].int64 ?? 0,
                        ])
                    }
                }
            }
        }
    }

    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a member's stored events: counter, timestamp, kind, sender, message id, envelopes, sizes.")
        @OptionGroup var store: StoreOptions
        @Option(help: "The member id, e.g. participant1::1220… (`weft inspect members` lists them).") var member: String
        @Option(help: "First counter (default 0).") var from: Int64 = 0
        @Option(help: "Last counter (default: the latest).") var to: Int64?
        @Option(help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard from >= 0, (to ?? .max) >= from else {
                throw ValidationError("--from must be 0 or more and --to at least --from")
            }
        }

        func run() async throws {
            try InspectError.reported {
                let connection = try store.connect()
                for event in try StoredEvents(connection).events(of: member, from: from, to: to ?? .max) {
                    switch output {
                    case .text: print(event.line)
                    case .json: try printJSON(event.summary)
                    }
                }
            }
        }
    }

    struct Event: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show one event's envelopes in full; with --participant-key, the views wrapped for that key decrypted.")
        @OptionGroup var store: StoreOptions
        @Option(help: "The member id, e.g. participant1::1220….") var member: String
        @Option(help: "The member's counter of the event.") var counter: Int64
        @Option(
            name: .customLong("participant-key"),
            help:
                "A participant's encryption key file (keys/<name>-encryption-key.pem): decrypt the views wrapped for it."
        )
        var participantKey: String?
        @Option(help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard counter >= 0 else { throw ValidationError("--counter must be 0 or more") }
        }

        func run() async throws {
            try InspectError.reported {
                let key: EncryptionPrivateKey?
                do {
                    key = try participantKey.map { try KeyFile.readEncryptionKey(at: $0) }
                } catch {
                    throw InspectError(
                        "--participant-key \(participantKey ?? ""): not a participant encryption key file (\(error)); give the "
                            + "participant's keys/<name>-encryption-key.pem as `weft run` created it")
                }
                let connection = try store.connect()
                guard let event = try StoredEvents(connection).events(of: member, from: counter, to: counter).first
                else {
                    throw InspectError(
                        "\(member) has no event with counter \(counter); `weft inspect events --member \(member)` lists them"
                    )
                }
                let envelopes = try event.envelopes().map { EnvelopeReport($0, key: key) }
                switch output {
                case .text:
                    print(event.line)
                    if let error = event.error { print("  deliver error: \(error)") }
                    for (index, envelope) in envelopes.enumerated() { envelope.printText(index: index) }
                case .json:
                    var object = event.summary
                    object["envelopes"] = envelopes.map(\.json)
                    try printJSON(object)
                }
            }
        }
    }
}

/// A failure of `weft inspect` that is the input's (unknown member, unreadable key file,
/// unreachable database): printed as one line, exit status 1.
struct InspectError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    static func reported(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as InspectError {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode.failure
        } catch let error as PostgresError {
            FileHandle.standardError.write(
                Data("error: reading the sequencer store: \(error); is this a sequencer's database?\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// One stored event, numbered as a member's subscription numbers it, with its whole batch:
/// every envelope, also those addressed to other members (the member's subscription delivers
/// only its own), so that an operator sees what each went to.
struct StoredEvent {
    let counter: Int64
    let timestampMicros: Int64
    let sender: String
    let messageID: String
    let batch: [UInt8]?
    let error: String?

    var timestamp: String {
        let date = Date(timeIntervalSince1970: Double(timestampMicros) / 1_000_000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    func envelopes() throws -> [Weft.V1.Envelope] {
        guard let batch else { return [] }
        do {
            return try Weft.V1.Batch(serializedBytes: batch).envelopes
        } catch {
            throw InspectError("event \(counter)'s batch does not decode (\(error)); the store may be damaged")
        }
    }

    var envelopeSizes: [Int] { ((try? envelopes()) ?? []).map(\.content.count) }

    var kind: String { error == nil ? "deliver" : "deliver-error" }

    var line: String {
        let sizes = envelopeSizes
        return "\(counter)  \(timestamp)  \(kind)  sender \(sender)  message \(messageID)  envelopes \(sizes.count)  "
            + "batch \(batch?.count ?? 0) bytes\(sizes.isEmpty ? "" : " (" + sizes.map(String.init).joined(separator: ", ") + ")")"
    }

    var summary: [String: Any] {
        var object: [String: Any] = [
            "counter": counter, "timestamp": timestamp, "timestamp_micros": timestampMicros, "kind": kind,
            "sender": sender,
            "message_id": messageID, "envelope_count": envelopeSizes.count, "batch_bytes": batch?.count ?? 0,
            "envelope_bytes": envelopeSizes,
        ]
        if let error { object["error"] = error }
        return object
    }
}

/// Reads a member's events with the counters its subscription gives them.
struct StoredEvents {
    let connection: PostgresConnection
    init(_ connection: PostgresConnection) { self.connection = connection }

    func events(of member: String, from: Int64, to: Int64) throws -> [StoredEvent] {
        guard
            let row = try connection.execute(
                "SELECT id::int8 FROM sequencer_members WHERE member = $1", [.text(member)]
            ).rows.first,
            let id = try row[0].int64
        else {
            throw InspectError(
                "no member \(member) in this sequencer store; `weft inspect members` lists the members it knows")
        }
        // After pruning, counting resumes after the prune point's counter.
        let pruned = try connection.execute(
            "SELECT counter, ts FROM sequencer_prune_points WHERE member = $1::int8::int4", [.int64(id)]
        ).rows.first
        let first = try pruned.map { (try $0[0].int64 ?? -1) + 1 } ?? 0
        let after = try pruned.map { try $0[1].int64 ?? .min } ?? .min
        let rows = try connection.execute(
            """
            SELECT n.counter, e.ts, m.member, e.message_id, e.kind::int8, e.batch, e.error_code::int8, e.error_id, e.error_message
            FROM (SELECT d.ts, row_number() OVER (ORDER BY d.ts) - 1 + $2 AS counter
                  FROM sequencer_deliveries d WHERE d.member = $1::int8::int4 AND d.ts > $3) n
            JOIN sequencer_events e ON e.ts = n.ts
            JOIN sequencer_members m ON m.id = e.sender
            WHERE n.counter BETWEEN $4 AND $5
            ORDER BY n.counter
            """, [.int64(id), .int64(first), .int64(after), .int64(from), .int64(to)]
        ).rows
        return try rows.map { row in
            let isError = try row[4].int64 == 2
            return StoredEvent(
                counter: try row[0].int64 ?? 0, timestampMicros: try row[1].int64 ?? 0, sender: try row[2].string ?? "",
                messageID: try row[3].string ?? "", batch: isError ? nil : try row[5].bytes,
                error: isError
                    ? "code \(try row[6].int64 ?? 0) \(try row[7].string ?? ""): \(try row[8].string ?? "")" : nil)
        }
    }
}

/// What `weft inspect event` shows of one envelope: its recipients and content; an encrypted
/// view as ciphertext, or as plaintext when it is wrapped for the given key.
struct EnvelopeReport {
    let recipients: [String]
    let size: Int
    let contentKind: String
    /// The content in readable form (every message but an encrypted view).
    var content: String?
    var viewHash: String?
    var ciphertextBytes = 0
    var ciphertextPreview: String?
    var wrappedFor: [String] = []
    /// nil: no key given; true: decrypted (`plaintext` set); false: not addressed to this key.
    var addressedToKey: Bool?
    var plaintext: String?
    var decryptionError: String?

    static let previewBytes = 32

    init(_ envelope: Weft.V1.Envelope, key: EncryptionPrivateKey?) {
        recipients = envelope.recipients
        size = envelope.content.count
        guard let decoded = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content),
            let message = decoded.message
        else {
            contentKind = "undecodable"
            ciphertextPreview = Self.hex(envelope.content)
            return
        }
        switch message {
        case .encryptedView(let view):
            contentKind = "encrypted_view"
            viewHash = Self.hex(view.viewHash, limit: .max)
            ciphertextBytes = view.ciphertext.count
            ciphertextPreview = Self.hex(view.ciphertext)
            wrappedFor = ViewEncryption.recipientKeys(of: view)
            if let key {
                let fingerprint = key.publicKey.fingerprint.description
                addressedToKey = wrappedFor.contains(fingerprint)
                if addressedToKey == true {
                    do {
                        let bytes = try ViewEncryption.open(view, with: key)
                        plaintext = MessageText.render(try Weft.V1.ViewTree(serializedBytes: bytes))
                    } catch {
                        decryptionError = "wrapped for this key but does not open: \(error)"
                    }
                }
            }
        case .informeeMessage(let value): contentKind = "informee_message"; content = MessageText.render(value)
        case .rootHash(let value): contentKind = "root_hash"; content = MessageText.render(value)
        case .signedMessage(let value): contentKind = "signed_message"; content = MessageText.render(value)
        case .topologyBroadcast(let value): contentKind = "topology_broadcast"; content = MessageText.render(value)
        case .topologySnapshot(let value): contentKind = "topology_snapshot"; content = MessageText.render(value)
        case .topologyRequest(let value): contentKind = "topology_request"; content = MessageText.render(value)
        case .commitmentNarrowingRequest(let value):
            contentKind = "commitment_narrowing_request"; content = MessageText.render(value)
        case .commitmentNarrowingResponse(let value):
            contentKind = "commitment_narrowing_response"; content = MessageText.render(value)
        }
    }

    /// Lower-case hex of the first `limit` bytes, with the length when cut.
    static func hex(_ bytes: [UInt8], limit: Int = previewBytes) -> String {
        let shown = bytes.prefix(limit).map { String(format: "%02x", $0) }.joined()
        return bytes.count > limit ? "\(shown)… (\(bytes.count) bytes)" : shown
    }

    func printText(index: Int) {
        print("  envelope \(index): \(contentKind), \(size) bytes, to \(recipients.joined(separator: ", "))")
        if let content { print("    \(content)") }
        guard contentKind == "encrypted_view" else {
            if let ciphertextPreview { print("    bytes \(ciphertextPreview)") }
            return
        }
        print("    view hash \(viewHash ?? "")")
        print("    seed wrapped for keys \(wrappedFor.joined(separator: ", "))")
        switch addressedToKey {
        case true?:
            if let plaintext { print("    plaintext (decrypted with the participant key): \(plaintext)") }
            if let decryptionError { print("    \(decryptionError)") }
        case false?:
            print("    not addressed to this key; ciphertext \(ciphertextPreview ?? "")")
        case nil:
            print("    ciphertext \(ciphertextPreview ?? "")")
        }
    }

    var json: [String: Any] {
        var object: [String: Any] = ["recipients": recipients, "bytes": size, "content_kind": contentKind]
        if let content { object["content"] = content }
        if contentKind == "encrypted_view" {
            object["view_hash"] = viewHash ?? ""
            object["ciphertext"] = ciphertextPreview ?? ""
            object["ciphertext_bytes"] = ciphertextBytes
            object["wrapped_for"] = wrappedFor
            if let addressedToKey { object["addressed_to_key"] = addressedToKey }
            if let plaintext { object["plaintext"] = plaintext }
            if let decryptionError { object["decryption_error"] = decryptionError }
        }
        return object
    }
}

/// A generated message as readable text, `{field: value, …}`, found by reflection: the
/// generated types keep their fields in a private storage object, which this walks through.
/// Bytes print as hex, unknown fields are left out.
enum MessageText {
    static func render(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        // By exact type: `as [UInt8]` also matches an empty array of any element type.
        if type(of: value) == [UInt8].self, let bytes = value as? [UInt8] {
            return EnvelopeReport.hex(bytes, limit: 64)
        }
        switch value {
        case let text as String: return "\"\(text)\""
        case is Bool, is Int32, is Int64, is UInt32, is UInt64, is Int, is Double, is Float: return "\(value)"
        default: break
        }
        if mirror.displayStyle == .optional {
            return mirror.children.first.map { render($0.value) } ?? "nil"
        }
        if mirror.displayStyle == .collection {
            return "[" + mirror.children.map { render($0.value) }.joined(separator: ", ") + "]"
        }
        if mirror.displayStyle == .enum {
            guard let payload = mirror.children.first else { return "\(value)" }
            return "\(payload.label ?? "")(\(render(payload.value)))"
        }
        var parts: [String] = []
        for child in mirror.children {
            guard let label = child.label, label != "unknownFields", label != "_unknownFields" else { continue }
            parts.append("\(label): \(render(child.value))")
        }
        return "{" + parts.joined(separator: ", ") + "}"
    }
}
