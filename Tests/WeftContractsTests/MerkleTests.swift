// The Merkle tree: blinding any nodes keeps the root hash, the informee tree
// reveals only common data, a proof from a view to the root verifies and
// fails when any byte changes, and views survive the wire.

import Testing
import WeftContracts
import WeftWire

/// Every node of `views`' tree.
private func allNodes(_ views: TransactionViews) -> [MerkleNode] {
    [.submitterMetadata, .commonMetadata, .participantMetadata]
        + views.views.flatMap { [.view($0.position), .viewCommonData($0.position), .viewParticipantData($0.position)] }
}

/// Counts of revealed view data nodes in `tree`: (common data, participant data).
private func revealed(_ tree: Weft.V1.TransactionTree) -> (common: Int, participant: Int) {
    var common = 0
    var participant = 0
    func walk(_ view: Weft.V1.BlindableTransactionView) {
        guard case .unblinded(let message)? = view.node else { return }
        if case .unblinded? = message.commonData?.node { common += 1 }
        if case .unblinded? = message.participantData?.node { participant += 1 }
        message.subviews.forEach(walk)
    }
    tree.rootViews.forEach(walk)
    return (common, participant)
}

@Suite("Merkle tree")
struct MerkleTests {
    @Test("blinding any subset of nodes leaves the root hash unchanged", arguments: Scenario.all)
    func blindingKeepsTheRoot(scenario: Scenario) throws {
        let views = try scenario.views()
        let full = views.fullTree()
        #expect(try MerkleTree.rootHash(of: full) == views.rootHash)
        let decoded = try Weft.V1.TransactionTree(serializedBytes: try full.serializedBytes())
        #expect(try MerkleTree.rootHash(of: decoded) == views.rootHash, "the root hash survives the wire")

        var random = SeededGenerator(seed: UInt64(scenario.name.utf8.count))
        let nodes = allNodes(views)
        for round in 0..<40 {
            let chosen = Set(nodes.filter { _ in round == 0 || Bool.random(using: &random) })
            let blindedHere = views.tree { chosen.contains($0) }
            #expect(try MerkleTree.rootHash(of: blindedHere) == views.rootHash)
            // Blinding a received tree gives the same tree as blinding at the source.
            let blindedThere = try MerkleTree.blinding(decoded) { chosen.contains($0) }
            #expect(blindedThere == blindedHere)
            // Blinding more of an already blinded tree keeps it too.
            let more = try MerkleTree.blinding(blindedThere) { _ in Bool.random(using: &random) }
            #expect(try MerkleTree.rootHash(of: more) == views.rootHash)
        }
        // Everything blinded: three metadata hashes and the root views' hashes.
        let everything = views.tree { _ in true }
        #expect(revealed(everything) == (0, 0))
        #expect(try MerkleTree.rootHash(of: everything) == views.rootHash)
    }

    @Test("the informee tree reveals every view's common data and nothing of the participant data")
    func informeeTree() throws {
        for scenario in Scenario.all {
            let views = try scenario.views()
            let tree = views.informeeTree()
            #expect(try MerkleTree.rootHash(of: tree) == views.rootHash)
            #expect(revealed(tree) == (views.views.count, 0))
            guard case .blindedHash? = tree.submitterMetadata?.node,
                case .blindedHash? = tree.participantMetadata?.node,
                case .unblinded(let common)? = tree.commonMetadata?.node
            else {
                Issue.record("\(scenario.name): the informee tree's metadata is not blinded as it should be")
                continue
            }
            #expect(common.mediator == "MED::mediator1::1220ff")
            #expect(common.confirmationPolicy == .signatory)
            // The mediator learns informees, weights and thresholds, in view order.
            var thresholds: [UInt32] = []
            func walk(_ view: Weft.V1.BlindableTransactionView) {
                guard case .unblinded(let message)? = view.node, case .unblinded(let data)? = message.commonData?.node
                else { return }
                thresholds.append(data.threshold)
                message.subviews.forEach(walk)
            }
            tree.rootViews.forEach(walk)
            #expect(thresholds == views.views.map { UInt32($0.commonData.threshold) })
        }
    }

