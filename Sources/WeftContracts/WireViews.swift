public import WeftWire

// Views and Merkle trees as `weft.v1` messages (Proto/weft/v1/protocol.proto):
// the informee tree for the mediator, a view tree per view for its
// recipients, any tree with any nodes blinded, and the way back for
// validators. Hashes are over the canonical encoding of the decoded content
// (docs/contracts.md §13), never over protobuf bytes, so that any
// implementation that reads the messages computes the same hashes.

/// A node of a transaction's Merkle tree, named by its place: what a
/// blinding decision is about.
public enum MerkleNode: Hashable, Sendable {
    case submitterMetadata
    case commonMetadata
    case participantMetadata
    /// A whole view (with its subviews).
    case view([Int])
    case viewCommonData([Int])
    case viewParticipantData([Int])
}

extension TransactionViews {
    /// The tree with every node for which `shouldBlind` is true replaced by
    /// its hash (a blinded view hides its subviews too). Its root hash is
    /// `rootHash` whatever is blinded.
    public func tree(blinding shouldBlind: (MerkleNode) -> Bool) -> Weft.V1.TransactionTree {
        let labels = RecordLabels(packages: packages)
        var tree = Weft.V1.TransactionTree()
        tree.submitterMetadata = Weft.V1.BlindableSubmitterMetadata(
            node: shouldBlind(.submitterMetadata)
                ? .blindedHash(submitterMetadataHash.bytes)
                : .unblinded(metadata.submitter.wire(salt: metadataSalts[0])))
        tree.commonMetadata = Weft.V1.BlindableCommonMetadata(
            node: shouldBlind(.commonMetadata)
                ? .blindedHash(commonMetadataHash.bytes) : .unblinded(metadata.common.wire(salt: metadataSalts[1])))
        tree.participantMetadata = Weft.V1.BlindableParticipantMetadata(
            node: shouldBlind(.participantMetadata)
                ? .blindedHash(participantMetadataHash.bytes)
                : .unblinded(metadata.participant.wire(salt: metadataSalts[2])))
        tree.rootViews = rootViews.map { wireView($0, shouldBlind, labels) }
        return tree
    }

    private func wireView(_ index: Int, _ shouldBlind: (MerkleNode) -> Bool, _ labels: RecordLabels)
        -> Weft.V1.BlindableTransactionView
    {
        let view = views[index]
        guard !shouldBlind(.view(view.position)) else {
            return Weft.V1.BlindableTransactionView(node: .blindedHash(view.hash.bytes))
        }
        var message = Weft.V1.TransactionView()
        message.commonData = Weft.V1.BlindableViewCommonData(
            node: shouldBlind(.viewCommonData(view.position))
                ? .blindedHash(view.commonDataHash.bytes) : .unblinded(view.commonData.wire))
        message.participantData = Weft.V1.BlindableViewParticipantData(
            node: shouldBlind(.viewParticipantData(view.position))
                ? .blindedHash(view.participantDataHash.bytes) : .unblinded(view.participantData.wire(labels)))
        message.subviews = subviews[index].map { wireView($0, shouldBlind, labels) }
        return Weft.V1.BlindableTransactionView(node: .unblinded(message))
    }

    /// The whole tree, nothing blinded.
    public func fullTree() -> Weft.V1.TransactionTree { tree { _ in false } }

    /// What the mediator receives (`InformeeMessage.informee_tree`): the
    /// common metadata and every view's common data (informees, confirming
    /// parties, threshold); the submitter and participant metadata and all
    /// participant data blinded.
    public func informeeTree() -> Weft.V1.TransactionTree {
        tree { node in
            switch node {
            case .submitterMetadata, .participantMetadata, .viewParticipantData: true
            case .commonMetadata, .view, .viewCommonData: false
            }
        }
    }

    /// The tree as `parties` may see it: the views they are entitled to
    /// (`viewsFor(parties:)`) revealed with their subviews, the views above
    /// them reduced to their hashes' structure, everything else blinded.
    /// The submitter metadata is revealed only with a root view.
    public func blinded(for parties: [Party]) -> Weft.V1.TransactionTree {
        let visible = Set(viewsFor(parties: parties).map { views[$0].position })
        var onPath = visible
        for position in visible {
            for length in 1..<position.count { onPath.insert(Array(position.prefix(length))) }
        }
        let seesRoot = rootViews.contains { visible.contains(views[$0].position) }
        return tree { node in
            switch node {
            case .submitterMetadata: !seesRoot
            case .commonMetadata: false
            case .participantMetadata: visible.isEmpty
            case .view(let position): !onPath.contains(position)
            case .viewCommonData(let position), .viewParticipantData(let position): !visible.contains(position)
            }
        }
    }

