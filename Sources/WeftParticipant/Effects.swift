import Foundation
import WeftContracts
import WeftCrypto
import WeftWire

/// What committing an approved request changes here: the contracts of hosted stakeholders
/// created and archived, and each event with the hosted parties that see it.
struct Effects {
    var created: [ParticipantStore.Commit.Created] = []
    var createdSeeds: [ContractID: NodeSeed] = [:]
    var archived: [ContractID] = []
    var events: [ParticipantStore.Commit.Event] = []
    /// The views re-interpreted, one transaction per top view (a view received without its
    /// parent), in view order: what the transaction tree is built from.
    var reinterpreted: [Transaction] = []
    /// Why the views could not be re-interpreted, if they could not (a participant that
    /// rejected them locally, e.g. for a missing package, still commits an approved verdict).
    var reinterpretationFailure: String?
    /// What the approved views would change here but cannot, left out of the commit: a create
    /// of a contract id this participant already has, an archive of a contract it has archived.
    /// Honest confirmers reject such a request (`CREATES_EXISTING_CONTRACTS`, inactive inputs);
    /// a participant that only observes learns of it from an approval all the same, when a
    /// confirmer approved what it should not have. Committing the rest keeps this participant
    /// on the verdict that every other informee commits; storing the create would break the
    /// contracts' key and stop the event processor on the same event at every restart, and the
    /// archive would show the contract archived twice.
    var inconsistencies: [String] = []

    /// The views of stored view trees (`participant_requests.views`), decoded and checked again.
    static func views(of viewTrees: [[UInt8]]) throws -> [View] {
        try viewTrees.map { try ReceivedView(Weft.V1.ViewTree(serializedBytes: $0)).view }
    }

    /// `known`: every contract id this participant has stored, active or archived (and not
    /// pruned), or queued to store.
    init(
        _ views: [View], hosted: (Party) -> Bool, packages: [Package], interpreter: Interpreter,
        active: [ContractID: (contract: ContractInstance, seed: NodeSeed?)], known: Set<ContractID>
    ) throws {
        var views = views
        views.sort { $0.position.lexicographicallyPrecedes($1.position) }
        reinterpret(views, interpreter: interpreter, active: active)
        var archivedInSubview = Set<ContractID>()
        for view in views { archivedInSubview.formUnion(view.participantData.createdInSubviewArchivedInCore) }
        var seen = Set<ContractID>()
        // A contract one view creates and another consumes (a choice creating a contract, then
        // exercising a consuming choice on it) is transient: never active, so neither created
        // nor archived here (as Canton's flat transactions leave it out).
        let createdInRequest = Set(views.flatMap { $0.participantData.createdCore.map(\.id) })
        // Archives first (inputs consumed), then creates, each in view order.
        for view in views {
            for input in view.participantData.coreInputs where input.consumed && !seen.contains(input.id) {
                if createdInRequest.contains(input.id) {
                    seen.insert(input.id)
                    continue
                }
                let parties = input.contract.stakeholders.filter(hosted)
                guard !parties.isEmpty else { continue }
                seen.insert(input.id)
                if active[input.id] == nil && known.contains(input.id) {
                    inconsistencies.append("archives contract \(input.id), which was archived here before")
                    continue
                }
                archived.append(input.id)
                events.append(.init(created: false, contractID: input.id, parties: parties))
            }
        }
        for view in views {
            for output in view.participantData.createdCore
            where !output.consumedInCore && !archivedInSubview.contains(output.id) && !seen.contains(output.id) {
                let parties = output.contract.stakeholders.filter(hosted)
                guard !parties.isEmpty else { continue }
                seen.insert(output.id)
                if known.contains(output.id) {
                    inconsistencies.append("creates contract \(output.id), which exists here already")
                    continue
                }
                let wire = try output.contract.wire(
                    id: output.id, packages: packages, creationSeed: output.creationSeed
                )
                .serializedBytes()
                created.append(.init(id: output.id, contract: output.contract, wire: wire))
                createdSeeds[output.id] = output.creationSeed
                events.append(.init(created: true, contractID: output.id, parties: parties))
            }
        }
    }
}

extension Effects {
    /// Re-interprets each top view (its descendants with it), as validation did: the inputs the
    /// views declare (with seeds that prove them), then the active contracts, which still hold
    /// this request's inputs (they are archived by the commit these effects describe).
    private mutating func reinterpret(
        _ views: [View], interpreter: Interpreter, active: [ContractID: (contract: ContractInstance, seed: NodeSeed?)]
    ) {
        let positions = Set(views.map(\.position))
        let lookup = LayeredLookup(
            first: ModelConformance.declaredInputs(of: views),
            then: ConflictState(active: active, known: [], locks: [:], pendingCreates: [:]))
        for view in views {
            if let parent = view.parentPosition, positions.contains(parent) { continue }
            do throws(ConformanceError) {
                reinterpreted.append(try ModelConformance.reinterpret(view: view, interpreter: interpreter, contracts: lookup))
            } catch {
                reinterpreted = []
                reinterpretationFailure = error.description
                return
            }
        }
    }
}

/// The contracts a command may use, as the interpreter's lookup: the active contracts one of
/// `readers` (the act-as parties) is a stakeholder of, then the contracts the application
/// disclosed for this submission (authenticated by their creation seeds before they get here).
///
/// A participant stores the contracts of every party it hosts, but a command sees only its own
/// parties' (as in Daml): the others are unknown to it, exactly as an id that names nothing.
/// Otherwise one party's application learns of another party's contracts on the same
/// participant from its errors (a missing authority names the owner, a wrong template the
/// template), and uses them where a choice's controller comes from its argument.
struct ActiveLookup: ContractLookup {
    let active: [ContractID: (contract: ContractInstance, seed: NodeSeed?)]
    let readers: Set<Party>
    var disclosed: [ContractID: (contract: ContractInstance, seed: NodeSeed)] = [:]

    private func visible(_ id: ContractID) -> (contract: ContractInstance, seed: NodeSeed?)? {
        guard let stored = active[id], stored.contract.stakeholders.contains(where: readers.contains) else { return nil }
        return stored
    }

    func contract(_ id: ContractID) -> ContractInstance? { visible(id)?.contract ?? disclosed[id]?.contract }
    func creationSeed(of id: ContractID) -> NodeSeed? { visible(id)?.seed ?? disclosed[id]?.seed }
}

func wallClockMicros() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1_000_000).rounded())
}

/// Lower-case hex of `bytes` (`String(format:)` per byte cost a Foundation call each, once
/// per submission for its submission id).
func hexText(_ bytes: [UInt8]) -> String { hex(bytes) }