    @Test("a proof from each view to the root verifies, and fails when any byte of it changes", arguments: Scenario.all)
    func proofs(scenario: Scenario) throws {
        let views = try scenario.views()
        for (index, view) in views.views.enumerated() {
            let proof = views.proof(of: index)
            #expect(proof.position == view.position)
            #expect(proof.verify(root: views.rootHash))
            #expect(proof.verify(view: view, root: views.rootHash))
            let bytes = proof.serializedBytes
            #expect(try MerkleProof(serializedBytes: bytes) == proof)
            for offset in bytes.indices {
                for mask: UInt8 in [0x01, 0x80] {
                    var corrupt = bytes
                    corrupt[offset] ^= mask
                    let accepted = (try? MerkleProof(serializedBytes: corrupt))?.verify(root: views.rootHash) ?? false
                    #expect(!accepted, "\(scenario.name): view \(index), byte \(offset) ^ \(mask) still verifies")
                }
            }
            #expect((try? MerkleProof(serializedBytes: bytes + [0])) == nil)
            #expect((try? MerkleProof(serializedBytes: Array(bytes.dropLast()))) == nil)
            // Another view's content, or another transaction's root, does not verify.
            if let other = views.views.first(where: { $0 != view }) {
                #expect(!proof.verify(view: other, root: views.rootHash))
            }
            #expect(!proof.verify(root: views.views[0].hash))
        }
    }

    @Test("a view whose content changes in any way no longer matches its proof")
    func proofsBindTheContent() throws {
        let views = try Scenario.all.first { $0.name == "dvp: settle, bank and custodian apart" }!.views()
        let view = views.views[3]
        let proof = views.proof(of: 3)
        let data = view.participantData
        let common = view.commonData
        var changed: [View] = []
        func with(
            _ participant: ViewParticipantData? = nil, _ commonData: ViewCommonData? = nil,
            _ subviews: [Digest32]? = nil
        )
            -> View
        {
            View(
                position: view.position, commonData: commonData ?? common, participantData: participant ?? data,
                subviewHashes: subviews ?? view.subviewHashes)
        }
        var saltBytes = data.salt.bytes
        saltBytes[31] ^= 1
        changed.append(
            with(
                ViewParticipantData(
                    action: data.action, coreInputs: data.coreInputs, createdCore: data.createdCore,
                    createdInSubviewArchivedInCore: data.createdInSubviewArchivedInCore,
                    salt: Digest32(saltBytes)!)))
        changed.append(
            with(
                ViewParticipantData(
                    action: data.action,
                    coreInputs: data.coreInputs.map {
                        CoreInput(id: $0.id, contract: $0.contract, consumed: false, creationSeed: $0.creationSeed)
                    },
                    createdCore: data.createdCore, createdInSubviewArchivedInCore: [], salt: data.salt)))
        changed.append(
            with(
                nil,
                ViewCommonData(
                    informees: common.informees, confirmingParties: common.confirmingParties,
                    threshold: common.threshold - 1, salt: common.salt)))
        changed.append(with(nil, nil, []))
        for view in changed { #expect(!proof.verify(view: view, root: views.rootHash)) }
        #expect(
            !proof.verify(
                view: View(
                    position: [0, 1], commonData: common, participantData: data, subviewHashes: view.subviewHashes),
                root: views.rootHash))
    }

    @Test("each view tree decodes to its view, with the transaction's root hash", arguments: Scenario.all)
    func viewTrees(scenario: Scenario) throws {
        let views = try scenario.views()
        for (index, view) in views.views.enumerated() {
            let message = views.viewTree(index)
            let bytes = try message.serializedBytes()
            let received = try ReceivedView(try Weft.V1.ViewTree(serializedBytes: bytes))
            #expect(received.view == view)
            #expect(received.rootHash == views.rootHash)
            #expect(received.commonMetadata == views.metadata.common)
            #expect(received.participantMetadata == views.metadata.participant)
            #expect(received.submitterMetadata == (views.parents[index] == nil ? views.metadata.submitter : nil))
            // Exactly one view's data is revealed: subviews travel in their own messages.
            #expect(revealed(message.tree!) == (1, 1))
            #expect(try MerkleTree.revealedViews(in: message.tree!) == [view])
        }
    }

    @Test("malformed view trees are refused with a reason, never a crash")
    func malformed() throws {
        let views = try Scenario.all.first { $0.name == "iou: transfer" }!.views()
        var outside = views.viewTree(1)
        outside.viewPosition = [0, 5]
        #expect(throws: ViewError.self) { try ReceivedView(outside) }
        var blinded = views.viewTree(1)
        blinded.viewPosition = [0]
        #expect(throws: ViewError.self) { try ReceivedView(blinded) }
        var shortHash = views.informeeTree()
        shortHash.submitterMetadata = Weft.V1.BlindableSubmitterMetadata(node: .blindedHash([1, 2, 3]))
        #expect(throws: ViewError.self) { try MerkleTree.rootHash(of: shortHash) }
        var noMetadata = views.fullTree()
        noMetadata.commonMetadata = nil
        #expect(throws: ViewError.self) { try MerkleTree.rootHash(of: noMetadata) }
    }
}