    /// The plaintext of view `index`'s encrypted view message: the tree with
    /// only that view's data revealed (its subviews, sent separately, as
    /// hashes) and its position. Its root hash proves the view part of the
    /// transaction.
    public func viewTree(_ index: Int) -> Weft.V1.ViewTree {
        let position = views[index].position
        let isRoot = parents[index] == nil
        let tree = tree { node in
            switch node {
            case .submitterMetadata: !isRoot
            case .commonMetadata, .participantMetadata: false
            case .view(let other): !position.starts(with: other)
            case .viewCommonData(let other), .viewParticipantData(let other): other != position
            }
        }
        return Weft.V1.ViewTree(tree: tree, viewPosition: position.map { UInt32($0) })
    }
}

/// Merkle operations on `weft.v1.TransactionTree`s as received: any node may
/// be blinded.
public enum MerkleTree {
    /// The root hash of `tree`: revealed nodes hashed from their content,
    /// blinded nodes taken as they are.
    public static func rootHash(of tree: Weft.V1.TransactionTree) throws(ViewError) -> Digest32 {
        guard let submitter = tree.submitterMetadata?.node, let common = tree.commonMetadata?.node,
            let participant = tree.participantMetadata?.node
        else { throw .malformed("a transaction tree without its metadata") }
        let submitterHash: Digest32
        switch submitter {
        case .blindedHash(let hash): submitterHash = try digest(hash, "a blinded submitter metadata hash")
        case .unblinded(let metadata):
            let (decoded, salt) = try SubmitterMetadata.decode(metadata)
            submitterHash = MerkleHash.of(decoded, salt: salt)
        }
        let commonHash: Digest32
        switch common {
        case .blindedHash(let hash): commonHash = try digest(hash, "a blinded common metadata hash")
        case .unblinded(let metadata):
            let (decoded, salt) = try CommonMetadata.decode(metadata)
            commonHash = MerkleHash.of(decoded, salt: salt)
        }
        let participantHash: Digest32
        switch participant {
        case .blindedHash(let hash): participantHash = try digest(hash, "a blinded participant metadata hash")
        case .unblinded(let metadata):
            let (decoded, salt) = try ParticipantMetadata.decode(metadata)
            participantHash = MerkleHash.of(decoded, salt: salt)
        }
        var rootViews: [Digest32] = []
        for view in tree.rootViews { rootViews.append(try hash(of: view)) }
        return MerkleHash.root(submitterHash, commonHash, participantHash, rootViews)
    }

    /// The hash of a view, revealed or blinded.
    public static func hash(of view: Weft.V1.BlindableTransactionView) throws(ViewError) -> Digest32 {
        switch view.node {
        case nil: throw .malformed("a view that is neither blinded nor revealed")
        case .blindedHash(let hash)?: return try digest(hash, "a blinded view hash")
        case .unblinded(let message)?:
            let (common, participant) = try dataHashes(message)
            var subviews: [Digest32] = []
            for subview in message.subviews { subviews.append(try hash(of: subview)) }
            return MerkleHash.view(common, participant, subviews)
        }
    }

    private static func dataHashes(_ view: Weft.V1.TransactionView) throws(ViewError) -> (Digest32, Digest32) {
        let common: Digest32
        switch view.commonData?.node {
        case nil: throw .malformed("a view without its common data")
        case .blindedHash(let hash)?: common = try digest(hash, "a blinded view common data hash")
        case .unblinded(let data)?: common = MerkleHash.of(try ViewCommonData.decode(data))
        }
        let participant: Digest32
        switch view.participantData?.node {
        case nil: throw .malformed("a view without its participant data")
        case .blindedHash(let hash)?: participant = try digest(hash, "a blinded view participant data hash")
        case .unblinded(let data)?: participant = MerkleHash.of(try ViewParticipantData.decode(data))
        }
        return (common, participant)
    }

