public import WeftWire
import WeftCrypto

/// A committed transaction as the Ledger API's transaction trees show it (Daml's tree form):
/// every create and exercise a party is an informee of, linked by `child_event_ids`.
///
/// A participant builds the tree from the views it validated: each top view it received is
/// re-interpreted (`ModelConformance.reinterpret`), and the nodes any of its
/// hosted parties see become events, stored once per transaction with those parties as
/// witnesses. Reading a tree for some requested parties then keeps the events they witness
/// (`LedgerTree.project`). Fetches are not events, as in Daml.
///
/// Event ids are `<transaction id>:<24 hex digits>`, derived from the node's seed
/// (`HASH_PURPOSE_LEDGER_EVENT_ID`), so every participant names a node the same way although
/// each sees a different part of the transaction, and the id reveals nothing of the seed
/// (children's seeds and contract ids derive from it).
public enum LedgerTree {
    /// The event id of the create or exercise with `seed` in transaction `transactionID`.
    public static func eventID(transactionID: String, seed: NodeSeed) -> String {
        var hasher = PurposeHasher(.ledgerEventID)
        hasher.append(seed.digest.bytes)
        let digest = hasher.finalize().digest
        var hex = ""
        hex.reserveCapacity(24)
        for byte in digest.prefix(12) {
            let digits = Array("0123456789abcdef".utf8)
            hex.unicodeScalars.append(Unicode.Scalar(digits[Int(byte >> 4)]))
            hex.unicodeScalars.append(Unicode.Scalar(digits[Int(byte & 0x0f)]))
        }
        return "\(transactionID):\(hex)"
    }

    /// The events of `transactions` (the re-interpreted top views, in view order) that parties
    /// `sees` admits are informees of, in pre-order, each with those parties as witnesses and
    /// with the children that are themselves events here. `packages` label records.
    public static func events(
        of transactions: [Transaction], transactionID: String, packages: [Package], sees: (Party) -> Bool
    ) -> [Weft.V1.TreeEvent] {
        var index: [PackageID: Package] = [:]
        for package in packages { index[package.id] = package }
        let labels = RecordLabels(packages: index)
        var events: [Weft.V1.TreeEvent] = []
        for transaction in transactions {
            // Ids of the nodes that become events, so that children lists name only those.
            var ids = [String?](repeating: nil, count: transaction.nodes.count)
            var witnesses = [[String]](repeating: [], count: transaction.nodes.count)
            for (number, node) in transaction.nodes.enumerated() {
                guard let seed = node.seed else { continue }  // a fetch
                if case .fetch = node.action { continue }
                let seen = node.informees.filter(sees).map(\.id)
                guard !seen.isEmpty else { continue }
                ids[number] = eventID(transactionID: transactionID, seed: seed)
                witnesses[number] = seen
            }
            for (number, node) in transaction.nodes.enumerated() {
                guard let id = ids[number] else { continue }
                switch node.action {
                case .create(let create):
                    let wire = create.instance.wire(create.contractID, labels, salt: nil)
                    events.append(
                        .init(
                            kind: .created(
                                .init(
                                    eventID: id, contractID: create.contractID.description, templateID: wire.templateID,
                                    createArguments: wire.arguments, signatories: wire.signatories,
                                    observers: wire.observers, witnessParties: witnesses[number]))))
                case .exercise(let exercise):
                    let template = exercise.contract.template
                    events.append(
                        .init(
                            kind: .exercised(
                                .init(
                                    eventID: id, contractID: exercise.contractID.description,
                                    templateID: .init(packageID: template.package.description, templateName: template.name),
                                    choice: exercise.choice,
                                    choiceArgument: exercise.argument.wire(
                                        labels: labels.parameters(template, exercise.choice)),
                                    actingParties: exercise.actingParties.map(\.id), consuming: exercise.consuming,
                                    witnessParties: witnesses[number],
                                    childEventIDs: exercise.children.compactMap { ids[$0] },
                                    exerciseResult: exercise.result.wire()))))
                case .fetch: continue
                }
            }
        }
        return events
    }

    /// `events` as `parties` see them: the events one of them witnesses, with only those
    /// parties as witnesses and only such events as children; the roots are the events whose
    /// parent is not among them (as in Daml, an event under an action the parties do not see
    /// becomes a root).
    public static func project(_ events: [Weft.V1.TreeEvent], to parties: Set<String>) -> (
        events: [Weft.V1.TreeEvent], roots: [String]
    ) {
        var kept: [Weft.V1.TreeEvent] = []
        var keptIDs = Set<String>()
        for event in events {
            switch event.kind {
            case .created(var created)?:
                created.witnessParties = created.witnessParties.filter(parties.contains)
                guard !created.witnessParties.isEmpty else { continue }
                keptIDs.insert(created.eventID)
                kept.append(.init(kind: .created(created)))
            case .exercised(var exercised)?:
                exercised.witnessParties = exercised.witnessParties.filter(parties.contains)
                guard !exercised.witnessParties.isEmpty else { continue }
                keptIDs.insert(exercised.eventID)
                kept.append(.init(kind: .exercised(exercised)))
            case nil: continue
            }
        }
        var children = Set<String>()
        for index in kept.indices {
            guard case .exercised(var exercised)? = kept[index].kind else { continue }
            exercised.childEventIDs = exercised.childEventIDs.filter(keptIDs.contains)
            children.formUnion(exercised.childEventIDs)
            kept[index] = .init(kind: .exercised(exercised))
        }
        let roots = kept.compactMap { event -> String? in
            let id: String
            switch event.kind {
            case .created(let created)?: id = created.eventID
            case .exercised(let exercised)?: id = exercised.eventID
            case nil: return nil
            }
            return children.contains(id) ? nil : id
        }
        return (kept, roots)
    }
}
