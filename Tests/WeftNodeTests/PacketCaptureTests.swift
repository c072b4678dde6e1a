import Foundation
import Testing
import WeftTestSupport

/// The generated Wireshark dissector (tools/wireshark/weft.lua) on a real capture: a domain
/// in a `weft run` process writing a TLS key log, a participant node, a Ledger API submission
/// whose contract carries a 40 KB text, all captured on loopback with dumpcap and read back
/// with tshark — decrypted, reassembled, and dissected down to the envelopes' contents.
@Suite(.timeLimit(.minutes(5))) struct PacketCaptureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The tshark fields the assertions read, in this order on each output line.
    static let fields = [
        "frame.number", "weft.stream_id", "weft.kind", "weft.method", "weft.direction", "weft.message_type",
        "weft.frame_length", "weft.status.code", "weft.metadata.key", "pbf.weft.v1.Commands.command_id",
        "pbf.weft.v1.Value.text", "pbf.weft.v1.SubmissionRequest.sender", "pbf.weft.v1.SubmissionRequest.message_id",
        "pbf.weft.v1.SequencedEvent.recipient", "pbf.weft.v1.Deliver.sender", "pbf.weft.v1.Deliver.message_id",
        "pbf.weft.v1.EncryptedViewMessage.view_hash",
    ]

    /// `command` run with an empty signal mask. A child inherits the blocked signals of the
    /// thread that spawns it, and the test's threads block SIGINT: dumpcap would never see the
    /// SIGINT that tells it to finish its file. Python unblocks them, then execs (same pid).
    static func withSignalsUnblocked(_ command: [String]) -> [String] {
        [
            "python3", "-c",
            "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])",
        ]
            + command
    }

    @Test func tsharkDissectsALedgerSubmissionAndItsSequencerDelivery() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            let domain = try await ProcessDomain.start(
                fixture: fixture, directory: directory, runArguments: ["--tls-keylog", "keys.txt"])
            defer { domain.process.signal(SIGKILL) }

            // The capture starts before the participant connects: the dissector learns each
            // stream's method from its first frame, and TLS needs the handshake.
            let apiPort = try ProcessDomain.freePort()
            let sentinelPort = try ProcessDomain.freePort()
            let capture = try WeftProcess(
                Self.withSignalsUnblocked(
                    [
                        "dumpcap", "-q", "-i", "lo", "-f",
                        "tcp port \(domain.sequencerPort) or tcp port \(apiPort) or tcp port \(sentinelPort)", "-w",
                        "\(dir)/weft.pcapng",
                    ]),
                directory: dir, executable: URL(fileURLWithPath: "/usr/bin/env"))
            defer { capture.signal(SIGKILL) }
            #expect(await capture.waitForStandardError(containing: "File:"), "dumpcap: \(capture.standardError)")

            let (id, node, api) = try await domain.joinParticipant("participant1", directory: directory, port: apiPort)
            defer { node.signal(SIGKILL) }
            let member = "PAR::\(id)"
            let bank = try await domain.weft(["party", "allocate", "bank"] + api)
            let alice = try await domain.weft(["party", "allocate", "alice"] + api)
            // 40,000 bytes: more than two TLS records (16 KiB each), so the submission's frame
            // to the sequencer and its delivery back are each reassembled from several.
            let marker = "capture-" + String(repeating: "0123456789", count: 4_000)
            _ = try await domain.weft(
                [
                    "submit", "create", "--template", "Iou", "--act-as", bank, "--command-id", "capture-issue-1",
                    "--arguments",
                    #"{"issuer": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "currency": "\#(marker)", "amount": {"decimal": "1.0"}}"#,
                ]
                    + api)
            // Committed (submit waits for it), so participant1 has received its delivery. dumpcap
            // drops what the kernel has not handed it yet when it stops: stop once a sentinel
            // sent after everything else (a refused connection to a port nobody serves) is in
            // the file, which dumpcap flushes as it goes.
            _ = try await TestSubprocess.run([
                "python3", "-c", "import socket; socket.socket().connect_ex(('127.0.0.1', \(sentinelPort)))",
            ])
            var sentinelCaptured = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !sentinelCaptured && ContinuousClock.now < deadline {
                let found = try await TestSubprocess.run(
                    [
                        "tshark", "-r", "\(dir)/weft.pcapng", "-Y", "tcp.port == \(sentinelPort)", "-T", "fields", "-e",
                        "frame.number",
                    ])
                sentinelCaptured = !found.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                if !sentinelCaptured { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(sentinelCaptured, "dumpcap: \(capture.standardError)")
            capture.signal(SIGINT)
            #expect(await capture.exitStatus() == 0, "dumpcap: \(capture.standardError)")

            let tshark = try await TestSubprocess.run(
                [
                    "tshark", "-r", "\(dir)/weft.pcapng", "-X",
                    "lua_script:" + Self.root.appendingPathComponent("tools/wireshark/weft.lua").path,
                    "-o", "tls.keylog_file:\(dir)/keys.txt",
                    "-o", #"uat:protobuf_search_paths:"\#(Self.root.appendingPathComponent("Proto").path)","TRUE""#,
                    "-o", "protobuf.preload_protos:TRUE", "-o", "protobuf.pbf_as_hf:TRUE",
                    // The Ledger API is plaintext here: weft on its port (the preface heuristic finds it too).
                    "-d", "tcp.port==\(apiPort),weft",
                    "-Y", "weft.kind", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
                ]
                    + Self.fields.flatMap { ["-e", $0] })
            #expect(tshark.status == 0, "tshark: \(tshark.error)")
            let rows = tshark.output.split(separator: "\n").map { line in
                let values = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                return Dictionary(
                    uniqueKeysWithValues: zip(Self.fields, values + Array(repeating: "", count: Self.fields.count)))
            }
            func values(_ row: [String: String], _ field: String) -> [String] {
                (row[field] ?? "").split(separator: "|").map(String.init)
            }

            // The Ledger API submission: method, command id, and the whole 40 KB argument.
            let submission = rows.first { row in
                values(row, "weft.method").contains("/weft.v1.CommandService/SubmitAndWait")
                    && values(row, "weft.message_type").contains("weft.v1.SubmitAndWaitRequest")
            }
            let submitted = try #require(
                submission, "no SubmitAndWait request in \(rows.count) rows: \(tshark.output.prefix(3000))")
            #expect(values(submitted, "weft.direction").contains("request"))
            #expect(values(submitted, "pbf.weft.v1.Commands.command_id") == ["capture-issue-1"])
            #expect(values(submitted, "pbf.weft.v1.Value.text").contains(marker), "the 40 KB text, whole")
            // Its answer closes the stream with OK.
            #expect(
                rows.contains {
                    values($0, "weft.method").contains("/weft.v1.CommandService/SubmitAndWait")
                        && values($0, "weft.kind").contains("close") && values($0, "weft.status.code").contains("0")
                })

            // The confirmation request sent to the sequencer (TLS, key log): a frame over 16 KiB,
            // dissected whole down to the submission inside SendRequest's bytes.
            let send = try #require(
                rows.first { row in
                    values(row, "weft.method").contains("/weft.v1.SequencerService/Send")
                        && values(row, "pbf.weft.v1.SubmissionRequest.sender").contains(member)
                        && values(row, "weft.frame_length").contains { (Int($0) ?? 0) > 40_000 }
                }, "no Send of the 40 KB request: \(tshark.output.prefix(3000))")
            let messageID = try #require(values(send, "pbf.weft.v1.SubmissionRequest.message_id").first)
            #expect(
                rows.contains {
                    values($0, "weft.kind").contains("open")
                        && values($0, "weft.metadata.key").contains("authorization")
                },
                "calls to the sequencer carry the member's token")

            // Its delivery to participant1 on the Subscribe stream: the signed event's bytes as a
            // SequencedEvent, the envelopes' bytes as EnvelopeContent with the encrypted view.
            let delivery = try #require(
                rows.first { row in
                    values(row, "weft.method").contains("/weft.v1.SequencerService/Subscribe")
                        && values(row, "weft.message_type").contains("weft.v1.SubscribeResponse")
                        && values(row, "pbf.weft.v1.Deliver.message_id").contains(messageID)
                        && values(row, "pbf.weft.v1.SequencedEvent.recipient") == [member]
                }, "no delivery of \(messageID) to \(member): \(tshark.output.prefix(3000))")
            #expect(values(delivery, "weft.direction").contains("response"))
            #expect(values(delivery, "pbf.weft.v1.Deliver.sender") == [member])
            #expect(!values(delivery, "pbf.weft.v1.EncryptedViewMessage.view_hash").isEmpty)
            #expect(values(delivery, "weft.frame_length").contains { (Int($0) ?? 0) > 40_000 })

            try await Self.inspectTheStore(
                domain: domain, directory: directory, fixtureURL: fixture.url, participant1: member, marker: marker)

            node.signal(SIGTERM)
            #expect(await node.exitStatus() == 0, "\(node.standardError.suffix(3000))")
            domain.process.signal(SIGTERM)
            #expect(await domain.process.exitStatus() == 0, "\(domain.process.standardError.suffix(3000))")
        }
    }

    /// Bad bytes on a Weft connection: the dissector marks them (expert info) and goes on with
    /// the next frame; no Lua error. A hand-made capture of one plaintext connection: the preface
    /// and a frame whose body is not protobuf, a good `open`, a frame with flag 1, and bytes that
    /// are neither a frame nor the preface.
    @Test func tsharkMarksMalformedFramesAndCarriesOn() async throws {
        func frame(_ body: [UInt8], flag: UInt8 = 0) -> [UInt8] {
            [flag] + withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + body
        }
        let open: [UInt8] = [0x08, 0x01, 0x12, 0x0a, 0x0a, 0x08] + Array("/x.y/Zed".utf8)  // stream 1, open{method}
        let segments: [[UInt8]] = [
            Array("WEFT".utf8) + [1, 0, 0x0d, 0x0a] + frame([0xff, 0xff, 0xff]), frame(open),
            frame([0x08, 0x01, 0x1a, 0x05, 0x0a, 0x03] + Array("abc".utf8), flag: 1), Array("Wxyz garbage!".utf8),
        ]
        // pcap, Ethernet: each segment in one IPv4/TCP packet 127.0.0.1:40000 → :4000 (checksums unset).
        var pcap: [UInt8] = []
        func little<T: FixedWidthInteger>(_ value: T) { pcap += withUnsafeBytes(of: value.littleEndian, Array.init) }
        little(UInt32(0xa1b2_c3d4)); little(UInt16(2)); little(UInt16(4)); little(Int32(0)); little(UInt32(0));
        little(UInt32(65535)); little(UInt32(1))
        var sequence: UInt32 = 1
        for (index, payload) in segments.enumerated() {
            func big<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }
            let tcp =
                big(UInt16(40000)) + big(UInt16(4000)) + big(sequence) + big(UInt32(0)) + [0x50, 0x18]
                + big(UInt16(65535)) + [0, 0, 0, 0]
            let ip: [UInt8] =
                [0x45, 0] + big(UInt16(20 + tcp.count + payload.count)) + [
                    0, 1, 0, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
                ]
            let packet = [UInt8](repeating: 0, count: 12) + [0x08, 0x00] + ip + tcp + payload
            little(UInt32(1000 + index)); little(UInt32(0)); little(UInt32(packet.count)); little(UInt32(packet.count))
            pcap += packet
            sequence += UInt32(payload.count)
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("weft-malformed-\(UUID()).pcap").path
        try Data(pcap).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let lua = "lua_script:" + Self.root.appendingPathComponent("tools/wireshark/weft.lua").path
        let fields = try await TestSubprocess.run(
            [
                "tshark", "-r", file, "-X", lua, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message", "-e",
                "weft.kind", "-e", "weft.method",
            ])
        #expect(fields.status == 0, "\(fields.error)")
        let rows = fields.output.split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
        #expect(rows.map { $0.first ?? "" } == ["1", "2", "3", "4"], "\(fields.output)")
        guard rows.count == 4, rows.allSatisfy({ $0.count == 4 }) else { return }
        #expect(rows[0][1] == "Malformed Weft frame")
        #expect(rows[1][2] == "open" && rows[1][3] == "/x.y/Zed")
        #expect(rows[2][1] == "Frame flag is not 0" && rows[2][2] == "message" && rows[2][3] == "/x.y/Zed")
        #expect(rows[3][1] == "Neither a frame (flag 0) nor the preface")
        let verbose = try await TestSubprocess.run(["tshark", "-r", file, "-X", lua, "-V"])
        #expect(!verbose.output.contains("Lua Error"), "\(verbose.output)")
    }

    /// `weft inspect` on the same domain's sequencer store: participant2 gets a transaction of
    /// its own (bob's IOU to himself) that participant1 has no part in; each participant's key
    /// opens its own views and no other's.
    static func inspectTheStore(
        domain: ProcessDomain, directory: NodeDirectory, fixtureURL: String, participant1: String, marker: String
    ) async throws {
        let dir = directory.path
        let (id2, node2, api2) = try await domain.joinParticipant("participant2", directory: directory)
        defer { node2.signal(SIGKILL) }
        let participant2 = "PAR::\(id2)"
        let bob = try await domain.weft(["party", "allocate", "bob"] + api2)
        let bobMarker = "bob-only-\(UUID())"
        _ = try await domain.weft(
            [
                "submit", "create", "--template", "Iou", "--act-as", bob, "--command-id", "bob-1", "--arguments",
                #"{"issuer": {"party": "\#(bob)"}, "owner": {"party": "\#(bob)"}, "currency": "\#(bobMarker)", "amount": {"decimal": "2.0"}}"#,
            ]
                + api2)

        let store = ["--database-url", fixtureURL]
        func inspect(_ arguments: [String]) async throws -> (status: Int32, output: String, error: String) {
            try await WeftProcess.run(["inspect"] + arguments + store, directory: dir)
        }
        // A participant's confirmation request: the biggest event it sent itself.
        func request(of member: String) async throws -> Int64 {
            let (status, output, error) = try await inspect(["events", "--member", member, "--output", "json"])
            #expect(status == 0, "\(error)")
            let events = output.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            let own = events.filter { $0["sender"] as? String == member }
            let biggest = try #require(
                own.max { ($0["batch_bytes"] as? Int ?? 0) < ($1["batch_bytes"] as? Int ?? 0) }, "\(output)")
            return try #require((biggest["counter"] as? NSNumber)?.int64Value, "\(biggest)")
        }
        let members = try await inspect(["members"])
        #expect(
            members.status == 0 && members.output.split(separator: "\n").contains { $0 == participant2 }, "\(members)")
        // The same from the node's configuration, as `weft db status` reads it; a node that is
        // not a sequencer, or no store at all, is a usage error.
        let configured = try await WeftProcess.run(
            ["inspect", "members", "-c", "domain.yaml", "--node", "sequencer1"], directory: dir)
        #expect(configured.0 == 0 && configured.1 == members.output, "\(configured)")
        let mediator = try await WeftProcess.run(
            ["inspect", "members", "-c", "domain.yaml", "--node", "mediator1"], directory: dir)
        #expect(mediator.0 == 64 && mediator.2.contains("node mediator1 is a mediator, not a sequencer"), "\(mediator)")
        let nowhere = try await WeftProcess.run(["inspect", "members"], directory: dir)
        #expect(nowhere.0 == 64 && nowhere.2.contains("name the store: -c nodes.yaml"), "\(nowhere)")
        let request1 = try await request(of: participant1)
        let request2 = try await request(of: participant2)

        // The listing: one line for the counter asked for.
        let listed = try await inspect([
            "events", "--member", participant1, "--from", "\(request1)", "--to", "\(request1)",
        ])
        let lines = listed.output.split(separator: "\n")
        #expect(
            lines.count == 1 && lines[0].hasPrefix("\(request1)  ") && lines[0].contains("sender \(participant1)"),
            "\(listed)")

        let key1 = "keys/participant1-encryption-key.pem"
        let key2 = "keys/participant2-encryption-key.pem"
        // participant1's key opens its view: the 40 KB text is in the plaintext.
        let opened = try await inspect([
            "event", "--member", participant1, "--counter", "\(request1)", "--participant-key", key1,
        ])
        #expect(opened.status == 0, "\(opened.error)")
        #expect(
            opened.output.contains("plaintext (decrypted with the participant key)") && opened.output.contains(marker))
        // Without a key: ciphertext only.
        let sealed = try await inspect(["event", "--member", participant1, "--counter", "\(request1)"])
        #expect(
            sealed.status == 0 && sealed.output.contains("ciphertext ") && !sealed.output.contains("capture-0123"),
            "\(sealed.output.prefix(2000))")
        // participant1's key on participant2's own transaction: not addressed to it, no plaintext.
        let foreign = try await inspect([
            "event", "--member", participant2, "--counter", "\(request2)", "--participant-key", key1,
        ])
        #expect(foreign.status == 0 && foreign.output.contains("not addressed to this key"), "\(foreign)")
        #expect(!foreign.output.contains(bobMarker) && !foreign.output.contains("plaintext"))
        // participant2's key opens it, as JSON too.
        let own = try await inspect([
            "event", "--member", participant2, "--counter", "\(request2)", "--participant-key", key2, "--output",
            "json",
        ])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(own.output.utf8)) as? [String: Any], "\(own)")
        let envelopes = try #require(object["envelopes"] as? [[String: Any]], "\(object)")
        let views = envelopes.filter { $0["content_kind"] as? String == "encrypted_view" }
        #expect(!views.isEmpty && views.allSatisfy { $0["addressed_to_key"] as? Bool == true })
        #expect(views.contains { ($0["plaintext"] as? String ?? "").contains(bobMarker) }, "\(views)")

        // Bad input: an unknown member, a key file that is not one.
        let unknown = try await inspect(["events", "--member", "PAR::nobody::1220"])
        #expect(
            unknown.status == 1 && unknown.error.contains("no member PAR::nobody::1220")
                && unknown.error.contains("weft inspect members"), "\(unknown)")
        try directory.write("bad-key.pem", "not a key\n")
        _ = chmod(dir + "/bad-key.pem", 0o600)
        let bad = try await inspect([
            "event", "--member", participant1, "--counter", "\(request1)", "--participant-key", "bad-key.pem",
        ])
        #expect(bad.status == 1 && bad.error.contains("not a participant encryption key file"), "\(bad)")
        #expect(bad.output.isEmpty)

        node2.signal(SIGTERM)
        #expect(await node2.exitStatus() == 0, "\(node2.standardError.suffix(3000))")
    }
}