    /// `tree` with every revealed node for which `shouldBlind` is true
    /// replaced by its hash. The root hash stays the same.
    public static func blinding(_ tree: Weft.V1.TransactionTree, _ shouldBlind: (MerkleNode) -> Bool)
        throws(ViewError) -> Weft.V1.TransactionTree
    {
        var result = tree
        if shouldBlind(.submitterMetadata), case .unblinded(let metadata)? = tree.submitterMetadata?.node {
            let (decoded, salt) = try SubmitterMetadata.decode(metadata)
            result.submitterMetadata = .init(node: .blindedHash(MerkleHash.of(decoded, salt: salt).bytes))
        }
        if shouldBlind(.commonMetadata), case .unblinded(let metadata)? = tree.commonMetadata?.node {
            let (decoded, salt) = try CommonMetadata.decode(metadata)
            result.commonMetadata = .init(node: .blindedHash(MerkleHash.of(decoded, salt: salt).bytes))
        }
        if shouldBlind(.participantMetadata), case .unblinded(let metadata)? = tree.participantMetadata?.node {
            let (decoded, salt) = try ParticipantMetadata.decode(metadata)
            result.participantMetadata = .init(node: .blindedHash(MerkleHash.of(decoded, salt: salt).bytes))
        }
        var views: [Weft.V1.BlindableTransactionView] = []
        for (number, view) in tree.rootViews.enumerated() {
            views.append(try blinding(view, at: [number], shouldBlind))
        }
        result.rootViews = views
        return result
    }

    private static func blinding(
        _ view: Weft.V1.BlindableTransactionView, at position: [Int], _ shouldBlind: (MerkleNode) -> Bool
    ) throws(ViewError) -> Weft.V1.BlindableTransactionView {
        guard case .unblinded(var message)? = view.node else { return view }
        if shouldBlind(.view(position)) { return .init(node: .blindedHash(try hash(of: view).bytes)) }
        if shouldBlind(.viewCommonData(position)), case .unblinded(let data)? = message.commonData?.node {
            message.commonData = .init(node: .blindedHash(MerkleHash.of(try ViewCommonData.decode(data)).bytes))
        }
        if shouldBlind(.viewParticipantData(position)), case .unblinded(let data)? = message.participantData?.node {
            message.participantData = .init(
                node: .blindedHash(MerkleHash.of(try ViewParticipantData.decode(data)).bytes))
        }
        var subviews: [Weft.V1.BlindableTransactionView] = []
        for (number, subview) in message.subviews.enumerated() {
            subviews.append(try blinding(subview, at: position + [number], shouldBlind))
        }
        message.subviews = subviews
        return .init(node: .unblinded(message))
    }

    /// The views of `tree` whose common and participant data are both
    /// revealed, decoded, in pre-order.
    public static func revealedViews(in tree: Weft.V1.TransactionTree) throws(ViewError) -> [View] {
        var result: [View] = []
        for (number, view) in tree.rootViews.enumerated() { try collect(view, [number], &result) }
        return result
    }

    private static func collect(_ view: Weft.V1.BlindableTransactionView, _ position: [Int], _ result: inout [View])
        throws(ViewError)
    {
        guard case .unblinded(let message)? = view.node else { return }
        if case .unblinded(let common)? = message.commonData?.node,
            case .unblinded(let participant)? = message.participantData?.node
        {
            var subviewHashes: [Digest32] = []
            for subview in message.subviews { subviewHashes.append(try hash(of: subview)) }
            result.append(
                View(
                    position: position, commonData: try ViewCommonData.decode(common),
                    participantData: try ViewParticipantData.decode(participant), subviewHashes: subviewHashes))
        }
        for (number, subview) in message.subviews.enumerated() { try collect(subview, position + [number], &result) }
    }

    static func digest(_ bytes: [UInt8], _ what: String) throws(ViewError) -> Digest32 {
        guard let digest = Digest32(bytes) else { throw .malformed("\(what) of \(bytes.count) bytes, not 32") }
        return digest
    }
}

/// A view as a validator decrypts it: decoded from its `weft.v1.ViewTree`,
/// with the root hash its tree leads to (compare it with the root hash
/// message) and the metadata the tree reveals.
public struct ReceivedView: Sendable {
    public let view: View
    /// The root hash of the tree the view came in.
    public let rootHash: Digest32
    /// Revealed with root views only.
    public let submitterMetadata: SubmitterMetadata?
    public let commonMetadata: CommonMetadata?
    public let participantMetadata: ParticipantMetadata?

