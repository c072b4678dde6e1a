import Foundation
import WeftCrypto
import WeftWire

/// `weft-bench crypto`: WeftCrypto's operations per second next to
/// `openssl speed` for the same primitive, alternating runs of each so that
/// the machine's drift affects both alike. Target: ≥ 0.9× OpenSSL's own
/// figures for the primitives (WeftCrypto adds wrapping, not work).
enum CryptoBenchmark {
    struct Line {
        var name: String
        var weft: Double  // ops/s
        var openssl: Double?  // ops/s
    }

    /// Runs `openssl speed -mr ARGS` for `seconds` and returns its result line's fields.
    static func opensslSpeed(_ arguments: [String], seconds: Int) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "speed", "-seconds", String(seconds), "-mr"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("+F") }) else {
            throw ValidationFailure("openssl speed \(arguments.joined(separator: " ")) printed no result")
        }
        return line.split(separator: ":").map(String.init)
    }

    struct ValidationFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Operations per second of `body` over about `seconds`.
    static func opsPerSecond(seconds: Double, _ body: () throws -> Void) rethrows -> Double {
        var count = 0
        let start = now()
        let end = start + UInt64(seconds * 1e9)
        var current = start
        while current < end {
            for _ in 0..<16 { try body() }
            count += 16
            current = now()
        }
        return Double(count) / (Double(current - start) / 1e9)
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    static func run(rounds: Int) throws {
        print("weft-bench crypto: WeftCrypto vs `openssl speed` (OpenSSL \(OpenSSLVersion.text)), \(rounds) alternating 1 s rounds, medians")
        print()
        let signing = try SigningPrivateKey.generate()
        let hash = PurposeHasher.hash(.submissionRequest, Array(repeating: 7, count: 100))
        let signature = try signing.sign(hash)
        let alice = try EncryptionPrivateKey.generate()
        let bob = try EncryptionPrivateKey.generate()
        let wrapped = try ECIES.wrap(Array(repeating: 1, count: 32), for: bob.publicKey)
        let key = Array(repeating: UInt8(3), count: 32)
        let nonce = Array(repeating: UInt8(4), count: 12)
        let aad = Array(repeating: UInt8(5), count: 32)

        var lines: [Line] = []
        func measure(_ name: String, opensslArguments: [String]?, opensslOps: ([String]) -> Double, _ body: () throws -> Void) throws {
            var weft: [Double] = []
            var openssl: [Double] = []
            for _ in 0..<rounds {
                weft.append(try opsPerSecond(seconds: 1, body))
                if let opensslArguments { openssl.append(opensslOps(try opensslSpeed(opensslArguments, seconds: 1))) }
            }
            lines.append(Line(name: name, weft: median(weft), openssl: openssl.isEmpty ? nil : median(openssl)))
        }

        // `+F6:0:253:Ed25519:<sign/s>:<verify/s>`
        try measure("Ed25519 sign (purpose hash)", opensslArguments: ["ed25519"], opensslOps: { Double($0[4]) ?? 0 }) {
            blackHole(try signing.sign(hash))
        }
        try measure("Ed25519 verify", opensslArguments: ["ed25519"], opensslOps: { Double($0[5]) ?? 0 }) {
            try signing.publicKey.verify(signature, over: hash)
        }
        // `+F5:<n>:253:<ops/s>:<s/op>`
        try measure("X25519 shared secret", opensslArguments: ["ecdhx25519"], opensslOps: { Double($0[3]) ?? 0 }) {
            blackHole(try alice.sharedSecret(with: bob.publicKey))
        }
        try measure("HKDF-SHA256, 44 bytes (ECIES key+nonce)", opensslArguments: nil, opensslOps: { _ in 0 }) {
            blackHole(try HKDF.sha256(key: key, salt: nonce + key + key, info: aad, outputBytes: 44))
        }
        try measure("ECIES wrap (keygen+X25519+HKDF+GCM)", opensslArguments: nil, opensslOps: { _ in 0 }) {
            blackHole(try ECIES.wrap(key, for: bob.publicKey))
        }
        try measure("ECIES unwrap", opensslArguments: nil, opensslOps: { _ in 0 }) {
            blackHole(try ECIES.unwrap(wrapped, with: bob))
        }
        for size in [1024, 65536] {
            let plaintext = Array(repeating: UInt8(9), count: size)
            let sealed = try AES256GCM.seal(plaintext, key: key, nonce: nonce, associatedData: aad)
            let prepared = try AES256GCM.Key(key)
            // `+F:<n>:AES-256-GCM:<bytes/s>`. With -aead, openssl speed runs a TLS-like
            // sequence per record (new nonce, AAD, update, tag) on a key set once: the
            // same work as a prepared `AES256GCM.Key`.
            let arguments = ["-aead", "-evp", "aes-256-gcm", "-bytes", String(size)]
            try measure("AES-256-GCM seal \(size / 1024) KiB", opensslArguments: arguments, opensslOps: { (Double($0[3]) ?? 0) / Double(size) }) {
                blackHole(try prepared.seal(plaintext, nonce: nonce, associatedData: aad))
            }
            try measure("AES-256-GCM open \(size / 1024) KiB", opensslArguments: arguments, opensslOps: { (Double($0[3]) ?? 0) / Double(size) }) {
                blackHole(try prepared.open(sealed, nonce: nonce, associatedData: aad))
            }
            try measure("AES-256-GCM seal \(size / 1024) KiB, new key", opensslArguments: nil, opensslOps: { _ in 0 }) {
                blackHole(try AES256GCM.seal(plaintext, key: key, nonce: nonce, associatedData: aad))
            }
            let seed = try ViewSeed.random()
            let viewHash = PurposeHasher.hash(.transactionView, [1])
            let view = try ViewEncryption.seal(plaintext, viewHash: viewHash, seed: seed, recipients: [bob.publicKey])
            try measure("view seal \(size / 1024) KiB, 1 recipient", opensslArguments: nil, opensslOps: { _ in 0 }) {
                blackHole(try ViewEncryption.seal(plaintext, viewHash: viewHash, seed: seed, recipients: [bob.publicKey]))
            }
            try measure("view open \(size / 1024) KiB", opensslArguments: nil, opensslOps: { _ in 0 }) {
                blackHole(try ViewEncryption.open(view, with: bob))
            }
            // docs/crypto.md §6.1: the session key made once and then reused, as a participant
            // does for 10 s; the seed sealed under it with a fresh random seed each time.
            let sessions = OutgoingSessionKeys(lifetime: .seconds(3600))
            let received = IncomingSessionKeys(lifetime: .seconds(3600))
            let inSession = try ViewEncryption.seal(plaintext, viewHash: viewHash, recipients: [bob.publicKey], sessions: sessions)
            try measure("view seal \(size / 1024) KiB, session key", opensslArguments: nil, opensslOps: { _ in 0 }) {
                blackHole(try ViewEncryption.seal(plaintext, viewHash: viewHash, recipients: [bob.publicKey], sessions: sessions))
            }
            try measure("view open \(size / 1024) KiB, session key kept", opensslArguments: nil, opensslOps: { _ in 0 }) {
                blackHole(try ViewEncryption.open(inSession.message, with: bob, sessions: received))
            }
        }

        print(pad("operation", 40) + pad("Weft ops/s", 13, right: true) + pad("openssl ops/s", 15, right: true) + pad("ratio", 8, right: true))
        var worst = Double.infinity
        for line in lines {
            var row = pad(line.name, 40) + pad(format(line.weft), 13, right: true)
            if let openssl = line.openssl {
                let ratio = line.weft / openssl
                worst = min(worst, ratio)
                row += pad(format(openssl), 15, right: true) + pad(format(ratio, 2) + "x", 8, right: true)
            } else {
                row += pad("(composite)", 15, right: true)
            }
            print(row)
        }
        print()
        print("target: Weft >= 0.9x openssl speed for each primitive; lowest here \(format(worst, 2))x -> \(worst >= 0.9 ? "met" : "NOT met")")
    }
}

enum OpenSSLVersion {
    static var text: String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "version"]
        let output = Pipe()
        process.standardOutput = output
        guard (try? process.run()) != nil else { return "?" }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text.split(separator: " ").dropFirst().first.map(String.init) ?? "?"
    }
}
