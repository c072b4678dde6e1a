import WeftContracts
import WeftParticipant
import WeftTopology
import WeftWire

/// Reads the values applications send (`weft.v1.Value`, `weft.v1.Record` with labels) into
/// the contract language's positional values, against the uploaded packages: a template's
/// record fields and a choice's parameters are matched by label, in any order, so an
/// application need not know the declaration order.
struct ValueReader {
    /// Packages by id, as uploaded to the participant.
    let packages: [PackageID: Package]
    /// Deepest nesting accepted: values come from the network.
    static let depthMax = 32

    func templateID(_ wire: Weft.V1.TemplateId?, field: String) throws(LedgerAPIError) -> (TemplateID, Package, Template) {
        guard let wire, !wire.templateName.isEmpty else {
            throw .invalidArgument(field: field, "a template id needs package_id and template_name")
        }
        guard let packageID = PackageID(hex: wire.packageID) else {
            throw .invalidArgument(field: field, "package id '\(wire.packageID.prefix(80))' is not 64 hex digits")
        }
        guard let package = packages[packageID] else {
            throw .unknownTemplate("no package \(packageID) is uploaded to this participant")
        }
        guard let index = package.template(named: wire.templateName) else {
            throw .unknownTemplate(
                "package \(package.name) has no template '\(wire.templateName)' (its templates: "
                    + package.templates.map(\.name).joined(separator: ", ") + ")")
        }
        return (TemplateID(package: packageID, name: wire.templateName), package, package.templates[index])
    }

    /// A template's create arguments, fields matched by label.
    func createArguments(_ record: Weft.V1.Record?, of template: Template, field: String) throws(LedgerAPIError) -> Value {
        guard let record else { throw .invalidArgument(field: field, "create arguments are required") }
        return try Self.record(record, fields: template.fields, owner: "template \(template.name)", field: field)
    }

    /// A choice's argument (a record of its parameters, matched by label).
    func choiceArgument(_ value: Weft.V1.Value?, of template: Template, choice: String, field: String) throws(LedgerAPIError)
        -> Value
    {
        guard let index = template.choice(named: choice) else {
            throw .invalidArgument(
                field: "choice",
                "template \(template.name) has no choice '\(choice)' (its choices: "
                    + template.choices.map(\.name).joined(separator: ", ") + ")")
        }
        let parameters = template.choices[index].parameters
        let record: Weft.V1.Record
        switch value?.sum {
        case .record(let given)?: record = given
        case nil where parameters.isEmpty, .unit? where parameters.isEmpty: record = Weft.V1.Record()
        default: throw .invalidArgument(field: field, "the choice argument is a record of the choice's parameters")
        }
        return try Self.record(record, fields: parameters, owner: "choice \(choice)", field: field)
    }

    private static func record(_ record: Weft.V1.Record, fields: [Field], owner: String, field: String)
        throws(LedgerAPIError) -> Value
    {
        let labelled = record.fields.allSatisfy { !$0.label.isEmpty }
        guard labelled || record.fields.allSatisfy({ $0.label.isEmpty }) else {
            throw .invalidArgument(field: field, "label every field of \(owner), or none (then they are positional)")
        }
        guard record.fields.count == fields.count else {
            throw .invalidArgument(
                field: field,
                "\(owner) has \(fields.count) fields (\(fields.map(\.name).joined(separator: ", "))); "
                    + "\(record.fields.count) were given")
        }
        var values = [Value?](repeating: nil, count: fields.count)
        for (position, given) in record.fields.enumerated() {
            let index: Int
            if labelled {
                guard let found = fields.firstIndex(where: { $0.name == given.label }) else {
                    throw .invalidArgument(
                        field: field,
                        "\(owner) has no field '\(given.label)' (its fields: \(fields.map(\.name).joined(separator: ", ")))")
                }
                guard values[found] == nil else { throw .invalidArgument(field: field, "field '\(given.label)' is given twice") }
                index = found
            } else {
                index = position
            }
            values[index] = try value(given.value, field: "\(field).\(fields[index].name)", depth: 1)
        }
        return .record(values.map { $0! })
    }

    /// A value without a template to label it: nested records are positional.
    static func value(_ wire: Weft.V1.Value?, field: String, depth: Int) throws(LedgerAPIError) -> Value {
        guard depth <= depthMax else { throw .invalidArgument(field: field, "values nest at most \(depthMax) deep") }
        guard let sum = wire?.sum else { throw .invalidArgument(field: field, "a value of no kind") }
        switch sum {
        case .unit: return .unit
        case .bool(let value): return .bool(value)
        case .int64(let value): return .int(value)
        case .decimal(let text):
            guard let value = FixedDecimal(text) else { throw .invalidArgument(field: field, "'\(text.prefix(80))' is not a Decimal") }
            return .decimal(value)
        case .text(let value): return .text(value)
        case .party(let id): return .party(try party(id, field: field))
        case .time(let time): return .time(time.microsSinceEpoch)
        case .contractID(let hex): return .contractID(try contractID(hex, field: field))
        case .list(let list):
            var elements: [Value] = []
            for (index, element) in list.elements.enumerated() {
                elements.append(try value(element, field: "\(field)[\(index)]", depth: depth + 1))
            }
            return .list(elements)
        case .record(let record):
            var fields: [Value] = []
            for element in record.fields {
                fields.append(try value(element.value, field: "\(field).\(element.label)", depth: depth + 1))
            }
            return .record(fields)
        }
    }

