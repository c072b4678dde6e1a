// Model conformance: every view, received over the wire and re-interpreted
// from its own action description and inputs, equals the original; a view
// altered in any field fails with a reason, also when the submitter keeps
// every hash consistent.

import Testing
import WeftContracts
import WeftWire

/// The views of `views` as a validator receives them: each through its own
/// serialized view tree.
private func received(_ views: TransactionViews) throws -> [View] {
    try views.views.indices.map { index in
        try ReceivedView(try Weft.V1.ViewTree(serializedBytes: try views.viewTree(index).serializedBytes())).view
    }
}

/// `view` and its descendants, from `all` (in `views`' order).
private func subtree(_ views: TransactionViews, _ index: Int, _ all: [View]) -> (View, [View]) {
    (all[index], views.descendants(of: index).map { all[$0] })
}

/// `value` changed, keeping its type where it has one to keep.
private func altered(_ value: Value) -> Value {
    switch value {
    case .unit: .int(1)
    case .bool(let flag): .bool(!flag)
    case .int(let number): .int(number &+ 1)
    case .decimal(let number): .decimal(number.adding(FixedDecimal(1))!)
    case .text(let text): .text(text + "!")
    case .party(let someone): .party(someone == carol ? alice : carol)
    case .time(let time): .time(time + 1)
    case .contractID(let id): .contractID(id == otherID ? anotherID : otherID)
    case .list(let elements): .list(elements + elements.prefix(1))
    case .record(let fields):
        fields.isEmpty ? .record([.int(1)]) : .record([altered(fields[0])] + fields.dropFirst())
    }
}

/// A contract with its argument's first field changed that keeps its
/// stakeholders (an issuer or bank changed would change the signatories,
/// which the interpreter also refuses, but less interestingly).
private func altered(_ contract: ContractInstance) -> ContractInstance {
    guard case .record(let fields) = contract.argument else { return contract }
    // The last field that is not a party: an amount, a price, a contract id.
    let index = fields.lastIndex { if case .party = $0 { false } else { true } } ?? 0
    var changed = fields
    changed[index] = altered(fields[index])
    return ContractInstance(
        template: contract.template, argument: .record(changed), signatories: contract.signatories,
        observers: contract.observers)
}

enum Alteration: String, CaseIterable, Sendable {
    case argument, actors, createdContract, inputContract, informees, threshold
}

/// `data` with one field altered; nil when the view has no such field.
private func alter(_ view: View, _ alteration: Alteration) -> View? {
    let data = view.participantData
    let commonData = view.commonData
    func participant(
        action: ActionDescription? = nil, inputs: [CoreInput]? = nil, created: [CreatedContract]? = nil
    ) -> View {
        View(
            position: view.position, commonData: commonData,
            participantData: ViewParticipantData(
                action: action ?? data.action, coreInputs: inputs ?? data.coreInputs,
                createdCore: created ?? data.createdCore,
                createdInSubviewArchivedInCore: data.createdInSubviewArchivedInCore, salt: data.salt),
            subviewHashes: view.subviewHashes)
    }
    func common(informees: [Party]? = nil, threshold: Int? = nil) -> View {
        View(
            position: view.position,
            commonData: ViewCommonData(
                informees: informees ?? commonData.informees, confirmingParties: commonData.confirmingParties,
                threshold: threshold ?? commonData.threshold, salt: commonData.salt),
            participantData: data, subviewHashes: view.subviewHashes)
    }
    switch alteration {
    case .argument:
        guard
            case .exercise(let id, let template, let choice, let argument, let actors, let seed, let consuming) =
                data.action
        else { return nil }
        return participant(
            action: .exercise(
                contract: id, template: template, choice: choice, argument: altered(argument), actors: actors,
                seed: seed,
                consuming: consuming))
    case .actors:
        switch data.action {
        case .exercise(let id, let template, let choice, let argument, let actors, let seed, let consuming):
            return participant(
                action: .exercise(
                    contract: id, template: template, choice: choice, argument: argument,
                    actors: (actors + [actors.contains(carol) ? dave : carol]).sorted(), seed: seed,
                    consuming: consuming))
        case .fetch(let id, let actors):
            return participant(action: .fetch(contract: id, actors: (actors + [dave]).sorted()))
        case .create:
            return nil
        }
    case .createdContract:
        // With an id that matches the altered data, so that only
        // re-interpretation can tell.
        guard let first = data.createdCore.first else { return nil }
        let contract = altered(first.contract)
        let id = ContractID(seed: first.creationSeed, contract: contract)
        var action = data.action
        if case .create(first.id, let seed) = action { action = .create(contract: id, seed: seed) }
        return participant(
            action: action,
            created: [
                CreatedContract(
                    id: id, contract: contract, consumedInCore: first.consumedInCore, creationSeed: first.creationSeed)
            ] + data.createdCore.dropFirst())
    case .inputContract:
        guard let first = data.coreInputs.first else { return nil }
        return participant(
            inputs: [
                CoreInput(
                    id: first.id, contract: altered(first.contract), consumed: first.consumed,
                    creationSeed: first.creationSeed)
            ] + data.coreInputs.dropFirst())
    case .informees:
        return common(informees: (commonData.informees + [dave]).sorted())
    case .threshold:
        return common(threshold: commonData.threshold + 1)
    }
}