    /// Decodes the view at `view_position` (its data must be revealed) and
    /// computes the tree's root hash.
    public init(_ viewTree: Weft.V1.ViewTree) throws(ViewError) {
        guard let tree = viewTree.tree else { throw .malformed("a view tree without a tree") }
        let position = viewTree.viewPosition.map { Int($0) }
        guard let first = position.first, tree.rootViews.indices.contains(first) else {
            throw .malformed("a view position outside the tree")
        }
        var current = tree.rootViews[first]
        for step in position.dropFirst() {
            guard case .unblinded(let message)? = current.node, message.subviews.indices.contains(step) else {
                throw .malformed("a view position outside the tree, or through a blinded view")
            }
            current = message.subviews[step]
        }
        guard case .unblinded(let message)? = current.node, case .unblinded(let common)? = message.commonData?.node,
            case .unblinded(let participant)? = message.participantData?.node
        else { throw .malformed("the view at its position is blinded") }
        var subviewHashes: [Digest32] = []
        for subview in message.subviews { subviewHashes.append(try MerkleTree.hash(of: subview)) }
        view = View(
            position: position, commonData: try ViewCommonData.decode(common),
            participantData: try ViewParticipantData.decode(participant), subviewHashes: subviewHashes)
        rootHash = try MerkleTree.rootHash(of: tree)
        if case .unblinded(let metadata)? = tree.submitterMetadata?.node {
            submitterMetadata = try SubmitterMetadata.decode(metadata).0
        } else {
            submitterMetadata = nil
        }
        if case .unblinded(let metadata)? = tree.commonMetadata?.node {
            commonMetadata = try CommonMetadata.decode(metadata).0
        } else {
            commonMetadata = nil
        }
        if case .unblinded(let metadata)? = tree.participantMetadata?.node {
            participantMetadata = try ParticipantMetadata.decode(metadata).0
        } else {
            participantMetadata = nil
        }
    }
}

// MARK: - Model to wire and back

/// Field and parameter names for records on the wire. Records are
/// positional in Weft (docs/contracts.md §3): labels are for people and
/// other tools; decoding ignores them.
struct RecordLabels {
    let packages: [PackageID: Package]

    func fields(_ template: TemplateID) -> [String]? {
        guard let package = packages[template.package], let index = package.template(named: template.name) else {
            return nil
        }
        return package.templates[index].fields.map(\.name)
    }

    func parameters(_ template: TemplateID, _ choice: String) -> [String]? {
        guard let package = packages[template.package], let index = package.template(named: template.name),
            let choiceIndex = package.templates[index].choice(named: choice)
        else { return nil }
        return package.templates[index].choices[choiceIndex].parameters.map(\.name)
    }
}

private func malformed(_ message: String) -> ViewError { .malformed(message) }

private func decodeParty(_ id: String) throws(ViewError) -> Party {
    do throws(ContractError) {
        return try Party(id)
    } catch {
        throw malformed("\(error)")
    }
}

private func decodeParties(_ ids: [String]) throws(ViewError) -> [Party] {
    var result: [Party] = []
    for id in ids { result.append(try decodeParty(id)) }
    return result.normalized()
}

private func decodeContractID(_ hex: String) throws(ViewError) -> ContractID {
    guard let id = ContractID(hex: hex) else { throw malformed("'\(hex.prefix(80))' is not a contract id") }
    return id
}

private func digest32(_ bytes: [UInt8], _ what: String) throws(ViewError) -> Digest32 {
    try MerkleTree.digest(bytes, what)
}

