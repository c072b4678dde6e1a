import Testing
import WeftContracts
import WeftMediator

/// What the mediator reads of an informee tree, against what the submitter built.
@Suite struct InformeeTreeTests {
    @Test func theMediatorSeesEveryViewWithTheSubmittersHashesAndNothingElse() throws {
        let test = try TestDomain(mediatorName: "mediator1")
        let views = try test.dvp()
        let tree = try InformeeTree(views.informeeTree())
        #expect(tree.rootHash == views.rootHash)
        #expect(tree.views.map(\.position) == views.views.map(\.position))
        #expect(tree.views.map(\.hash) == views.views.map(\.hash))
        #expect(tree.views.map(\.informees) == views.views.map(\.commonData.informees))
        #expect(tree.views.map(\.confirmingParties) == views.views.map(\.commonData.confirmingParties))
        #expect(tree.views.map(\.threshold) == views.views.map(\.commonData.threshold))
        #expect(tree.domain == test.domain.description && tree.mediator == test.mediator.member.description)
        #expect(tree.policy == .signatory && tree.uuid == [UInt8](repeating: 2, count: 16))

        // The full tree gives the same answer: the mediator reads only the common parts.
        #expect(try InformeeTree(views.fullTree()) == tree)
        #expect(throws: MediatorError.malformedRequest("the informee tree has more than 3 views")) {
            try InformeeTree(views.informeeTree(), viewCountMax: 3)
        }
        let blinded = try MerkleTree.blinding(views.informeeTree()) { $0 == .viewCommonData([0, 2]) }
        #expect(throws: MediatorError.malformedRequest("the common data of view 0.2 is blinded")) {
            try InformeeTree(blinded)
        }
    }
}
