import CoreMetrics
import Foundation
import Logging
import WeftContracts
public import WeftCrypto
import WeftProtocol
import WeftSequencer
import WeftTransport
public import WeftTopology
import WeftWire

/// What the participant actor keeps for ACS commitments (docs/participant.md, "ACS
/// commitments"): the running per-group hashes, the last period computed, the time-proof
/// ticker and the narrowings in progress.
struct CommitmentRuntime {
    var tracker = CommitmentTracker()
    /// The end of the latest period computed (µs; 0 when none).
    var lastPeriodEnd: Int64 = 0
    /// The latest interval boundary a time proof was asked for, so that one is asked once.
    var lastTimeProof: Int64 = 0
    var ticker: Task<Void, Never>?
    var narrowings: [String: Narrowing] = [:]
    /// Whether the commitment sender runs (`sendUnsentCommitments`), and whether it was asked
    /// again meanwhile.
    var sending = false
    var sendAgain = false

    /// A narrowing this participant asked for: its own listing and the counter-participant's,
    /// each taken when processing the same request event.
    struct Narrowing {
        let counterParticipant: String
        var own: (asOf: SequencingTimestamp, groups: [StakeholderGroup: (digest: [UInt8], contracts: [ContractID: [UInt8]])])?
        var theirs: Weft.V1.CommitmentNarrowingResponse?
        var waiters: [CheckedContinuation<CommitmentInspection, any Error>] = []
        /// The outcome, kept when it came before anyone waited for it (the answer may be
        /// processed before the caller's wait begins).
        var result: CommitmentInspection?
    }
}

/// What `inspectCommitment` found: the stakeholder groups and contracts that differ between
/// this participant and a counter-participant, as of one sequencing time.
public struct CommitmentInspection: Sendable, Equatable {
    /// How a contract differs.
    public enum Kind: String, Sendable {
        /// Active here, not at the counter-participant.
        case missingThere = "missing_there"
        /// Active at the counter-participant, not here.
        case missingHere = "missing_here"
        /// Active at both with different data.
        case differentData = "different_data"
    }
    public struct Difference: Sendable, Equatable {
        public let contractID: String
        public let group: StakeholderGroup
        public let kind: Kind

        public init(contractID: String, group: StakeholderGroup, kind: Kind) {
            self.contractID = contractID
            self.group = group
            self.kind = kind
        }
    }
    /// The sequencing time both participants listed their shared contracts at.
    public let asOf: SequencingTimestamp
    public let groupsCompared: Int
    public let differingGroups: [StakeholderGroup]
    public let contracts: [Difference]
    /// The counter-participant listed group hashes only (too many contracts): ask again for
    /// the differing groups.
    public let contractsOmitted: Bool
}

extension ParticipantNode {
    /// Contracts one narrowing answer lists at most (≈ 100 bytes each, under the 4 MiB frame).
    static let narrowingContractsMax = 20_000

    var commitmentStore: CommitmentStore {
        CommitmentStore(database: store.database, participant: identity.id.description)
    }

