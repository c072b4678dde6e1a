public import Logging
public import WeftCrypto
public import WeftTransport
public import WeftWire

/// A member's connection to its domain through any of several sequencer nodes
/// (the seed's `connect_multi`): it authenticates at one, and when that one
/// fails it moves to the next, re-authenticates, retries the send, and resumes
/// the event stream from the counter after the last one delivered, so the
/// member sees every event exactly once.
///
/// A retried send reuses its message id: if the first attempt was sequenced
/// after all, the sequencer answers ALREADY_EXISTS, which here means success.
public actor SequencerConnection {
    public struct Endpoint: Sendable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public let security: RPCSecurity
        public init(host: String, port: Int, security: RPCSecurity) {
            self.host = host
            self.port = port
            self.security = security
        }
        public var description: String { "\(host):\(port)" }
    }

    public let member: String
    public let domain: String
    private let key: SigningPrivateKey
    private let sequencerKeys: [SigningPublicKey]
    private let endpoints: [Endpoint]
    private let configuration: RPCConfiguration
    private let logger: Logger
    private var current: (client: SequencerClient, endpoint: Int)?
    private var next = 0
    /// The connection being made when no sequencer is in use, which other calls wait for.
    private var connecting: Task<SequencerClient, any Error>?
    /// Counts `close` calls: a connection made while one came is closed at once, not kept (a
    /// later call connects again as usual).
    private var closings = 0
    /// The authentication renewing the current session, which other calls whose session ended wait for.
    private var renewal: Task<SequencerClient, any Error>?

    public init(
        member: String, domain: String, key: SigningPrivateKey, sequencerKeys: [SigningPublicKey], endpoints: [Endpoint],
        configuration: RPCConfiguration = .default, logger: Logger = Logger(label: "weft.sequencer.client")
    ) {
        precondition(!endpoints.isEmpty, "a member needs at least one sequencer")
        self.member = member
        self.domain = domain
        self.key = key
        self.sequencerKeys = sequencerKeys
        self.endpoints = endpoints
        self.configuration = configuration
        self.logger = logger
    }

    /// The sequencer in use, connecting (and authenticating) to the next one that answers.
    /// Calls that find no sequencer in use while one is being connected to wait for that one
    /// (a send and the event stream starting together opened a connection each, one left over).
    func client() async throws -> SequencerClient {
        if let current { return current.client }
        if let connecting { return try await connecting.value }
        let closingsAtStart = closings
        let connecting = Task { try await self.connectToNext(closingsAtStart: closingsAtStart) }
        self.connecting = connecting
        defer { if self.connecting == connecting { self.connecting = nil } }
        return try await connecting.value
    }

    private func connectToNext(closingsAtStart: Int) async throws -> SequencerClient {
        var failures: [String] = []
        for _ in 0..<endpoints.count {
            let index = next
            next = (next + 1) % endpoints.count
            let endpoint = endpoints[index]
            var rpc: RPCClient?
            do {
                let connected = try await RPCClient.connect(host: endpoint.host, port: endpoint.port, security: endpoint.security, configuration: configuration)
                rpc = connected
                let client = try await SequencerClient.authenticate(connected, member: member, key: key, domain: domain, sequencerKeys: sequencerKeys)
                // Closed while this connected: nobody would close the connection after.
                guard closings == closingsAtStart else { throw CancellationError() }
                current = (client, index)
                logger.info("connected to sequencer", metadata: ["sequencer": "\(endpoint)", "member": "\(member)"])
                return client
            } catch let error as RPCError where Self.refusedEverywhere(error) {
                await rpc?.close()
                throw error  // not allowed anywhere, or this key is no longer the member's: others say the same
            } catch {
                await rpc?.close()
                if closings != closingsAtStart { throw error }
                failures.append("\(endpoint): \(error)")
            }
        }
        throw RPCError(.unavailable, "no sequencer of the domain answered: \(failures.joined(separator: "; "))", errorID: Self.allUnavailable)
    }

    /// Refusals of the member's key itself (replaced in the topology, or not the one signing):
    /// every sequencer refuses it alike, until the node is given the member's new key.
    static let keyRefused: Set<String> = ["SEQUENCER_UNKNOWN_KEY", "SEQUENCER_BAD_SIGNATURE"]

    /// Whether every sequencer of the domain would refuse the member as `error` says: it is not
    /// allowed (not yet admitted, or disabled), or its key is refused.
    static func refusedEverywhere(_ error: RPCError) -> Bool {
        error.code == .permissionDenied || keyRefused.contains(error.errorID)
    }

    /// Whether `error` is worth a retry; forgets the sequencer in use when the connection
    /// itself is the problem (so the next attempt goes to the next sequencer).
    private func failed(_ client: SequencerClient, _ error: any Error) async -> Bool {
        guard let rpcError = error as? RPCError, [.unavailable, .unauthenticated, .cancelled, .deadlineExceeded].contains(rpcError.code) else {
            return false
        }
        if rpcError.errorID == "SEQUENCER_DATABASE_UNAVAILABLE" {
            // The sequencer is up, its database is not (a restart): wait a little, same sequencer.
            try? await Task.sleep(for: .milliseconds(100))
            return true
        }
        if rpcError.code == .unauthenticated, Self.sessionEnded.contains(rpcError.errorID), await renewed(client) {
            return true
        }
        if let current, current.client.rpc.channel === client.rpc.channel {
            logger.warning("sequencer connection failed; moving to the next", metadata: ["error": "\(error)", "member": "\(member)"])
            self.current = nil
            Task { await client.rpc.close() }
        }
        return true
    }

    /// A session that ended (its token expired, or the sequencer no longer knows it) is renewed
    /// on the same connection: closing it would cut the member's other calls on it, and a send
    /// cut after its batch was read has an unknown outcome. Returns whether `client`'s session
    /// is renewed (by this call or one before it); false leaves the connection to be given up.
    private func renewed(_ client: SequencerClient) async -> Bool {
        guard let current, current.client.rpc.channel === client.rpc.channel else { return true }  // moved on already
        if current.client.token != client.token { return true }  // renewed already
        if let renewal { return (try? await renewal.value) != nil }
        let member = member, key = key, domain = domain, sequencerKeys = sequencerKeys, endpoint = endpoints[current.endpoint]
        // Runs on this actor: the renewed session is in place before any caller waiting for it resumes.
        let renewal = Task { () async throws -> SequencerClient in
            let renewed = try await SequencerClient.authenticate(client.rpc, member: member, key: key, domain: domain, sequencerKeys: sequencerKeys)
            if let now = self.current, now.client.rpc.channel === client.rpc.channel {
                self.current = (renewed, now.endpoint)
            }
            return renewed
        }
        self.renewal = renewal
        defer { self.renewal = nil }
        do {
            _ = try await renewal.value
            logger.info("sequencer session renewed", metadata: ["sequencer": "\(endpoint)", "member": "\(member)"])
            return true
        } catch {
            logger.warning("renewing the sequencer session failed", metadata: ["error": "\(error)", "member": "\(member)"])
            return false
        }
    }

    /// Refusals that say the call's session is over, not the connection.
    static let sessionEnded: Set<String> = ["SEQUENCER_TOKEN_EXPIRED", "SEQUENCER_UNKNOWN_TOKEN", "SEQUENCER_KEY_REPLACED"]

    /// Sends `batch` under `messageID`, moving to another sequencer until one accepts it.
    ///
    /// When no sequencer answers at all (the only one is restarting), it waits and tries
    /// again until the batch's max sequencing time has passed — after that no sequencer could
    /// sequence it anyway — rather than failing at once: the caller would otherwise report a
    /// rejection for a request that a sequencer back a second later would have taken.
    /// `omitReceipt`: as `SequencerClient.send`.
    ///
    /// An attempt whose call failed after the batch may have reached a sequencer (a connection
    /// lost before the answer, a deadline) may have been sequenced: if the send then ends in an
    /// error, even a refusal of a later attempt (the member disabled meanwhile), it throws
    /// `SEQUENCER_SEND_OUTCOME_UNKNOWN` (`UNAVAILABLE`) instead, so the caller waits for its
    /// event stream rather than report a request that may yet commit as refused.
    public func send(
        _ batch: Weft.V1.Batch, messageID: String, maxSequencingTime: Int64? = nil, traceparent: String = "", omitReceipt: Bool = false
    ) async throws {
        let deadline = maxSequencingTime ?? SequencerWriter.now() + 60_000_000
        var attempt = 0
        var unavailable = 0
        var outcomeUnknown = false
        func failure(_ error: any Error) -> any Error {
            guard outcomeUnknown else { return error }
            logger.warning(
                "a send ended in an error after an attempt whose answer was lost; that attempt may have been sequenced",
                metadata: ["error": "\(error)", "member": "\(member)", "message_id": "\(messageID)"])
            return RPCError(
                .unavailable,
                "the send of \(messageID) ended with \(error) after an earlier attempt lost its answer, so that attempt may "
                    + "have been sequenced; the event stream shows it, or its max sequencing time passes without it",
                errorID: Self.outcomeUnknown)
        }
        while true {
            attempt += 1
            let client: SequencerClient
            do {
                client = try await self.client()
            } catch let error as RPCError where error.errorID == Self.allUnavailable {
                unavailable += 1
                guard SequencerWriter.now() < deadline else { throw failure(error) }
                if unavailable == 1 {
                    logger.warning(
                        "no sequencer of the domain answers; retrying the send until one does or its max sequencing time passes",
                        metadata: ["error": "\(error)", "member": "\(member)", "message_id": "\(messageID)"])
                }
                try await Task.sleep(for: Self.backoff(unavailable))
                continue
            } catch {
                throw failure(error)
            }
            unavailable = 0
            do {
                try await client.send(
                    batch, messageID: messageID, maxSequencingTime: deadline, traceparent: traceparent, omitReceipt: omitReceipt)
                return
            } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" && attempt > 1 {
                return  // an earlier attempt was sequenced after all
            } catch {
                guard await failed(client, error), attempt <= 100 else { throw failure(error) }
                // Retried. Refused before the batch was read or with its transaction rolled back
                // (unauthenticated, a connection going away or draining, a writer offline): not
                // sequenced. Any other failure may come after the batch was sequenced.
                if let refused = error as? RPCError,
                    refused.code == .unauthenticated || Self.refusedUnread.contains(refused.errorID)
                {
                    continue
                }
                outcomeUnknown = true
            }
        }
    }

    /// The error id of "no sequencer of the domain answered".
    static let allUnavailable = "SEQUENCER_ALL_UNAVAILABLE"

    /// Retryable errors of calls the server did not process, or whose transaction it rolled back.
    static let refusedUnread: Set<String> = ["RPC_GOAWAY", "RPC_SERVER_DRAINING", "SEQUENCER_WRITER_OFFLINE"]

    /// The error id of a send that ended in an error after an attempt that may have been
    /// sequenced (`send`).
    public static let outcomeUnknown = "SEQUENCER_SEND_OUTCOME_UNKNOWN"

    /// How long to wait after the `failures`-th time in a row that no sequencer answered:
    /// 50 ms doubling up to 2 s, so a restarting sequencer is found within moments without
    /// a storm of TLS handshakes at a domain that is down for longer.
    static func backoff(_ failures: Int) -> Duration {
        min(.milliseconds(50 << min(max(failures - 1, 0), 6)), .seconds(2))
    }

    /// The member's events from `counter` on, verified, across sequencer failures: each event
    /// once, in order, resuming after the last one delivered at whichever sequencer is next.
    public nonisolated func events(from counter: UInt64) -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error> {
        events(from: counter, failuresMax: 100)
    }

    /// `events(from:)`, giving up after `failuresMax` failures in a row without progress.
    ///
    /// Pull-based, as `SequencerClient.subscribe`: an event is read from the sequencer only when
    /// the consumer asks for the next one, and so is a reconnection.
    nonisolated func events(from counter: UInt64, failuresMax: Int) -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error> {
        let events = ResumingEvents(connection: self, from: counter, failuresMax: failuresMax)
        return AsyncThrowingStream(unfolding: { try await events.next() })
    }

    /// Whether a subscription that failed with `error` on `client` (nil: no sequencer could be
    /// had) is worth resuming.
    fileprivate func failedSubscription(_ error: any Error, on client: SequencerClient?) async -> Bool {
        // Not allowed (not yet admitted, or disabled), or the key refused: every sequencer says
        // the same, and asking again at once only costs them a TLS handshake each time. The
        // caller decides when to retry.
        if let rpcError = error as? RPCError, Self.refusedEverywhere(rpcError) { return false }
        guard let client else { return true }
        return await failed(client, error)
    }

    /// Acknowledges the member's events up to `timestamp` at the sequencer in use.
    public func acknowledge(upTo timestamp: Weft.V1.Timestamp) async throws {
        try await client().acknowledge(upTo: timestamp)
    }

    /// Closes the connection in use; one being made or renewed now is closed once it is made.
    public func close() async {
        closings += 1
        connecting?.cancel()
        connecting = nil  // a call after this one connects anew
        renewal?.cancel()
        let closing = current
        current = nil
        await closing?.client.rpc.close()
    }
}

