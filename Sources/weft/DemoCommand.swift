import ArgumentParser
import Foundation
import WeftStore
import WeftTestSupport
import WeftWire

/// What exists of Weft so far, end to end: a participant's confirmation request
/// is framed as a `SequencerService/Send` call, read back through the frame
/// decoder in network-sized pieces, and its envelopes are stored in and read
/// back from PostgreSQL the way the sequencer will store them, per recipient.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the demo: frames and stores a confirmation request on PostgreSQL.",
        discussion: """
            Without --database-url (or WEFT_DATABASE_URL), starts a throw-away PostgreSQL
            server from the system's binaries (scripts/pg-fixture) and removes it afterwards.
            """
    )

    @Option(name: .customLong("database-url"), help: "libpq URL of a PostgreSQL database to use instead of a throw-away one.")
    var databaseURL: String?

    @Option(help: "Bytes per network read when decoding frames.")
    var chunkBytes: Int = 1_024

    func validate() throws {
        guard chunkBytes > 0 else { throw ValidationError("--chunk-bytes must be positive") }
    }

    func run() async throws {
        let configured = databaseURL ?? ProcessInfo.processInfo.environment["WEFT_DATABASE_URL"]
        if let configured {
            print("database: \(configured.replacingOccurrences(of: #"://([^:@/]*):[^@]*@"#, with: "://$1:***@", options: .regularExpression)) (given)")
            try demo(url: configured)
        } else {
            print("database: starting a throw-away PostgreSQL (scripts/pg-fixture) …")
            let fixture = try await PostgresFixture.startThrowAwayServer()
            print("database: \(fixture.url) in \(fixture.directory ?? "?")")
            do {
                try demo(url: fixture.url)
            } catch {
                try? await fixture.stop()
                throw error
            }
            try await fixture.stop()
            print("database: stopped and removed")
        }
    }

    private func demo(url: String) throws {
        // 1. A participant's confirmation request, as it would call the sequencer.
        let request = try ExampleMessages.confirmationRequest()
        let send = Weft.V1.SendRequest(submissionRequest: try request.serializedBytes())
        let frames: [Weft.V1.Frame] = [
            .init(streamID: 1, kind: .open(.init(method: Weft.V1.SequencerService.send.path, metadata: [
                .init(key: "traceparent", value: .textValue(request.traceparent)),
            ]))),
            .init(streamID: 1, kind: .message(.init(payload: try send.serializedBytes()))),
            .init(streamID: 1, kind: .halfClose(.init())),
        ]
        var stream = ConnectionPreface.bytes
        for frame in frames { try FrameEncoder.append(frame, to: &stream) }
        print()
        print("1. \(request.sender) sends a confirmation request: \(request.batch?.envelopes.count ?? 0) envelopes, "
              + "\(try request.serializedBytes().count) bytes; on the wire \(stream.count) bytes (preface + \(frames.count) frames)")

        // 2. The receiving side: preface, then frames decoded from pieces.
        precondition(Array(stream.prefix(8)) == ConnectionPreface.bytes)
        var decoder = FrameDecoder()
        var received: [Weft.V1.Frame] = []
        var offset = 8
        while offset < stream.count {
            let end = min(offset + chunkBytes, stream.count)
            received += try decoder.decode(Array(stream[offset..<end]))
            offset = end
        }
        try decoder.finish()
        guard received == frames, case .open(let open) = received[0].kind, case .message(let message) = received[1].kind else {
            throw ValidationError("the frames read back differ from those sent")
        }
        let decoded = try Weft.V1.SubmissionRequest(
            serializedBytes: try Weft.V1.SendRequest(serializedBytes: message.payload).submissionRequest)
        print("2. read back in \(chunkBytes)-byte pieces: \(received.count) frames, call \(open.method), submission intact: \(decoded == request)")

        // 3. Store each envelope once with its recipients, as the sequencer will.
        let connection = try PostgresConnection(url: url)
        _ = try connection.execute("""
            CREATE TEMPORARY TABLE demo_envelopes (
                id bigserial PRIMARY KEY, message_id text NOT NULL, content bytea NOT NULL, recipients text[] NOT NULL)
            """)
        for envelope in decoded.batch?.envelopes ?? [] {
            _ = try connection.execute(
                "INSERT INTO demo_envelopes (message_id, content, recipients) VALUES ($1, $2, string_to_array($3, ','))",
                [.text(decoded.messageID), .bytes(envelope.content), .text(envelope.recipients.joined(separator: ","))])
        }
        print("3. stored \(decoded.batch?.envelopes.count ?? 0) envelopes in PostgreSQL (bytes as sent; the sequencer never decodes them)")

        // 4. Each recipient reads only what is addressed to it.
        print("4. what each recipient reads back:")
        for member in [ExampleMessages.mediator] + ExampleMessages.participants {
            let rows = try connection.execute(
                "SELECT content FROM demo_envelopes WHERE $1 = ANY(recipients) ORDER BY id", [.text(member)]).rows
            var kinds: [String] = []
            for row in rows {
                guard let bytes = try row[0].bytes else { continue }
                let content = try Weft.V1.EnvelopeContent(serializedBytes: bytes)
                switch content.message {
                case .informeeMessage(let informee)?:
                    kinds.append("informee tree (\(informee.informeeTree?.rootViews.count ?? 0) root view, \(bytes.count) B)")
                case .encryptedView(let view)?:
                    kinds.append("encrypted view (\(view.ciphertext.count) B ciphertext, \(view.wrappedSeeds.count) wrapped seeds)")
                case .rootHash?:
                    kinds.append("root hash message (\(bytes.count) B)")
                default:
                    kinds.append("\(bytes.count) B")
                }
            }
            print("   \(member.prefix(24))…: " + (kinds.isEmpty ? "nothing" : kinds.joined(separator: "; ")))
        }
        print()
        print("Next: TLS transport, keys and real encryption, the sequencer on this database (see `issues`).")
    }
}
