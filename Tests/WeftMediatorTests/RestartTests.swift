import Testing
import WeftContracts
import WeftMediator
import WeftStore
import WeftTopology
import WeftWire

/// A mediator started again on the same database loses no request and decides none twice.
@Suite(.sharedPostgres, .timeLimit(.minutes(5))) struct RestartTests {
    let t = TestDomain.requestTime

    @Test func aRestartedMediatorContinuesPendingRequestsAndNeverDecidesTwice() async throws {
        let harness = try await MediatorHarness("restart")
        let test = harness.test
        let url = try #require(SharedPostgres.url)
        let dvp = try test.dvp()
        let iou = try test.iouTransfer()
        let t2 = t.adding(micros: 500)
        let dvpID = RequestID(timestamp: t, rootHash: dvp.rootHash)
        let iouID = RequestID(timestamp: t2, rootHash: iou.rootHash)
        let approvals = try test.approvals(dvp)
        let half = approvals.count / 2

        // The first process registers both requests and counts half of the DvP's approvals.
        let first = try await harness.start()
        _ = try await first.register(request: try test.request(dvp, submitter: test.p2), snapshot: test.snapshot(at: t))
        _ = try await first.register(request: try test.request(iou, at: t2), snapshot: test.snapshot(at: t2))
        for (index, approval) in approvals.prefix(half).enumerated() {
            #expect(
                try await first.receive(
                    response: approval, at: t.adding(micros: Int64(index + 1)), snapshot: test.snapshot(at: t))
                    == .counted(dvpID))
        }

        // A new process on the same database: both requests pending, the counted approvals kept.
        let database2 = PostgresDatabase(url: url, maximumConnections: 2)
        let second = try await harness.start(database: database2)
        #expect(await second.pendingRequests == [dvpID, iouID])
        #expect(
            try await second.receive(response: approvals[0], at: t.adding(micros: 900), snapshot: test.snapshot(at: t))
                == .duplicate(dvpID))
        #expect(
            try await second.register(
                request: try test.request(dvp, submitter: test.p2), snapshot: test.snapshot(at: t))
                == .alreadyRegistered(dvpID))
        var last: ResponseOutcome?
        for (index, approval) in approvals.dropFirst(half).enumerated() {
            last = try await second.receive(
                response: approval, at: t.adding(micros: Int64(1_000 + index)), snapshot: test.snapshot(at: t))
        }
        let verdict = try #require(last?.verdict)
        #expect(last == .decided(verdict) && verdict.isApproved)

        // The first process, still running on the old state, cannot decide the request again:
        // the store hands it the verdict that stands.
        let stale = try await first.receive(
            response: approvals[half], at: t.adding(micros: 2_000), snapshot: test.snapshot(at: t))
        #expect(stale == .alreadyDecided(verdict))

        // A third process: only the IOU is pending; the DvP's verdict is the stored one, byte for byte.
        let database3 = PostgresDatabase(url: url, maximumConnections: 2)
        let third = try await harness.start(database: database3)
        #expect(await third.pendingRequests == [iouID])
        let replayed = try await third.register(
            request: try test.request(dvp, submitter: test.p2), snapshot: test.snapshot(at: t))
        #expect(replayed == .alreadyDecided(verdict))
        #expect(try replayed.verdict?.message.serializedBytes() == (try verdict.message.serializedBytes()))
        #expect(
            try await third.receive(
                response: approvals.last!, at: t.adding(micros: 3_000), snapshot: test.snapshot(at: t))
                == .alreadyDecided(verdict))

        // The IOU's timeout still fires after the restart, once.
        let deadline = t2.adding(micros: TestDomain.responseTimeoutMicros)
        let timedOut = try await third.timeouts(now: deadline.adding(micros: 1))
        #expect(timedOut.map(\.request) == [iouID])
        #expect(timedOut.first?.reasonID == RejectReason.timedOut)
        let database4 = PostgresDatabase(url: url, maximumConnections: 2)
        let fourth = try await harness.start(database: database4)
        #expect(await fourth.pendingRequests.isEmpty)
        #expect(try await fourth.timeouts(now: deadline.adding(micros: 2)).isEmpty)
        #expect(
            try await fourth.register(request: try test.request(iou, at: t2), snapshot: test.snapshot(at: t2))
                == .alreadyDecided(timedOut[0]))

        // Verdicts wait in the outbox until delivered.
        #expect(try await fourth.store.undeliveredVerdicts().map(\.request) == [dvpID, iouID])
        try await fourth.store.markDelivered(t)
        #expect(try await fourth.store.undeliveredVerdicts() == [timedOut[0]])

        for database in [harness.store.database, database2, database3, database4] { await database.shutdown() }
    }

    @Test func aStoreNeedsItsMigrationsOnceAndAMediatorRefusesToStartWithout() async throws {
        let url = try #require(SharedPostgres.url)
        let test = try TestDomain(mediatorName: "mediator-migrations")
        let database = PostgresDatabase(url: url, maximumConnections: 1)
        let store = MediatorStore(database: database, mediator: test.mediator.member)
        // Tests of this suite share the server, so another may have migrated it already.
        _ = try await store.migrate()
        #expect(try await store.migrate() == [])
        let status = try await database.withConnection { try MediatorStore.migrator.status($0) }
        #expect(status.applied == [1, 2, 3, 4, 5, 6] && status.isCurrent)
        _ = try await Mediator.start(store: store, domain: test.domain, signingKey: test.mediator.signing)
        await database.shutdown()

        // On a database without the mediator schema, a mediator does not start.
        let fresh = "mediator_unmigrated_\(UInt32.random(in: 0...UInt32.max))"
        _ = try PostgresConnection(url: url).execute("CREATE DATABASE \(fresh)")
        let other = PostgresDatabase(url: Self.url(url, database: fresh), maximumConnections: 1)
        await #expect(throws: MigrationError.pending(component: "mediator", versions: [1, 2, 3, 4, 5, 6])) {
            try await Mediator.start(
                store: MediatorStore(database: other, mediator: test.mediator.member), domain: test.domain,
                signingKey: test.mediator.signing)
        }
        await other.shutdown()
        _ = try PostgresConnection(url: url).execute("DROP DATABASE \(fresh)")
    }

    /// `url` with its database name replaced.
    static func url(_ url: String, database: String) -> String {
        guard let query = url.firstIndex(of: "?") else { return Self.replacingPath(url, database) }
        return Self.replacingPath(String(url[..<query]), database) + url[query...]
    }

    private static func replacingPath(_ url: String, _ database: String) -> String {
        guard let scheme = url.range(of: "://"), let slash = url[scheme.upperBound...].firstIndex(of: "/") else {
            return url + "/" + database
        }
        return url[..<slash] + "/" + database
    }
}