    /// Builds the running state from the stored active contracts (the participant reads them
    /// all at start anyway, to hold its active contract set in memory) and starts the ticker.
    /// Built from the stored contracts, not kept aside, so that what peers compare is what
    /// this participant would act on: a contract changed in the database shows as a mismatch.
    func startCommitments() async throws {
        var tracker = CommitmentTracker()
        for contract in try await commitmentStore.activeContracts() {
            tracker.add(id: contract.id, stakeholders: contract.stakeholders, stored: contract.stored)
        }
        commitmentRuntime.tracker = tracker
        commitmentRuntime.lastPeriodEnd = try await commitmentStore.lastPeriodEnd()
        // Periods recorded before a crash or a stop whose commitments never reached the sequencer.
        sendUnsentCommitments()
        commitmentRuntime.ticker = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                await self?.askForTimeIfIdle()
                await self?.askForTimePastDeadlines()
                await self?.storeCursorIfIdle()
            }
        }
    }

    func stopCommitments() {
        commitmentRuntime.ticker?.cancel()
        commitmentRuntime.ticker = nil
        for narrowing in commitmentRuntime.narrowings.values {
            for waiter in narrowing.waiters { waiter.resume(throwing: ParticipantError.stopped) }
        }
        commitmentRuntime.narrowings = [:]
    }

    /// Follows a commit in the running state.
    func trackCommitments(_ effects: Effects) {
        for id in effects.archived { commitmentRuntime.tracker.remove(id: id) }
        for created in effects.created {
            commitmentRuntime.tracker.add(
                id: created.id, stakeholders: created.contract.stakeholders.map(\.id), stored: created.wire)
        }
    }

    /// The participants hosting any party of a group, by `snapshot`.
    func hosts(_ snapshot: TopologySnapshot) -> (StakeholderGroup) -> Set<String> {
        var cache: [StakeholderGroup: Set<String>] = [:]
        return { group in
            if let known = cache[group] { return known }
            var participants = Set<String>()
            for party in group.parties {
                guard let id = try? UniqueIdentifier(parsing: party) else { continue }
                for hosting in snapshot.hostingParticipants(of: id) where hosting.permission != .disabled {
                    participants.insert(hosting.participant.description)
                }
            }
            cache[group] = participants
            return participants
        }
    }

    /// The largest reconciliation boundary strictly before `micros`.
    /// (Boundaries are multiples of the interval since the epoch; sequencing times are after it.)
    static func boundary(before micros: Int64, interval: Int64) -> Int64 {
        max(0, micros - 1) / interval * interval
    }

    // MARK: - Periods

    /// Completes the period ending at the latest reconciliation boundary before `timestamp`
    /// (the event about to be processed), if the previous event came at or before it: the
    /// state now — before this event's effects — is the state at every time since the previous
    /// event, that boundary included. Computes, records and sends the commitments, and
    /// compares those received for it.
    func completePeriod(before timestamp: SequencingTimestamp) async throws {
        guard ready, let previous = cursor.lastTimestamp else { return }
        let snapshot = await topology.snapshot(at: previous.adding(micros: 1))
        guard let interval = snapshot.domainParameters?.reconciliationInterval?.micros, interval > 0 else { return }
        let end = Self.boundary(before: timestamp.microsSinceEpoch, interval: interval)
        guard end >= previous.microsSinceEpoch, end > commitmentRuntime.lastPeriodEnd else { return }
        try await drainWrites()  // the store changes in stream order
        let from = max(previous.microsSinceEpoch - 1, commitmentRuntime.lastPeriodEnd)
        let me = identity.id.description
        let own = commitmentRuntime.tracker.commitments(me: me, hosts: hosts(snapshot))
        let comparisons = try await commitmentStore.recordPeriod(from: from, to: end, own: own)
        commitmentRuntime.lastPeriodEnd = end
        // The stored cursor's time then passes the period's end, even if this event has no
        // effects of its own: a domain migration keeps the stored time, and the new domain's
        // first event must come after every period recorded here.
        storeCursorAfterEvent = true
        for comparison in comparisons { report(comparison) }
        guard !own.isEmpty else { return }
        logger.info(
            "ACS commitments computed",
            metadata: [
                LogKey.period: "\(from)..\(end)", "counter_participants": "\(own.keys.sorted().joined(separator: " "))",
            ])
        Counter(label: "weft_participant_commitments_sent_total").increment(by: own.count)
        sendUnsentCommitments()
    }

    /// Sends, oldest first, the commitments of every period the sequencer has not taken yet
    /// (`participant_sent_commitments.sent`), and marks each sent once the sequencer has taken
    /// it: a new period's, and any an earlier send lost (a crash or a stop before it reached the
    /// sequencer, a sequencer away past its max sequencing time). One sender at a time: asked
    /// while it runs, it goes over the unsent periods once more when it is done, so a backlog
    /// of periods (a catch-up, a replay) is sent once each, not once per period recorded.
    ///
    /// Each commitment travels in a batch of its own: the sequencer refuses a whole batch when
    /// one of its recipients is unknown or disabled when it is sequenced
    /// (`SEQUENCER_UNKNOWN_RECIPIENTS`, a deliver error), and a period's commitments are computed
    /// with the topology at its end — a counter-participant the domain manager disabled just
    /// after it would otherwise keep every other counter-participant from receiving that
    /// period's commitment, and their sent commitments for it unmatched for ever. So a period
    /// costs one send per counter-participant; periods come once per reconciliation interval.
    /// A commitment whose send fails is left for the next round; the others are still sent.
    /// Sending one again is harmless: its message id is the period's and the
    /// counter-participant's (`commitmentMessageID`), and the sequencer takes it once.
    func sendUnsentCommitments() {
        guard !commitmentSendsDropped else { return }
        guard !commitmentRuntime.sending else {
            commitmentRuntime.sendAgain = true
            return
        }
        commitmentRuntime.sending = true
        let (store, connection, logger) = (commitmentStore, connection, logger)
        let (key, me, domain) = (identity.signingKey, identity.id.description, domain.description)
        background { [weak self] in
            repeat {
                let periods: [CommitmentStore.UnsentPeriod]
                do {
                    periods = try await store.unsentPeriods()
                } catch {
                    logger.error("could not read the ACS commitments to send; they are sent with the next period's", metadata: ["error": "\(error)"])
                    periods = []
                }
                for period in periods {
                    var sent: [String] = []
                    var failed: [(counterParticipant: String, error: any Error)] = []
                    for (counter, digest) in period.commitments {
                        do {
                            let batch = try Self.commitmentBatch(
                                digest, to: counter, fromExclusive: period.fromExclusive, toInclusive: period.toInclusive,
                                sender: me, domain: domain, key: key)
                            let messageID = Self.commitmentMessageID(periodEndingAt: period.toInclusive, to: counter)
                            do {
                                try await connection.send(batch, messageID: messageID)
                            } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" {
                                // Sequenced before: by a send whose mark was lost.
                            }
                            // Taken, even if it is sequenced as a deliver error (a refused
                            // recipient): sending it again would be refused alike.
                            try await store.markSent(periodEndingAt: period.toInclusive, counterParticipant: counter)
                            sent.append(counter)
                        } catch {
                            failed.append((counter, error))
                            // No sequencer answers (a send retries up to a minute first): the
                            // others would wait as long each; they go in the next round.
                            if let refused = error as? RPCError,
                                [SequencerConnection.outcomeUnknown, "SEQUENCER_ALL_UNAVAILABLE"].contains(refused.errorID)
                            {
                                break
                            }
                        }
                    }
                    let range = "\(period.fromExclusive)..\(period.toInclusive)"
                    if !sent.isEmpty {
                        logger.info(
                            "ACS commitments sent",
                            metadata: [LogKey.period: "\(range)", "counter_participants": "\(sent.joined(separator: " "))"])
                    }
                    if let first = failed.first {
                        logger.error(
                            "ACS commitments not sent; they are sent again with the next period's, or at the next start",
                            metadata: [
                                LogKey.period: "\(range)",
                                "counter_participants": "\(failed.map(\.counterParticipant).joined(separator: " "))",
                                "error": "\(first.error)",
                            ])
                    }
                }
            } while await self?.commitmentsToSendAgain() == true
        }
    }

    /// Whether the sender was asked again while it ran (and then it goes on); else it is done.
    private func commitmentsToSendAgain() -> Bool {
        if commitmentRuntime.sendAgain {
            commitmentRuntime.sendAgain = false
            return true
        }
        commitmentRuntime.sending = false
        return false
    }

    /// The start of every ACS commitment batch's message id.
    static let commitmentMessageIDPrefix = "acs-commitments-"

    /// The message id of the batch of the commitment to `counterParticipant` for the period
    /// ending at `periodEnd`: the same at every attempt and after a restart, so the sequencer
    /// takes it once (another attempt is answered `SEQUENCER_DUPLICATE_MESSAGE_ID`).
    static func commitmentMessageID(periodEndingAt periodEnd: Int64, to counterParticipant: String) -> String {
        "\(commitmentMessageIDPrefix)\(periodEnd)-\(counterParticipant)"
    }

    /// The period end and counter-participant a commitment batch's message id names; nil for
    /// another message id. The counter-participant is nil for an id from before commitments
    /// were sent one per batch (`acs-commitments-<period end>`, a whole period's).
    static func commitmentMessage(_ messageID: String) -> (periodEnd: Int64, counterParticipant: String?)? {
        guard messageID.hasPrefix(commitmentMessageIDPrefix) else { return nil }
        let rest = messageID.dropFirst(commitmentMessageIDPrefix.count)
        let end = rest.prefix { $0 != "-" }
        guard let periodEnd = Int64(end) else { return nil }
        let counter = rest.dropFirst(end.count + 1)
        return (periodEnd, counter.isEmpty ? nil : String(counter))
    }

    /// The batch of one signed commitment, to its counter-participant alone.
    static func commitmentBatch(
        _ digest: [UInt8], to counter: String, fromExclusive: Int64, toInclusive: Int64, sender me: String, domain: String,
        key: SigningPrivateKey
    ) throws -> Weft.V1.Batch {
        guard let counterID = try? UniqueIdentifier(parsing: counter) else {
            throw ParticipantError.inconsistentStore("a sent commitment's counter-participant is not a participant id: \(counter)")
        }
        let commitment = Weft.V1.AcsCommitment(
            domain: domain, sender: me, counterParticipant: counter,
            fromExclusive: .init(microsSinceEpoch: fromExclusive), toInclusive: .init(microsSinceEpoch: toInclusive),
            commitment: digest)
        let signed = try ProtocolSigning.sign(Weft.V1.SignedContent(content: .acsCommitment(commitment)), with: key)
        return Weft.V1.Batch(envelopes: [
            Weft.V1.Envelope(
                content: try Weft.V1.EnvelopeContent(message: .signedMessage(signed)).serializedBytes(),
                recipients: [MemberID(role: .participant, identifier: counterID).description])
        ])
    }

    /// Reports a deliver error in this participant's stream if it answers one of its commitment
    /// batches (which match no command, so nothing else reports them). The sequencer took the
    /// batch and refused it, and the commitment stays marked sent: sending it again would be
    /// refused alike. `SEQUENCER_UNKNOWN_RECIPIENTS`: the counter-participant was not an enabled
    /// member when the batch was sequenced — typically disabled by the domain manager after the
    /// period's end, whose topology still counted it — so it never receives this period's
    /// commitment; nothing to do if it was disabled on purpose (it is counted out from the next
    /// period on). The other counter-participants' commitments travel in batches of their own.
    func reportRefusedCommitment(messageID: String, reasonID: String, message: String) {
        guard let refused = Self.commitmentMessage(messageID) else { return }
        Counter(label: "weft_participant_commitments_refused_total").increment()
        var metadata: Logger.Metadata = [
            "message_id": "\(messageID)", "error_id": "\(reasonID)", LogKey.reason: "\(message)",
        ]
        if let counter = refused.counterParticipant { metadata[LogKey.counterParticipant] = "\(counter)" }
        if reasonID == "SEQUENCER_UNKNOWN_RECIPIENTS" {
            logger.error(
                "the sequencer refused an ACS commitment: the counter-participant was not an enabled member when it was sequenced and does not receive this period's commitment; no action is needed if it was disabled",
                metadata: metadata)
        } else {
            logger.error(
                "the sequencer refused an ACS commitment: the counter-participant does not receive this period's commitment",
                metadata: metadata)
        }
    }

    /// Whether a signed message is an ACS commitment (rather than a verdict).
    static func isCommitment(_ message: Weft.V1.SignedProtocolMessage) -> Bool {
        if case .acsCommitment? = (try? ProtocolSigning.content(of: message))?.content { return true }
        return false
    }

    /// A received commitment: checked (addressed here, sent by the participant it names,
    /// signed with that participant's key at `timestamp`), stored and compared. One that fails
    /// a check is logged, counted and dropped.
    func receive(commitment message: Weft.V1.SignedProtocolMessage, from sender: String, at timestamp: SequencingTimestamp)
        async throws
    {
        func drop(_ reason: String) {
            Counter(label: "weft_participant_commitments_rejected_total").increment()
            logger.warning(
                "an ACS commitment was dropped", metadata: [LogKey.sender: "\(sender)", LogKey.reason: "\(reason)"])
        }
        guard let content = try? ProtocolSigning.content(of: message),
            case .acsCommitment(let commitment)? = content.content
        else { return drop("not an ACS commitment") }
        guard let senderID = try? UniqueIdentifier(parsing: commitment.sender),
            MemberID(role: .participant, identifier: senderID).description == sender
        else { return drop("the commitment names sender \(commitment.sender), the sequencer says \(sender)") }
        guard commitment.domain == domain.description, commitment.counterParticipant == identity.id.description else {
            return drop("addressed to \(commitment.counterParticipant) on \(commitment.domain)")
        }
        guard let from = commitment.fromExclusive?.microsSinceEpoch, let to = commitment.toInclusive?.microsSinceEpoch,
            from < to, commitment.commitment.count == 32
        else { return drop("no period, or a commitment that is not 32 bytes") }
        let snapshot = await topology.snapshot(at: timestamp)
        let keys = snapshot.signingKeys(of: MemberID(role: .participant, identifier: senderID))
        guard ProtocolSigning.verify(message, content: content, keys: keys) == .valid else {
            return drop(keys.isEmpty ? "unknown sender" : "the signature does not verify with the sender's key")
        }
        if let comparison = try await commitmentStore.recordReceived(
            counterParticipant: commitment.sender, from: from, to: to, commitment: commitment.commitment)
        {
            report(comparison)
        }
    }

    private func report(_ comparison: CommitmentStore.Comparison) {
        let metadata: Logger.Metadata = [
            LogKey.counterParticipant: "\(comparison.counterParticipant)",
            LogKey.period: "\(comparison.fromExclusive)..\(comparison.toInclusive)",
        ]
        if comparison.matches {
            logger.debug("ACS commitment matched", metadata: metadata)
            return
        }
        Counter(label: "weft_participant_commitment_mismatches_total").increment()
        logger.error(
            "ACS commitment mismatch: the contracts shared with the counter-participant differ; narrow it down with `weft commitments inspect --counter-participant …`",
            metadata: metadata.merging(
                [
                    "weft.participant.own_commitment": "\(hexText(comparison.own))",
                    "weft.participant.received_commitment": "\(hexText(comparison.received))",
                ], uniquingKeysWith: { $1 }))
    }

    /// On an idle domain no event marks the end of a period: when the wall clock has passed a
    /// boundary (by a quarter interval, at most 500 ms) that no event has passed yet, ask the
    /// sequencer for the time with an empty batch — its receipt completes the period. Only a
    /// participant with active contracts asks: one without has nothing to commit to.
    private func askForTimeIfIdle() async {
        guard ready, !commitmentRuntime.tracker.groups.isEmpty, let last = cursor.lastTimestamp else { return }
        guard let interval = await topology.snapshot(at: last.adding(micros: 1)).domainParameters?
            .reconciliationInterval?.micros, interval > 0
        else { return }
        let slack = min(interval / 4, 500_000)
        let boundary = Self.boundary(before: wallClockMicros() - slack + 1, interval: interval)
        guard boundary >= last.microsSinceEpoch, boundary > commitmentRuntime.lastTimeProof else { return }
        commitmentRuntime.lastTimeProof = boundary
        let (connection, logger, me) = (self.connection, self.logger, identity.id)
        background {
            do {
                try await connection.send(Weft.V1.Batch(envelopes: []), messageID: "time-proof-\(boundary)")
            } catch {
                logger.warning(
                    "asking the sequencer for the time failed; the period completes with the next event",
                    metadata: ["error": "\(error)", LogKey.participant: "\(me)"])
            }
        }
    }

    // MARK: - Narrowing

    /// Exchanges the contracts shared with `counterParticipant` through the sequencer (both
    /// list them as of the same request event) and reports those that differ. Waits at most
    /// `timeout` for the counter-participant's answer.
    public func inspectCommitment(
        with counterParticipant: UniqueIdentifier, groups: [StakeholderGroup] = [], timeout: Duration = .seconds(30)
    ) async throws -> CommitmentInspection {
        guard counterParticipant != identity.id,
            await topology.snapshot(at: now).participantState(counterParticipant) != nil
        else { throw ParticipantError.unknownCounterParticipant(counterParticipant.description) }
        let requestID = hexText(try Self.randomBytes(16))
        let request = Weft.V1.CommitmentNarrowingRequest(
            domain: domain.description, requester: identity.id.description,
            counterParticipant: counterParticipant.description, requestID: requestID,
            stakeholderGroups: groups.map(\.description))
        let envelope = Weft.V1.Envelope(
            content: try Weft.V1.EnvelopeContent(message: .commitmentNarrowingRequest(request)).serializedBytes(),
            recipients: [memberText, MemberID(role: .participant, identifier: counterParticipant).description])
        commitmentRuntime.narrowings[requestID] = .init(counterParticipant: counterParticipant.description)
        do {
            try await connection.send(Weft.V1.Batch(envelopes: [envelope]), messageID: "narrowing-\(requestID)")
        } catch {
            commitmentRuntime.narrowings[requestID] = nil
            throw error
        }
        guard let outcome = try await Self.within(timeout, { try await self.awaitNarrowing(requestID) }) else {
            cancelNarrowing(requestID)
            throw ParticipantError.narrowingTimedOut(counterParticipant: counterParticipant.description)
        }
        return outcome
    }

    private func awaitNarrowing(_ requestID: String) async throws -> CommitmentInspection {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard !Task.isCancelled, let narrowing = commitmentRuntime.narrowings[requestID] else {
                    return continuation.resume(throwing: CancellationError())
                }
                if let result = narrowing.result {
                    commitmentRuntime.narrowings[requestID] = nil
                    return continuation.resume(returning: result)
                }
                commitmentRuntime.narrowings[requestID]!.waiters.append(continuation)
            }
        } onCancel: {
            Task { await self.cancelNarrowing(requestID) }
        }
    }

    private func cancelNarrowing(_ requestID: String) {
        for waiter in commitmentRuntime.narrowings.removeValue(forKey: requestID)?.waiters ?? [] {
            waiter.resume(throwing: CancellationError())
        }
    }

    /// A narrowing request, processed by both participants at the same event: the requester
    /// takes its own listing, the counter-participant answers with its.
    func receive(narrowing request: Weft.V1.CommitmentNarrowingRequest, from sender: String, at timestamp: SequencingTimestamp)
        async
    {
        let me = identity.id.description
        guard request.domain == domain.description, let requester = try? UniqueIdentifier(parsing: request.requester),
            MemberID(role: .participant, identifier: requester).description == sender
        else {
            logger.warning("a narrowing request with a foreign domain or sender; ignored", metadata: [LogKey.sender: "\(sender)"])
            return
        }
        let snapshot = await topology.snapshot(at: timestamp)
        let only = Set(request.stakeholderGroups.map(StakeholderGroup.init(text:)))
        if request.requester == me {
            guard commitmentRuntime.narrowings[request.requestID] != nil else { return }  // asked before a restart
            let groups = commitmentRuntime.tracker.shared(
                with: request.counterParticipant, me: me, only: only, hosts: hosts(snapshot))
            commitmentRuntime.narrowings[request.requestID]!.own = (timestamp, groups)
            finishNarrowing(request.requestID)
        } else if request.counterParticipant == me {
            let groups = commitmentRuntime.tracker.shared(with: request.requester, me: me, only: only, hosts: hosts(snapshot))
            let omitted = groups.values.reduce(0) { $0 + $1.contracts.count } > Self.narrowingContractsMax
            let response = Weft.V1.CommitmentNarrowingResponse(
                domain: domain.description, sender: me, requester: request.requester, requestID: request.requestID,
                asOf: timestamp.wire,
                groups: groups.sorted { $0.key < $1.key }.map { group, entry in
                    Weft.V1.StakeholderGroupHash(
                        stakeholderGroup: group.description, hash: entry.digest,
                        contracts: omitted
                            ? []
                            : entry.contracts.sorted { $0.key < $1.key }.map {
                                Weft.V1.SharedContractHash(contractID: $0.key.description, hash: $0.value)
                            })
                }, contractsOmitted: omitted)
            logger.info(
                "answering a narrowing request",
                metadata: [LogKey.counterParticipant: "\(request.requester)", "groups": "\(groups.count)"])
            let (connection, logger) = (self.connection, self.logger)
            background {
                do {
                    let envelope = Weft.V1.Envelope(
                        content: try Weft.V1.EnvelopeContent(message: .commitmentNarrowingResponse(response))
                            .serializedBytes(), recipients: [sender])
                    try await connection.send(
                        Weft.V1.Batch(envelopes: [envelope]), messageID: "narrowing-response-\(request.requestID)")
                } catch {
                    logger.error("a narrowing answer was not sent", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// The counter-participant's answer to a narrowing this participant asked for.
    func receive(narrowing response: Weft.V1.CommitmentNarrowingResponse, from sender: String) {
        guard let narrowing = commitmentRuntime.narrowings[response.requestID],
            response.requester == identity.id.description, response.sender == narrowing.counterParticipant,
            let senderID = try? UniqueIdentifier(parsing: response.sender),
            MemberID(role: .participant, identifier: senderID).description == sender
        else {
            logger.warning("a narrowing answer for no request of ours; ignored", metadata: [LogKey.sender: "\(sender)"])
            return
        }
        commitmentRuntime.narrowings[response.requestID]!.theirs = response
        finishNarrowing(response.requestID)
    }

    private func finishNarrowing(_ requestID: String) {
        guard let narrowing = commitmentRuntime.narrowings[requestID], narrowing.result == nil, let own = narrowing.own,
            let theirs = narrowing.theirs
        else { return }
        var theirGroups: [StakeholderGroup: (digest: [UInt8], contracts: [String: [UInt8]])] = [:]
        for group in theirs.groups {
            theirGroups[StakeholderGroup(text: group.stakeholderGroup)] = (
                group.hash, Dictionary(group.contracts.map { ($0.contractID, $0.hash) }, uniquingKeysWith: { $1 })
            )
        }
        let all = Set(own.groups.keys).union(theirGroups.keys)
        let differing = all.filter { own.groups[$0]?.digest != theirGroups[$0]?.digest }.sorted()
        var differences: [CommitmentInspection.Difference] = []
        if !theirs.contractsOmitted {
            for group in differing {
                let mine = Dictionary(
                    (own.groups[group]?.contracts ?? [:]).map { ($0.key.description, $0.value) }, uniquingKeysWith: { $1 })
                let yours = theirGroups[group]?.contracts ?? [:]
                for id in Set(mine.keys).union(yours.keys).sorted() {
                    switch (mine[id], yours[id]) {
                    case (_?, nil): differences.append(.init(contractID: id, group: group, kind: .missingThere))
                    case (nil, _?): differences.append(.init(contractID: id, group: group, kind: .missingHere))
                    case (let a?, let b?) where a != b:
                        differences.append(.init(contractID: id, group: group, kind: .differentData))
                    default: break
                    }
                }
            }
        }
        let inspection = CommitmentInspection(
            asOf: own.asOf, groupsCompared: all.count, differingGroups: differing, contracts: differences,
            contractsOmitted: theirs.contractsOmitted)
        logger.info(
            "narrowing done",
            metadata: [
                LogKey.counterParticipant: "\(narrowing.counterParticipant)",
                "differing_groups": "\(differing.count)", "differing_contracts": "\(differences.count)",
            ])
        if narrowing.waiters.isEmpty {
            commitmentRuntime.narrowings[requestID]!.result = inspection
        } else {
            commitmentRuntime.narrowings[requestID] = nil
            for waiter in narrowing.waiters { waiter.resume(returning: inspection) }
        }
    }
}
