/// Why a view failed the model conformance check: what a validator reports
/// when it rejects with `FAILED_MODEL_CONFORMANCE_CHECK` (DESIGN.md §8).
public struct ConformanceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The stable reject reason id of a failed check.
    public static let reasonID = "FAILED_MODEL_CONFORMANCE_CHECK"

    /// The position of the view that does not conform.
    public let position: [Int]
    public let reason: Reason

    public init(position: [Int], reason: Reason) {
        self.position = position
        self.reason = reason
    }

    public enum Reason: Equatable, Sendable {
        /// Re-interpreting the view's root action failed (an authorization,
        /// an assertion, a contract that does not fit its template, …).
        case reinterpretationFailed(ContractError)
        /// The view contradicts itself: e.g. a create whose contract is not
        /// among its created contracts.
        case inconsistent(String)
        /// A field of the view is not what re-interpretation gives.
        case differs(field: String, received: String, recomputed: String)
        /// Re-interpretation gives a subview at `position` that was not
        /// provided.
        case missingSubview(position: [Int])
        /// A subview was provided where re-interpretation gives none.
        case unexpectedSubview(position: [Int])
        /// A provided subview is not the one its parent's hash commits to.
        case subviewHashMismatch(position: [Int])
        /// The data shown for a contract is not what its id was created
        /// from (its creation seed does not derive the id from it).
        case unauthenticatedContract(ContractID)
    }

    public var description: String {
        let view = "view \(positionText(position)) does not conform to the model: "
        switch reason {
        case .reinterpretationFailed(let error): return view + "re-interpreting it failed: \(error)"
        case .inconsistent(let message): return view + message
        case .differs(let field, let received, let recomputed):
            return view + "its \(field) differs: received \(received), re-interpretation gives \(recomputed)"
        case .missingSubview(let position):
            return view + "re-interpretation gives a subview at \(positionText(position)) that was not provided"
        case .unexpectedSubview(let position):
            return view + "a subview was provided at \(positionText(position)) but re-interpretation gives none there"
        case .subviewHashMismatch(let position):
            return view + "the subview provided at \(positionText(position)) is not the one its parent commits to"
        case .unauthenticatedContract(let id):
            return view + "the data it shows for contract \(id) is not what the id was created from"
        }
    }
}

/// The model conformance check a validating participant runs on the views
/// it receives (DESIGN.md §8 step 4): re-interpret the view's root action
/// from its action description and inputs, cut the result into views the
/// way the submitter must have, and compare with what was received, field
/// by field. Salts are not compared (they only blind hashes).
///
/// A participant receives a view together with all its subviews (whoever
/// may see an action sees its consequences), so it checks each view it
/// received whose parent it did not receive, passing that view's
/// descendants: the parent's re-interpretation fixes the subviews' actions,
/// which a check of each view alone would not.
///
/// Not checked here, but by the participant around it: that the root hash
/// chains (`MerkleProof`, `ReceivedView.rootHash`), that a root view's
/// `requiredAuthorizers` are among the submitter's `act_as`, and that the
/// input contracts are active.
public enum ModelConformance {
    /// Checks `view` and its `subviews` (all its descendants, in any order;
    /// positions say where each belongs) against `package`. `contracts`
    /// provides the input contracts: usually `declaredInputs(of:)` of the
    /// same views, or the participant's store.
    public static func check(
        view: View, subviews: [View] = [], package: Package, contracts: some ContractLookup,
        policy: ConfirmationPolicy = .signatory, limits: InterpreterLimits = InterpreterLimits()
    ) throws(ConformanceError) {
        try check(
            view: view, subviews: subviews, interpreter: Interpreter(packages: [package], limits: limits),
            contracts: contracts, policy: policy)
    }