extension Value {
    /// The value as `weft.v1.Value`; a record gets `labels` (field or
    /// parameter names) where they are known.
    func wire(labels: [String]? = nil) -> Weft.V1.Value {
        switch self {
        case .unit: Weft.V1.Value(sum: .unit(Weft.V1.Unit()))
        case .bool(let value): Weft.V1.Value(sum: .bool(value))
        case .int(let value): Weft.V1.Value(sum: .int64(value))
        case .decimal(let value): Weft.V1.Value(sum: .decimal(value.description))
        case .text(let value): Weft.V1.Value(sum: .text(value))
        case .party(let value): Weft.V1.Value(sum: .party(value.id))
        case .time(let value): Weft.V1.Value(sum: .time(Weft.V1.Timestamp(microsSinceEpoch: value)))
        case .contractID(let value): Weft.V1.Value(sum: .contractID(value.description))
        case .list(let elements): Weft.V1.Value(sum: .list(Weft.V1.ValueList(elements: elements.map { $0.wire() })))
        case .record(let fields): Weft.V1.Value(sum: .record(Value.wireRecord(fields, labels: labels)))
        }
    }

    static func wireRecord(_ fields: [Value], labels: [String]?) -> Weft.V1.Record {
        Weft.V1.Record(
            fields: fields.enumerated().map { index, field in
                let label = labels.flatMap { index < $0.count ? $0[index] : nil } ?? ""
                return Weft.V1.RecordField(label: label, value: field.wire())
            })
    }

    static func decode(_ wire: Weft.V1.Value) throws(ViewError) -> Value {
        switch wire.sum {
        case nil: throw malformed("a value of no kind")
        case .unit?: return .unit
        case .bool(let value)?: return .bool(value)
        case .int64(let value)?: return .int(value)
        case .decimal(let text)?:
            guard let value = FixedDecimal(text) else { throw malformed("'\(text.prefix(80))' is not a Decimal") }
            return .decimal(value)
        case .text(let value)?: return .text(value)
        case .party(let id)?: return .party(try decodeParty(id))
        case .time(let time)?: return .time(time.microsSinceEpoch)
        case .contractID(let hex)?: return .contractID(try decodeContractID(hex))
        case .list(let list)?:
            var elements: [Value] = []
            elements.reserveCapacity(list.elements.count)
            for element in list.elements { elements.append(try decode(element)) }
            return .list(elements)
        case .record(let record)?: return try decode(record)
        }
    }

    static func decode(_ record: Weft.V1.Record) throws(ViewError) -> Value {
        var fields: [Value] = []
        fields.reserveCapacity(record.fields.count)
        for field in record.fields {
            guard let value = field.value else { throw malformed("record field '\(field.label)' has no value") }
            fields.append(try decode(value))
        }
        return .record(fields)
    }
}

extension TemplateID {
    var wire: Weft.V1.TemplateId { Weft.V1.TemplateId(packageID: package.description, templateName: name) }

    static func decode(_ wire: Weft.V1.TemplateId?) throws(ViewError) -> TemplateID {
        guard let wire, let package = PackageID(hex: wire.packageID), !wire.templateName.isEmpty else {
            throw malformed("a template id without a valid package id and name")
        }
        guard isPlainIdentifier(wire.templateName) else { throw malformed("a template name that is no identifier") }
        return TemplateID(package: package, name: wire.templateName)
    }
}

/// Whether `name` is an identifier as the package language writes one (an ASCII letter or `_`,
/// then letters, digits and `_`). Names from the wire are held to it: Swift compares Strings by
/// Unicode canonical equivalence ("\u{212A}ey" == "Key", the Kelvin sign), while hashes and ids
/// read their bytes; one name must never stand for two byte strings.
func isPlainIdentifier(_ name: String) -> Bool {
    var bytes = name.utf8.makeIterator()
    guard let first = bytes.next(), first == UInt8(ascii: "_") || (first | 0x20 >= UInt8(ascii: "a") && first | 0x20 <= UInt8(ascii: "z"))
    else { return false }
    while let byte = bytes.next() {
        let letter = byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z")
        guard letter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") else { return false }
    }
    return true
}

extension ContractInstance {
    /// `salt` is the creation seed, when there is one.
    func wire(_ id: ContractID, _ labels: RecordLabels, salt: NodeSeed?) -> Weft.V1.ContractInstance {
        guard case .record(let fields) = argument else { preconditionFailure("a contract's argument is a record") }
        let record = Value.wireRecord(fields, labels: labels.fields(template))
        return Weft.V1.ContractInstance(
            contractID: id.description, templateID: template.wire, arguments: record,
            signatories: signatories.map(\.id), observers: observers.map(\.id), salt: salt?.digest.bytes ?? [])
    }