    static func party(_ id: String, field: String) throws(LedgerAPIError) -> Party {
        do throws(ContractError) {
            return try Party(id)
        } catch {
            throw .invalidArgument(field: field, "'\(id.prefix(300))' is not a party id (name::1220…): \(error)")
        }
    }

    static func contractID(_ hex: String, field: String) throws(LedgerAPIError) -> ContractID {
        guard let id = ContractID(hex: hex) else {
            throw .invalidArgument(field: field, "'\(hex.prefix(80))' is not a contract id (64 hex digits)")
        }
        return id
    }
}

/// Writes the participant's ledger data as the Ledger API's messages.
struct EventWriter {
    let packages: [Package]
    let templates: TemplateFilter

    func created(
        _ id: ContractID, _ contract: ContractInstance, eventID: String, witnesses: [String]
    ) -> Weft.V1.CreatedEvent {
        let wire = contract.wire(id: id, packages: packages, creationSeed: nil)
        return Weft.V1.CreatedEvent(
            eventID: eventID, contractID: id.description, templateID: wire.templateID, createArguments: wire.arguments,
            signatories: wire.signatories, observers: wire.observers, witnessParties: witnesses)
    }

    /// `CreatedEvent.created_event_blob`: the contract with its creation seed, serialized.
    func blob(_ id: ContractID, _ contract: ContractInstance, seed: NodeSeed) throws -> [UInt8] {
        try contract.wire(id: id, packages: packages, creationSeed: seed).serializedBytes()
    }

    func archived(_ id: ContractID, template: TemplateID, eventID: String, witnesses: [String]) -> Weft.V1.ArchivedEvent {
        Weft.V1.ArchivedEvent(
            eventID: eventID, contractID: id.description,
            templateID: Weft.V1.TemplateId(packageID: template.package.description, templateName: template.name),
            witnessParties: witnesses)
    }

    /// One transaction as the filter's parties see it together: the union of their
    /// projections, each event once with the parties that see it; archives before creates,
    /// as the participant stores them. `readers`: the filter's parties, who may see the
    /// command id if the command acted as one of them (`LedgerAPI.commandID`).
    func transaction(_ projections: [(party: Party, transaction: LedgerTransaction)], domain: String, readers: [Party])
        -> Weft.V1.Transaction
    {
        let first = projections[0].transaction
        var order: [String] = []
        var events: [String: (event: LedgerEvent, id: String, witnesses: [String])] = [:]
        for (party, transaction) in projections {
            for (index, event) in transaction.events.enumerated() where templates.admits(event) {
                let key: String
                switch event {
                case .created(let id, _): key = "c" + id.description
                case .archived(let id, _): key = "a" + id.description
                }
                if events[key] == nil {
                    order.append(key)
                    let stored = index < transaction.eventIDs.count ? transaction.eventIDs[index] : ""
                    events[key] = (event, stored, [])
                }
                events[key]!.witnesses.append(party.id)
            }
        }
        order = order.filter { $0.hasPrefix("a") } + order.filter { !$0.hasPrefix("a") }
        var wireEvents: [Weft.V1.Event] = []
        for (index, key) in order.enumerated() {
            let (event, stored, witnesses) = events[key]!
            // The node's id, as in the tree; position in this response for events committed
            // before event ids were stored.
            let eventID = stored.isEmpty ? "\(first.transactionID):\(index)" : stored
            switch event {
            case .created(let id, let contract):
                wireEvents.append(.init(kind: .created(created(id, contract, eventID: eventID, witnesses: witnesses.sorted()))))
            case .archived(let id, let template):
                wireEvents.append(.init(kind: .archived(archived(id, template: template, eventID: eventID, witnesses: witnesses.sorted()))))
            }
        }
        return Weft.V1.Transaction(
            transactionID: first.transactionID,
            commandID: LedgerAPI.commandID(first.commandID, actAs: first.actAs, readers: readers),
            workflowID: "",
            effectiveAt: Weft.V1.Timestamp(microsSinceEpoch: first.recordTime.microsSinceEpoch), events: wireEvents,
            offset: UInt64(first.offset), domain: domain)
    }
}
