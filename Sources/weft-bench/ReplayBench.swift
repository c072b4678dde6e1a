import Foundation
import Logging
import WeftParticipant
import WeftSequencer
import WeftStore
import WeftTestSupport

/// `weft-bench replay`: how fast a participant that lost its database rebuilds its ledger
/// from its sequencer stream (docs/operator-guide.md, "Recovery: replay from the sequencer").
///
/// The domain of `weft-bench transactions` (sequencer over TLS, mediator, three participants,
/// one PostgreSQL server) runs the IOU closed loop — alice (participant1) and bob
/// (participant2) transferring IOUs back and forth — for `--seconds`; every transfer is a
/// transaction on participant2's ledger. Then participant2 stops and a node with its keys
/// starts on an empty database, uploads the packages and replays its stream from counter 0
/// until its replay mark comes back. Figures: the replay's transactions per second, against
/// two baselines of the same run: the live rate of the same kind of transactions, and the rate
/// at which the sequencer hands participant2 its stream when nothing is done with it.
enum ReplayBenchmark {
    static func run(_ arguments: [String]) async throws {
        let options = TransactionBenchmark.Options(arguments)
        print(
            "weft-bench replay: sequencer (TLS 1.3 on 127.0.0.1), mediator and 3 participants in this process, one PostgreSQL server;"
        )
        print(
            "  live IOU transfers for \(options.warmup) s warm-up + \(options.seconds) s, \(options.submitters) submitters; load before start: \(SequencerBenchmark.loadAverage())"
        )
        var logger = Logger(label: "weft-bench") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .error
        var fixture: PostgresFixture?
        if options.url == nil { fixture = try await PostgresFixture.startThrowAwayServer() }
        do {
            try await measure(options, baseURL: options.url ?? fixture!.url, logger: logger)
            try await fixture?.stop()
        } catch {
            try? await fixture?.stop()
            throw error
        }
    }

    static func measure(_ options: TransactionBenchmark.Options, baseURL: String, logger: Logger) async throws {
        let admin = try PostgresConnection(url: baseURL)
        let name = "replay_\(UInt32.random(in: 0...UInt32.max))"
        try admin.executeScript("CREATE DATABASE \(name)")
        try admin.executeScript("CREATE DATABASE \(name)_recovered")
        let url = SequencerBenchmark.url(baseURL, database: name)
        let domain = try await TransactionBenchmark.BenchDomain.start(
            url: url, connections: options.databaseConnections, logger: logger)
        let workload = try TransactionBenchmark.IOUWorkload(domain)
        try await workload.setUp(count: options.submitters)
        let live = try await TransactionBenchmark.closedLoop(
            workload, options: options, probe: Probe(url: url, postmaster: nil))
        let transactions = await domain.p2.ledgerEndOffset
        let events = await domain.p2.nextCounter
        await domain.p2.stop()
        let member = domain.members[1]

        // Baseline: participant2's stream read and verified, nothing done with it.
        let reader = SequencerConnection(
            member: member.member.description, domain: domain.domain.domain.description, key: member.signingKey,
            sequencerKeys: [domain.domain.sequencerKey.publicKey], endpoints: [domain.endpoint], logger: logger)
        let readStart = now()
        for try await event in reader.events(from: 0) where event.counter + 1 >= events { break }
        let readSeconds = Double(now() - readStart) / 1e9
        await reader.close()

        // The replay, on an empty database.
        let database = PostgresDatabase(
            url: SequencerBenchmark.url(baseURL, database: "\(name)_recovered"),
            maximumConnections: options.databaseConnections,
            logger: logger)
        let started = now()
        let node = try await TransactionBenchmark.BenchDomain.startParticipant(
            member, database: database, domain: domain.domain, endpoint: domain.endpoint, logger: logger)
        for file in ["iou.weft", "dvp.weft"] {
            _ = try await node.upload(packageSource: try ViewsBenchmark.source(file), file: file)
        }
        guard let summary = try await node.waitForReplay() else {
            throw BenchError("the replay did not start from counter 0")
        }
        let seconds = Double(now() - started) / 1e9
        let replayed = await node.ledgerEndOffset
        await node.stop()
        await database.shutdown()
        await domain.stop()
        guard replayed == transactions else {
            throw BenchError("the replay rebuilt \(replayed) transactions, participant2 had \(transactions)")
        }

        print()
        print(
            "participant2: \(transactions) transactions, \(events) events in its stream, \(summary.activeContracts) active contracts"
        )
        print(
            "replay from counter 0 (empty database to caught up): \(SequencerBenchmark.format(Double(transactions) / seconds, 1)) transactions/s (\(SequencerBenchmark.format(seconds, 2)) s)"
        )
        print()
        print("baseline (same run):")
        print(
            "  live, closed loop: \(SequencerBenchmark.format(live.committedPerSecond, 1)) transactions/s committed (each on participant2's ledger)"
        )
        print(
            "  the sequencer stream alone (read and verified): \(SequencerBenchmark.format(Double(events) / readSeconds, 1)) events/s (\(SequencerBenchmark.format(readSeconds, 2)) s)"
        )
        print("load after: \(SequencerBenchmark.loadAverage())")
    }
}