/// A verdict's submission is the same on every attempt within a window, and one that can still
/// be sequenced however long after its decision it is sent.
@Suite struct VerdictSubmissionTests {
    let request = RequestID(timestamp: TestDomain.requestTime, rootHash: Digest32([UInt8](repeating: 7, count: 32))!)
    let window: Int64 = 600_000_000
    let decided: Int64 = 1_000_000_000_000

    func submission(after elapsed: Int64) -> (messageID: String, maxSequencingTime: Int64) {
        MediatorDriver.verdictSubmission(request, decidedAt: decided, now: decided + elapsed, window: window)
    }

    @Test func onTimeTheFirstWindowUnderTheRequestsMessageID() {
        let first = submission(after: 0)
        #expect(first.messageID == MediatorDriver.verdictMessageID(request))
        #expect(first.maxSequencingTime == decided + window)
        // A re-send after a restart in the same window: the same submission, which the sequencer
        // refuses as a duplicate if the first one was sequenced.
        #expect(submission(after: window / 2 - 1) == first)
    }

    @Test func lateAWindowWithAtLeastHalfOfItLeftUnderAnotherMessageID() {
        for elapsed: Int64 in [window / 2, window - 1, window, 3 * window / 2 - 1, 3 * window / 2, 25 * window + 12_345] {
            let late = submission(after: elapsed)
            let left = late.maxSequencingTime - (decided + elapsed)
            #expect(left >= window / 2 && left <= 3 * window / 2, "elapsed \(elapsed): \(left) µs left")
            let k = (late.maxSequencingTime - decided) / window - 1
            #expect(k >= 1 && late.messageID == "\(MediatorDriver.verdictMessageID(request))-\(k)")
        }
        // Attempts within one late window agree; successive windows differ.
        #expect(submission(after: 2 * window) == submission(after: 2 * window + window / 4))
        #expect(submission(after: 2 * window).messageID != submission(after: 3 * window).messageID)
    }

    @Test func neverSequencedAfterTheRequestsDecisionTime() {
        let decisionTime = decided + 90_000_000
        let send = { (elapsed: Int64) in
            MediatorDriver.verdictSubmission(
                request, decidedAt: decided, now: decided + elapsed, window: window, decisionTime: decisionTime)
        }
        // Before the decision time: the window's message id, its max sequencing time cut to it.
        let onTime = send(0)
        #expect(onTime?.messageID == MediatorDriver.verdictMessageID(request))
        #expect(onTime?.maxSequencingTime == decisionTime)
        #expect(send(89_999_999)?.maxSequencingTime == decisionTime)
        // From the decision time on, nothing to send: participants reject the request themselves.
        #expect(send(90_000_000) == nil)
        #expect(send(25 * window) == nil)
        // A decision time later than the window leaves the window's time as it was.
        let far = MediatorDriver.verdictSubmission(
            request, decidedAt: decided, now: decided, window: window, decisionTime: decided + 10 * window)
        #expect(far?.maxSequencingTime == decided + window)
        // Without domain parameters (no decision time), the windows alone.
        #expect(
            MediatorDriver.verdictSubmission(request, decidedAt: decided, now: decided + 25 * window, window: window, decisionTime: nil)?
                .maxSequencingTime == submission(after: 25 * window).maxSequencingTime)
    }
}