private let otherID = ContractID(hex: String(repeating: "ab", count: 32))!
private let anotherID = ContractID(hex: String(repeating: "cd", count: 32))!

/// `all` with view `index` replaced by `view` and every ancestor's subview
/// hashes updated, as a dishonest submitter would send it: every hash checks
/// out, only re-interpretation can tell.
private func consistently(_ views: TransactionViews, _ all: [View], replacing index: Int, with view: View) -> [View] {
    var result = all
    result[index] = view
    var child = index
    while let parent = views.parents[child] {
        var hashes = result[parent].subviewHashes
        hashes[views.subviews[parent].firstIndex(of: child)!] = result[child].hash
        let old = result[parent]
        result[parent] = View(
            position: old.position, commonData: old.commonData, participantData: old.participantData,
            subviewHashes: hashes)
        child = parent
    }
    return result
}

@Suite("Model conformance")
struct ConformanceTests {
    @Test("every view re-interpreted from its own inputs equals the original view", arguments: Scenario.all)
    func everyViewConforms(scenario: Scenario) throws {
        let views = try scenario.views()
        let all = try received(views)
        for index in views.views.indices {
            let (view, descendants) = subtree(views, index, all)
            // The inputs the views declare, as a validator that is not a
            // stakeholder of them has nothing else.
            try ModelConformance.check(
                view: view, subviews: descendants, package: scenario.package,
                contracts: ModelConformance.declaredInputs(of: [view] + descendants))
            // Against what a stakeholder's participant knows: the active
            // contracts and those the transaction creates.
            var known = scenario.contracts
            for node in scenario.transaction.nodes {
                if case .create(let create) = node.action {
                    known.insert(create.contractID, create.instance, seed: node.seed)
                }
            }
            try ModelConformance.check(
                view: view, subviews: descendants, package: scenario.package, contracts: known)
        }
    }