    static func decode(_ wire: Weft.V1.ContractInstance?) throws(ViewError) -> (
        ContractID, ContractInstance, NodeSeed?
    ) {
        guard let wire else { throw malformed("a contract without its data") }
        guard let arguments = wire.arguments else { throw malformed("contract \(wire.contractID) without arguments") }
        return (
            try decodeContractID(wire.contractID),
            ContractInstance(
                template: try TemplateID.decode(wire.templateID), argument: try Value.decode(arguments),
                signatories: try decodeParties(wire.signatories), observers: try decodeParties(wire.observers)),
            wire.salt.isEmpty ? nil : NodeSeed(try digest32(wire.salt, "a contract salt"))
        )
    }
}

extension ViewCommonData {
    /// `weft.v1.ViewCommonData`: confirming parties weigh 1, other
    /// informees 0.
    var wire: Weft.V1.ViewCommonData {
        Weft.V1.ViewCommonData(
            salt: salt.bytes,
            informees: informees.map {
                Weft.V1.Informee(party: $0.id, weight: confirmingParties.containsSorted($0) ? 1 : 0)
            },
            threshold: UInt32(clamping: threshold))
    }

    static func decode(_ wire: Weft.V1.ViewCommonData) throws(ViewError) -> ViewCommonData {
        var informees: [Party] = []
        var confirming: [Party] = []
        for informee in wire.informees {
            let party = try decodeParty(informee.party)
            informees.append(party)
            switch informee.weight {
            case 0: break
            case 1: confirming.append(party)
            default: throw malformed("informee \(informee.party) has weight \(informee.weight); weights are 0 or 1")
            }
        }
        let sorted = informees.normalized()
        guard sorted.count == informees.count else { throw malformed("an informee listed twice") }
        return ViewCommonData(
            informees: sorted, confirmingParties: confirming.normalized(), threshold: Int(wire.threshold),
            salt: try digest32(wire.salt, "a salt"))
    }
}

extension ViewParticipantData {
    func wire(_ labels: RecordLabels) -> Weft.V1.ViewParticipantData {
        var message = Weft.V1.ViewParticipantData()
        message.salt = salt.bytes
        message.coreInputs = coreInputs.map {
            Weft.V1.InputContract(
                contract: $0.contract.wire($0.id, labels, salt: $0.creationSeed), consumed: $0.consumed)
        }
        message.createdCore = createdCore.map {
            Weft.V1.CreatedContract(
                contract: $0.contract.wire($0.id, labels, salt: $0.creationSeed), consumedInCore: $0.consumedInCore)
        }
        message.createdInSubviewArchivedInCore = createdInSubviewArchivedInCore.map(\.description)
        var description = Weft.V1.ActionDescription()
        switch action {
        case .create(let id, let seed):
            description.description = .create(
                Weft.V1.CreateActionDescription(contractID: id.description, nodeSeed: seed.digest.bytes))
        case .exercise(let id, let template, let choice, let argument, let actors, let seed, let consuming):
            description.description = .exercise(
                Weft.V1.ExerciseActionDescription(
                    inputContractID: id.description, templateID: template.wire, choice: choice,
                    chosenValue: argument.wire(labels: labels.parameters(template, choice)), actors: actors.map(\.id),
                    nodeSeed: seed.digest.bytes, consuming: consuming))
        case .fetch(let id, let actors):
            description.description = .fetch(
                Weft.V1.FetchActionDescription(inputContractID: id.description, actors: actors.map(\.id)))
        }
        message.actionDescription = description
        return message
    }