/// The events of `SequencerConnection.events(from:failuresMax:)`, read one at a time as they are
/// asked for, resubscribing after a failure from the counter after the last one delivered. A
/// reference type, so that the stream's closure can keep the subscription's iterator; `next` is
/// called by one consumer at a time, which `ExclusiveIteration` checks.
private final class ResumingEvents: @unchecked Sendable {
    private let connection: SequencerConnection
    private let failuresMax: Int
    private var nextCounter: UInt64
    /// Failures in a row without an event delivered.
    private var failures = 0
    /// The subscription being read, and the session it was made in (nil: none yet, or it failed).
    private var subscription: AsyncThrowingStream<Weft.V1.SequencedEvent, any Error>.AsyncIterator?
    private var client: SequencerClient?
    /// Set once the stream ended or failed: it stays over.
    private var over = false
    private let iteration = ExclusiveIteration()

    init(connection: SequencerConnection, from counter: UInt64, failuresMax: Int) {
        self.connection = connection
        self.failuresMax = failuresMax
        nextCounter = counter
    }

    func next() async throws -> Weft.V1.SequencedEvent? {
        iteration.begin()
        defer { iteration.end() }
        while !over, !Task.isCancelled {
            do {
                if subscription == nil {
                    client = nil
                    let connected = try await connection.client()
                    client = connected
                    subscription = try connected.subscribe(from: nextCounter).makeAsyncIterator()
                }
                guard let event = try await subscription?.next() else {
                    over = true
                    subscription = nil
                    return nil
                }
                nextCounter = event.counter + 1
                failures = 0
                return event
            } catch {
                subscription = nil  // its call is over; dropping it releases it
                guard await connection.failedSubscription(error, on: client) else {
                    over = true
                    throw error
                }
                // A session that ended (its token's lifetime) and was renewed is no
                // failure: an idle member (no events to reset the count) meets one per
                // token lifetime for as long as it runs.
                if let rpcError = error as? RPCError, rpcError.code == .unauthenticated,
                    SequencerConnection.sessionEnded.contains(rpcError.errorID)
                {
                    continue
                }
                failures += 1
                // No sequencer answers at all: the caller (a participant, the mediator)
                // waits and resumes on its own, and learns that the domain is away now
                // rather than after a storm of handshakes.
                let noneAnswers = (error as? RPCError)?.errorID == SequencerConnection.allUnavailable
                guard failures <= failuresMax, !noneAnswers else {
                    over = true
                    throw error
                }
            }
        }
        over = true
        subscription = nil
        return nil
    }
}