    /// `check(view:subviews:package:contracts:policy:limits:)` with an
    /// interpreter already built.
    public static func check(
        view: View, subviews: [View] = [], interpreter: Interpreter, contracts: some ContractLookup,
        policy: ConfirmationPolicy = .signatory
    ) throws(ConformanceError) {
        var received: [[Int]: View] = [view.position: view]
        for subview in subviews {
            guard subview.position.count > view.position.count, subview.position.starts(with: view.position),
                received[subview.position] == nil
            else {
                throw ConformanceError(
                    position: subview.position, reason: .unexpectedSubview(position: subview.position))
            }
            received[subview.position] = subview
        }
        for got in [view] + subviews {
            let data = got.participantData
            for input in data.coreInputs where input.creationSeed != nil && !input.isAuthenticated {
                throw ConformanceError(position: got.position, reason: .unauthenticatedContract(input.id))
            }
            for output in data.createdCore where !output.id.authenticates(output.contract, seed: output.creationSeed) {
                throw ConformanceError(position: got.position, reason: .unauthenticatedContract(output.id))
            }
        }

        let transaction = try reinterpret(view, interpreter, contracts)
        let decomposition = Decomposition(transaction)
        var matched = 0
        for (index, shape) in decomposition.shapes.enumerated() {
            let position = view.position + shape.position.dropFirst()
            guard let got = received[position] else {
                throw ConformanceError(
                    position: Array(position.dropLast()), reason: .missingSubview(position: position))
            }
            matched += 1
            let common: ViewCommonData
            do throws(ViewError) {
                common = try decomposition.commonData(index, policy: policy)
            } catch {
                throw ConformanceError(position: position, reason: .inconsistent("\(error)"))
            }
            try compare(got.commonData, common, position)
            try compare(got.participantData, decomposition.participantData(index), position)
            guard got.subviewHashes.count == shape.subviews.count else {
                throw ConformanceError(
                    position: position,
                    reason: .differs(
                        field: "number of subviews", received: "\(got.subviewHashes.count)",
                        recomputed: "\(shape.subviews.count)"))
            }
            for number in shape.subviews.indices {
                let childPosition = position + [number]
                if let child = received[childPosition], child.hash != got.subviewHashes[number] {
                    throw ConformanceError(position: position, reason: .subviewHashMismatch(position: childPosition))
                }
            }
        }
        if matched != received.count {
            let extra = received.keys.filter { position in
                !decomposition.shapes.contains { view.position + $0.position.dropFirst() == position }
            }.min { $0.lexicographicallyPrecedes($1) }!
            throw ConformanceError(position: extra, reason: .unexpectedSubview(position: extra))
        }
    }

    /// The input contracts `views` declare whose creation seed proves their
    /// data, as a lookup for re-interpreting them. Inputs without a seed are
    /// left out: a validator must find those in its own store.
    public static func declaredInputs(of views: [View]) -> ContractStore {
        var store = ContractStore()
        for view in views {
            for input in view.participantData.coreInputs where input.isAuthenticated {
                store.insert(input.id, input.contract, seed: input.creationSeed)
            }
        }
        return store
    }

    /// The transaction `view`'s root action produces when interpreted again: its root is the
    /// view's action, its nodes those of the view and all its descendants. Nothing is compared
    /// with the view (that is `check`): a participant that validated the view rebuilds what it
    /// shows its parties as the transaction tree from this (`LedgerTree`).
    public static func reinterpret(view: View, interpreter: Interpreter, contracts: some ContractLookup)
        throws(ConformanceError) -> Transaction
    {
        try reinterpret(view, interpreter, contracts)
    }

