internal import WeftCrypto
internal import WeftWire

/// A checked package of templates: what applications upload and every
/// validator must hold to re-interpret a transaction (the DAR analogue).
public struct Package: Sendable {
    /// Largest package text accepted, in bytes: packages come from
    /// applications, so their size is bounded before anything is parsed.
    public static let sourceBytesMax = 1 << 20

    /// The name after `package`.
    public let name: String
    /// SHA-256 (purpose `PACKAGE`) of `canonicalForm`.
    public let id: PackageID
    /// The package printed in canonical form (docs/contracts.md §7).
    public let canonicalForm: String
    /// The templates in declaration order.
    public let templates: [Template]
    private let templateIndex: [String: Int]

    /// Parses and checks `source`; `file` names it in error messages.
    public init(source: String, file: String) throws(ContractError) {
        guard source.utf8.count <= Self.sourceBytesMax else {
            throw .syntax(
                SourceLocation(file: file, line: 1, column: 1),
                "the package has \(source.utf8.count) bytes; at most \(Self.sourceBytesMax) are accepted")
        }
        let syntax = try Parser.parse(source, file: file)
        templates = try Checker.check(syntax, file: file)
        name = syntax.name.text
        canonicalForm = CanonicalForm.package(syntax)
        id = Self.id(ofCanonicalForm: canonicalForm)
        var index: [String: Int] = [:]
        for (number, template) in templates.enumerated() { index[template.name] = number }
        templateIndex = index
    }

    /// The package id of a canonical form.
    static func id(ofCanonicalForm text: String) -> PackageID {
        let hash = PurposeHasher.hash(.package, Array(text.utf8))
        return PackageID(Digest32(hash.digest)!)
    }

    /// The index of template `name` in `templates`.
    public func template(named name: String) -> Int? { templateIndex[name] }

    /// The id of template `name`, for commands and contract lookups.
    public func templateID(_ name: String) throws(ContractError) -> TemplateID {
        guard templateIndex[name] != nil else { throw unknownTemplate(name) }
        return TemplateID(package: id, name: name)
    }

    private func unknownTemplate(_ name: String) -> ContractError {
        .invalidCommand(
            "package \(self.name) has no template '\(name)'" + suggestion(name, templates.map(\.name))
                + " (its templates: \(templates.map(\.name).joined(separator: ", ")))")
    }

    /// A template's record from labelled fields, in any order; every field
    /// must be given once.
    public func record(_ template: String, _ fields: KeyValuePairs<String, Value>) throws(ContractError) -> Value {
        guard let index = templateIndex[template] else { throw unknownTemplate(template) }
        return try Self.record(of: templates[index].fields, fields, owner: "template \(template)")
    }

    /// A choice's argument record from labelled arguments.
    public func arguments(_ template: String, _ choice: String, _ arguments: KeyValuePairs<String, Value>)
        throws(ContractError) -> Value
    {
        guard let index = templateIndex[template] else { throw unknownTemplate(template) }
        guard let choiceIndex = templates[index].choice(named: choice) else {
            throw .invalidCommand("template \(template) has no choice '\(choice)'")
        }
        return try Self.record(
            of: templates[index].choices[choiceIndex].parameters, arguments, owner: "choice \(choice) of \(template)")
    }

    private static func record(of fields: [Field], _ given: KeyValuePairs<String, Value>, owner: String)
        throws(ContractError) -> Value
    {
        var values = [Value?](repeating: nil, count: fields.count)
        for (label, value) in given {
            guard let index = fields.firstIndex(where: { $0.name == label }) else {
                throw .invalidCommand(
                    "\(owner) has no field '\(label)' (its fields: \(fields.map(\.name).joined(separator: ", ")))")
            }
            guard values[index] == nil else { throw .invalidCommand("field '\(label)' of \(owner) is given twice") }
            values[index] = value
        }
        if let missing = values.firstIndex(where: { $0 == nil }) {
            throw .invalidCommand("\(owner) needs field '\(fields[missing].name)'")
        }
        return .record(values.map { $0! })
    }
}