    @Test("under the VIP policy views conform with the same topology, and not with another")
    func vipPolicy() throws {
        let scenario = Scenario.all.first { $0.name == "iou: transfer" }!
        let policy = ConfirmationPolicy.vip(vipHosted: [bank])
        let views = try scenario.views(policy: policy)
        let all = try received(views)
        try ModelConformance.check(
            view: all[0], subviews: [all[1]], package: scenario.package,
            contracts: ModelConformance.declaredInputs(of: all), policy: policy)
        #expect(throws: ConformanceError.self) {
            try ModelConformance.check(
                view: all[0], subviews: [all[1]], package: scenario.package,
                contracts: ModelConformance.declaredInputs(of: all))
        }
    }

    @Test(
        "a view altered in any field fails with a reason, even with every hash made consistent",
        arguments: Alteration.allCases)
    func alteredViewsFail(alteration: Alteration) throws {
        var attempts = 0
        for scenario in Scenario.all {
            let views = try scenario.views()
            let all = try received(views)
            for index in views.views.indices {
                guard let changed = alter(all[index], alteration) else { continue }
                attempts += 1
                let forged = consistently(views, all, replacing: index, with: changed)
                let top = views.ancestors(of: index).last ?? index
                let (view, descendants) = subtree(views, top, forged)
                do {
                    try ModelConformance.check(
                        view: view, subviews: descendants, package: scenario.package,
                        contracts: ModelConformance.declaredInputs(of: [view] + descendants))
                    // A root view is the submitter's choice: altered, it may
                    // be another valid view (a create of other data with its
                    // id to match; the free-text argument of a choice whose
                    // body ignores it). Only the submitter's signature on the
                    // root hash tells it from the original.
                    var legitimate = false
                    if index == top {
                        switch (alteration, all[index].participantData.action) {
                        case (.createdContract, .create): legitimate = true
                        case (.argument, _): legitimate = scenario.name == "proposals: reject"
                        default: break
                        }
                    }
                    #expect(legitimate, "\(scenario.name): view \(index) with its \(alteration) altered conforms")
                    #expect(!views.proof(of: index).verify(view: changed, root: views.rootHash))
                } catch {
                    #expect(!error.description.isEmpty)
                    if case .subviewHashMismatch = error.reason {
                        Issue.record("\(scenario.name): caught by a hash, not by re-interpretation: \(error)")
                    }
                }
            }
        }
        #expect(attempts >= 5, "too few views with a \(alteration) to alter")
    }

    @Test("reasons name the view and the field")
    func reasons() throws {
        let scenario = Scenario.all.first { $0.name == "dvp: settle, bank and custodian apart" }!
        let views = try scenario.views()
        let all = try received(views)
        func failure(_ forged: [View], _ top: Int = 0) -> ConformanceError? {
            let (view, descendants) = subtree(views, top, forged)
            do {
                try ModelConformance.check(
                    view: view, subviews: descendants, package: scenario.package,
                    contracts: ModelConformance.declaredInputs(of: forged))
                return nil
            } catch {
                return error
            }
        }
        // The new owner of the cash leg changed from the seller to carol in
        // the Transfer's argument, hashes fixed up: the Settle re-interpreted
        // says otherwise.
        let newOwner = failure(consistently(views, all, replacing: 3, with: alter(all[3], .argument)!))
        guard case .differs("choice argument", _, _)? = newOwner?.reason else {
            Issue.record("unexpected: \(String(describing: newOwner))")
            return
        }
        #expect(newOwner?.position == [0, 2])
        #expect(
            newOwner?.description.hasPrefix("view 0.2 does not conform to the model: its choice argument differs")
                == true)
        // The new cash's amount changed, its id made to match: the
        // re-interpreted create gives another contract.
        let amount = failure(consistently(views, all, replacing: 4, with: alter(all[4], .createdContract)!))
        guard case .differs("created contract id", _, _)? = amount?.reason else {
            Issue.record("unexpected: \(String(describing: amount))")
            return
        }
        #expect(amount?.position == [0, 2, 0])
        // The buyer's cash shown with another amount under its id.
        let cash = all[3].participantData.coreInputs[0].id
        #expect(
            failure(consistently(views, all, replacing: 3, with: alter(all[3], .inputContract)!))
                == ConformanceError(position: [0, 2], reason: .unauthenticatedContract(cash)))
        // An actor added to the Transfer: re-interpretation finds other actors.
        let transfer = consistently(views, all, replacing: 3, with: alter(all[3], .actors)!)
        #expect(
            throws: ConformanceError(
                position: [0, 2],
                reason: .differs(
                    field: "actors", received: "[alice::1220bb, carol::1220dd]", recomputed: "[alice::1220bb]"))
        ) {
            try ModelConformance.check(
                view: transfer[3], subviews: [transfer[4]], package: scenario.package,
                contracts: ModelConformance.declaredInputs(of: [transfer[3]]))
        }
        // A subview left out, or one that is not its parent's.
        #expect(throws: ConformanceError(position: [0], reason: .missingSubview(position: [0, 0]))) {
            try ModelConformance.check(
                view: all[0], subviews: [], package: scenario.package,
                contracts: ModelConformance.declaredInputs(of: all))
        }
        #expect(throws: ConformanceError(position: [0, 2], reason: .subviewHashMismatch(position: [0, 2, 0]))) {
            try ModelConformance.check(
                view: all[3], subviews: [alter(all[4], .threshold)!], package: scenario.package,
                contracts: ModelConformance.declaredInputs(of: all))
        }
        // A Settle re-interpreted without the seller's security.
        let noSecurity = ModelConformance.declaredInputs(of: [all[0], all[1]])
        #expect(throws: ConformanceError.self) {
            try ModelConformance.check(
                view: all[0], subviews: Array(all[1...]), package: scenario.package, contracts: noSecurity)
        }
    }
}