    private static func reinterpret(_ view: View, _ interpreter: Interpreter, _ contracts: some ContractLookup)
        throws(ConformanceError) -> Transaction
    {
        let data = view.participantData
        func inconsistent(_ message: String) -> ConformanceError {
            ConformanceError(position: view.position, reason: .inconsistent(message))
        }
        let command: Command
        let seed: NodeSeed
        let authorizers: [Party]
        switch data.action {
        case .create(let id, let nodeSeed):
            guard let created = data.createdCore.first(where: { $0.id == id }) else {
                throw inconsistent("the contract \(id) of its create is not among its created contracts")
            }
            command = .create(created.contract.template, argument: created.contract.argument)
            seed = nodeSeed
            authorizers = created.contract.signatories
        case .exercise(let id, let template, let choice, let argument, let actors, let nodeSeed, _):
            command = .exercise(template, contract: id, choice: choice, argument: argument)
            seed = nodeSeed
            authorizers = actors
        case .fetch(let id, let actors):
            guard let input = data.coreInputs.first(where: { $0.id == id }) else {
                throw inconsistent("the fetched contract \(id) is not among its input contracts")
            }
            do throws(ContractError) {
                return try interpreter.interpretFetch(
                    input.contract.template, contract: id, authorizers: actors, contracts: contracts)
            } catch {
                throw ConformanceError(position: view.position, reason: .reinterpretationFailed(error))
            }
        }
        do throws(ContractError) {
            return try interpreter.interpret(command, nodeSeed: seed, authorizers: authorizers, contracts: contracts)
        } catch {
            throw ConformanceError(position: view.position, reason: .reinterpretationFailed(error))
        }
    }

    private static func compare(_ received: ViewCommonData, _ recomputed: ViewCommonData, _ position: [Int])
        throws(ConformanceError)
    {
        try same("informees", received.informees, recomputed.informees, position)
        try same("confirming parties", received.confirmingParties, recomputed.confirmingParties, position)
        try same("threshold", received.threshold, recomputed.threshold, position)
    }

    private static func compare(
        _ received: ViewParticipantData, _ recomputed: ViewParticipantData, _ position: [Int]
    ) throws(ConformanceError) {
        switch (received.action, recomputed.action) {
        case (.create(let id, let seed), .create(let id2, let seed2)):
            try same("created contract id", id, id2, position)
            try same("node seed", seed, seed2, position)
        case (
            .exercise(let id, let template, let choice, let argument, let actors, let seed, let consuming),
            .exercise(let id2, let template2, let choice2, let argument2, let actors2, let seed2, let consuming2)
        ):
            try same("exercised contract", id, id2, position)
            try same("template", template, template2, position)
            try same("choice", choice, choice2, position)
            try same("choice argument", argument, argument2, position)
            try same("actors", actors, actors2, position)
            try same("node seed", seed, seed2, position)
            try same("consuming flag", consuming, consuming2, position)
        case (.fetch(let id, let actors), .fetch(let id2, let actors2)):
            try same("fetched contract", id, id2, position)
            try same("actors", actors, actors2, position)
        default:
            throw ConformanceError(
                position: position,
                reason: .differs(
                    field: "kind of action", received: kind(received.action), recomputed: kind(recomputed.action)))
        }
        try same("input contracts", received.coreInputs.map(\.id), recomputed.coreInputs.map(\.id), position)
        for (got, expected) in zip(received.coreInputs, recomputed.coreInputs) {
            try same("input contract \(got.id)", got.contract, expected.contract, position)
            try same("consumed flag of input contract \(got.id)", got.consumed, expected.consumed, position)
        }
        try same("created contracts", received.createdCore.map(\.id), recomputed.createdCore.map(\.id), position)
        for (got, expected) in zip(received.createdCore, recomputed.createdCore) {
            try same("created contract \(got.id)", got.contract, expected.contract, position)
            try same(
                "consumed flag of created contract \(got.id)", got.consumedInCore, expected.consumedInCore, position)
            try same("creation seed of created contract \(got.id)", got.creationSeed, expected.creationSeed, position)
        }
        try same(
            "contracts created in subviews and archived here", received.createdInSubviewArchivedInCore,
            recomputed.createdInSubviewArchivedInCore, position)
    }

    private static func kind(_ action: ActionDescription) -> String {
        switch action {
        case .create: "create"
        case .exercise: "exercise"
        case .fetch: "fetch"
        }
    }

    private static func same<T: Equatable>(_ field: String, _ received: T, _ recomputed: T, _ position: [Int])
        throws(ConformanceError)
    {
        guard received != recomputed else { return }
        throw ConformanceError(
            position: position,
            reason: .differs(field: field, received: brief(received), recomputed: brief(recomputed)))
    }

    private static func brief(_ value: some Any) -> String {
        let text = String(describing: value)
        return text.count <= 300 ? text : text.prefix(300) + "…"
    }
}