    static func decode(_ wire: Weft.V1.ViewParticipantData) throws(ViewError) -> ViewParticipantData {
        let action: ActionDescription
        switch wire.actionDescription?.description {
        case nil: throw malformed("participant data without an action description")
        case .create(let create)?:
            action = .create(
                contract: try decodeContractID(create.contractID),
                seed: NodeSeed(try digest32(create.nodeSeed, "a node seed")))
        case .exercise(let exercise)?:
            guard let argument = exercise.chosenValue else { throw malformed("an exercise without its argument") }
            guard isPlainIdentifier(exercise.choice) else { throw malformed("a choice name that is no identifier") }
            action = .exercise(
                contract: try decodeContractID(exercise.inputContractID),
                template: try TemplateID.decode(exercise.templateID),
                choice: exercise.choice, argument: try Value.decode(argument),
                actors: try decodeParties(exercise.actors),
                seed: NodeSeed(try digest32(exercise.nodeSeed, "a node seed")), consuming: exercise.consuming)
        case .fetch(let fetch)?:
            action = .fetch(
                contract: try decodeContractID(fetch.inputContractID), actors: try decodeParties(fetch.actors))
        }
        var inputs: [CoreInput] = []
        for input in wire.coreInputs {
            let (id, contract, seed) = try ContractInstance.decode(input.contract)
            inputs.append(CoreInput(id: id, contract: contract, consumed: input.consumed, creationSeed: seed))
        }
        var created: [CreatedContract] = []
        for output in wire.createdCore {
            let (id, contract, seed) = try ContractInstance.decode(output.contract)
            guard let seed else { throw malformed("created contract \(id) without its creation seed (salt)") }
            created.append(
                CreatedContract(id: id, contract: contract, consumedInCore: output.consumedInCore, creationSeed: seed))
        }
        var archived: [ContractID] = []
        for id in wire.createdInSubviewArchivedInCore { archived.append(try decodeContractID(id)) }
        return ViewParticipantData(
            action: action, coreInputs: inputs, createdCore: created, createdInSubviewArchivedInCore: archived,
            salt: try digest32(wire.salt, "a salt"))
    }
}

extension SubmitterMetadata {
    func wire(salt: Digest32) -> Weft.V1.SubmitterMetadata {
        Weft.V1.SubmitterMetadata(
            salt: salt.bytes, actAs: actAs.map(\.id), submittingParticipant: submittingParticipant,
            commandID: commandID, applicationID: applicationID, submissionID: submissionID,
            maxSequencingTime: Weft.V1.Timestamp(microsSinceEpoch: maxSequencingTime),
            deduplicationPeriod: Weft.V1.Duration(micros: deduplicationPeriod))
    }

    static func decode(_ wire: Weft.V1.SubmitterMetadata) throws(ViewError) -> (SubmitterMetadata, Digest32) {
        (
            SubmitterMetadata(
                actAs: try decodeParties(wire.actAs), submittingParticipant: wire.submittingParticipant,
                commandID: wire.commandID, applicationID: wire.applicationID, submissionID: wire.submissionID,
                maxSequencingTime: wire.maxSequencingTime?.microsSinceEpoch ?? 0,
                deduplicationPeriod: wire.deduplicationPeriod?.micros ?? 0),
            try digest32(wire.salt, "a salt")
        )
    }
}

extension CommonMetadata {
    func wire(salt: Digest32) -> Weft.V1.CommonMetadata {
        Weft.V1.CommonMetadata(
            salt: salt.bytes, domain: domain, mediator: mediator, uuid: uuid,
            confirmationPolicy: policy == .vip ? .vip : .signatory)
    }

    static func decode(_ wire: Weft.V1.CommonMetadata) throws(ViewError) -> (CommonMetadata, Digest32) {
        let policy: ConfirmationPolicy.Kind
        switch wire.confirmationPolicy {
        case .signatory: policy = .signatory
        case .vip: policy = .vip
        case .unspecified, .unrecognized: throw malformed("common metadata without a known confirmation policy")
        }
        return (
            CommonMetadata(domain: wire.domain, mediator: wire.mediator, uuid: wire.uuid, policy: policy),
            try digest32(wire.salt, "a salt")
        )
    }
}

extension ParticipantMetadata {
    func wire(salt: Digest32) -> Weft.V1.ParticipantMetadata {
        Weft.V1.ParticipantMetadata(
            salt: salt.bytes, ledgerTime: Weft.V1.Timestamp(microsSinceEpoch: ledgerTime),
            submissionTime: Weft.V1.Timestamp(microsSinceEpoch: submissionTime), workflowID: workflowID)
    }

    static func decode(_ wire: Weft.V1.ParticipantMetadata) throws(ViewError) -> (ParticipantMetadata, Digest32) {
        (
            ParticipantMetadata(
                ledgerTime: wire.ledgerTime?.microsSinceEpoch ?? 0,
                submissionTime: wire.submissionTime?.microsSinceEpoch ?? 0, workflowID: wire.workflowID),
            try digest32(wire.salt, "a salt")
        )
    }
}
