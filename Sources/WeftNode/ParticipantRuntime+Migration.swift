import Logging
import WeftCrypto
import WeftParticipant
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

/// Domain migration (`weft repair migrate-domain OLD NEW`, docs/operator-guide.md §7.3): the
/// domain's sequencer backend is lost, every participant still has its database, and the
/// operators move their participants to a new domain one by one.
///
/// A participant keeps what it holds — active contracts, ledger, offsets, packages, parties'
/// display names — and swaps its domain connection: it is onboarded on the new domain first
/// (nothing changes if that fails), then, in one database transaction, the old connection is
/// replaced by the new one, what the old domain can no longer decide is rejected and the
/// stream position goes back to the new domain's counter 0; then the node starts on the new
/// domain and hosts its parties there again (topology is per domain). Each step can be
/// repeated: a call after a crash, or a restart, finishes what is left.
extension ParticipantRuntime {
    func migrate(from fromAlias: String, to toAlias: String, urls: [String], rootCertificatePEM: String) async throws
        -> Weft.V1.MigrateDomainResponse
    {
        guard !fromAlias.isEmpty, !toAlias.isEmpty, !urls.isEmpty else {
            throw RPCError(
                .invalidArgument, "give the alias of the domain to leave, an alias for the new one and at least one of its sequencer URLs",
                errorID: "PARTICIPANT_MIGRATE_ARGUMENTS")
        }
        let stored = try await connections.load()
        if let current = stored.first(where: { $0.alias == toAlias }),
            let recorded = try await store.domainMigration(to: current.domain)
        {
            // Asked again after the switch (the first call failed or timed out while starting
            // on the new domain or hosting the parties): finish it.
            if connected?.domain != current.domain { try await start(current) }
            try await hostPartiesAgain(recorded)
            let hosted = (try? await partiesHosted(on: recorded.fromDomain)) ?? []
            return Self.response(recorded, notHosted: foreignParties(hosted), resumed: true)
        }
        guard let old = stored.first(where: { $0.alias == fromAlias }) else {
            throw RPCError(
                .notFound, "no domain connection named \(fromAlias); `weft participant domains` lists them",
                errorID: "PARTICIPANT_UNKNOWN_DOMAIN")
        }
        let new = try await onboard(alias: toAlias, urls: urls, rootCertificatePEM: rootCertificatePEM)
        guard new.domain != old.domain else {
            throw RPCError(
                .failedPrecondition,
                "\(urls.joined(separator: ", ")) serves \(old.domain), the domain this participant is connected to as \(fromAlias): a domain whose sequencers are back needs no migration (restart the participant or connect again); migrate to a new domain with a new sequencer database",
                errorID: "PARTICIPANT_MIGRATION_SAME_DOMAIN")
        }
        let hosted = try await partiesHosted(on: old.domain)
        let own = hosted.filter { $0.party.namespace == identity.id.namespace }
        await stop()
        let (store, participant) = (self.store, identity.id.description)
        let migration: ParticipantStore.DomainMigration
        do {
            (migration, _) = try await database.transaction { connection in
                let switched = try store.switchDomain(
                    from: old.domain, to: new.domain,
                    parties: own.map { ParticipantStore.PartyToHost(party: $0.party.description, permission: $0.permission) },
                    on: connection)
                try DomainConnectionStore.remove(alias: fromAlias, participant: participant, on: connection)
                try DomainConnectionStore.save(new, participant: participant, on: connection)
                return switched
            }
        } catch {
            // Nothing was switched: the node goes on with the old connection, as it was.
            logger.error("the domain migration failed before the switch; nothing changed", metadata: ["error": "\(error)"])
            try? await start(old)
            throw error
        }
        logger.warning(
            "participant migrated to a new domain: it holds its contracts and ledger there; what the old domain had not decided is rejected",
            metadata: [
                "from_domain": "\(migration.fromDomain)", "to_domain": "\(migration.toDomain)", "from_alias": "\(fromAlias)",
                "to_alias": "\(toAlias)", "weft.participant.active_contracts": "\(migration.activeContracts)",
                "weft.participant.ledger_end": "\(migration.ledgerEnd)",
                "weft.participant.requests_abandoned": "\(migration.requestsAbandoned)",
                "weft.participant.commands_rejected": "\(migration.commandsRejected)",
                "weft.participant.old_next_counter": "\(migration.fromNextCounter)",
            ])
        try await start(new)
        try await hostPartiesAgain(migration)
        return Self.response(migration, notHosted: foreignParties(hosted), resumed: false)
    }

    /// After a restart: finishes hosting the parties of a migration to the stored domain.
    func finishMigration(of settings: DomainConnectionSettings) async {
        do {
            guard let migration = try await store.domainMigration(to: settings.domain), !migration.partiesHosted else { return }
            try await hostPartiesAgain(migration)
        } catch {
            logger.error(
                "the parties of the domain migration are not hosted on the new domain yet; run `weft repair migrate-domain` again",
                metadata: ["to_domain": "\(settings.domain)", "error": "\(error)"])
        }
    }

    /// Hosts the migration's parties on the new domain (each once its hosting shows in the
    /// participant's topology) and records it.
    private func hostPartiesAgain(_ migration: ParticipantStore.DomainMigration) async throws {
        guard let node, let ledgerAPI, connected?.domain == migration.toDomain else {
            throw RPCError(
                .unavailable, "the participant is not running on \(migration.toDomain); restart it and run the migration again",
                errorID: "PARTICIPANT_NOT_CONNECTED")
        }
        guard await node.waitUntilReady(within: .seconds(60)) else {
            throw RPCError(
                .unavailable,
                "the participant has not received the topology of \(migration.toDomain) within 60 s; check that its sequencers run and that the domain owner admitted this participant, then run the migration again",
                errorID: "PARTICIPANT_MIGRATION_NOT_READY")
        }
        if !migration.partiesHosted {
            for party in migration.parties {
                try await ledgerAPI.hostAgain(try UniqueIdentifier(parsing: party.party), permission: party.permission)
            }
            try await store.markPartiesHosted(toDomain: migration.toDomain)
            logger.info(
                "parties hosted on the new domain",
                metadata: ["to_domain": "\(migration.toDomain)", "parties": "\(migration.parties.map(\.party))"])
        }
    }

    /// Of `hosted`, the parties not in this participant's namespace: it cannot host them
    /// again, their owners must.
    private func foreignParties(_ hosted: [PartyHosting]) -> [String] {
        hosted.filter { $0.party.namespace != identity.id.namespace }.map(\.party.description)
    }

    /// The parties hosted on this participant in the topology of `domainID` as stored here.
    private func partiesHosted(on domainID: String) async throws -> [PartyHosting] {
        let domain = try UniqueIdentifier(parsing: domainID)
        let topology = MemberTopology(
            domain: domain, store: TopologyStore(database: database, domain: domain, member: identity.member, logger: logger),
            logger: logger)
        try await topology.start()
        return await topology.snapshot(at: SequencingTimestamp(microsSinceEpoch: .max)).hostedParties(on: identity.id)
    }

    private static func response(_ migration: ParticipantStore.DomainMigration, notHosted: [String], resumed: Bool)
        -> Weft.V1.MigrateDomainResponse
    {
        .init(
            fromDomain: migration.fromDomain, toDomain: migration.toDomain, activeContracts: UInt64(migration.activeContracts),
            ledgerEnd: UInt64(migration.ledgerEnd), requestsAbandoned: UInt64(migration.requestsAbandoned),
            commandsRejected: UInt64(migration.commandsRejected), parties: migration.parties.map(\.party),
            partiesNotHosted: notHosted, resumed: resumed)
    }
}
