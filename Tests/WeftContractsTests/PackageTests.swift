// Packages: the examples check, the id is the hash of the canonical form,
// and formatting never changes it.

import Testing
import WeftContracts

@Suite("Packages")
struct PackageTests {
    @Test("the example packages parse and check", arguments: ["iou.weft", "propose-accept.weft", "dvp.weft"])
    func examplesCheck(file: String) throws {
        let package = try examplePackage(file)
        #expect(!package.templates.isEmpty)
        for template in package.templates {
            #expect(template.choices.last?.name == "Archive", "every template has the implicit Archive choice")
        }
    }

    /// A chain of operators or fields nests the tree one level per link, as parentheses do:
    /// a long one is refused like deep parentheses, never a stack overflow later in the
    /// checker or the interpreter (a 1 MiB chain was half a million levels).
    @Test("long chains of operators or fields count toward the nesting limit")
    func chainsAreNestingToo() throws {
        func package(ensure: String) -> String {
            "package chains;\ntemplate T {\n    owner: Party;\n    n: Int;\n    signatory owner;\n    ensure \(ensure);\n}\n"
        }
        // A long condition of &&s, a long sum: up to 200 links load.
        _ = try Package(source: package(ensure: "0 < " + Array(repeating: "n", count: 200).joined(separator: " + ")), file: "short.weft")
        // The deepest tree the limits allow, parentheses around the longest chain, checks
        // without overflowing a task's stack.
        let deepest = String(repeating: "(", count: 60) + Array(repeating: "n", count: 199).joined(separator: " + ")
            + String(repeating: ")", count: 60)
        let deep = try Package(source: package(ensure: "0 < " + deepest), file: "deepest.weft")
        // … and evaluates: the interpreter walks the same tree.
        let created = try Interpreter(packages: [deep]).submit(
            [.create(try deep.templateID("T"), argument: try deep.record("T", ["owner": .party(alice), "n": .int(1)]))],
            actAs: [alice], seed: seed(1), contracts: ContractStore())
        #expect(created.nodes.count == 1)
        for ensure in [
            "0 < " + Array(repeating: "1", count: 200_000).joined(separator: "+"),
            "this" + String(repeating: ".n", count: 100_000) + " > 0",
        ] {
            #expect {
                _ = try Package(source: package(ensure: ensure), file: "long.weft")
            } throws: { error in
                guard let error = error as? ContractError, case .syntax = error else { return false }
                return error.description.contains("nested too deeply")
            }
        }
    }

    @Test("the IOU package's templates, fields and choices")
    func iouShape() throws {
        let package = try examplePackage("iou.weft")
        #expect(package.name == "iou")
        let iou = try #require(package.template(named: "Iou"))
        let template = package.templates[iou]
        #expect(template.fields.map(\.name) == ["issuer", "owner", "currency", "amount"])
        #expect(template.fields.map(\.type.description) == ["Party", "Party", "Text", "Decimal"])
        #expect(template.choices.map(\.name) == ["Transfer", "Split", "Merge", "Archive"])
        #expect(
            template.choices.map(\.returnType.description) == [
                "ContractId<Iou>", "List<ContractId<Iou>>", "ContractId<Iou>", "Unit",
            ])
        #expect(template.choices.allSatisfy { $0.consuming })
    }

    @Test("the canonical form parses back to itself and keeps the id")
    func canonicalFormIsAFixedPoint() throws {
        for file in ["iou.weft", "propose-accept.weft", "dvp.weft"] {
            let package = try examplePackage(file)
            let again = try Package(source: package.canonicalForm, file: "canonical-" + file)
            #expect(again.canonicalForm == package.canonicalForm)
            #expect(again.id == package.id)
        }
    }

    static let original = """
        package shapes;

        template Box {
            owner: Party;
            size: Int;
            tags: List<Text>;

            signatory owner;
            ensure size > 0 && (size * 2) - 1 < 100;

            choice Grow(by: Int): ContractId<Box>
                controller owner
            {
                assert by > 0, "grow by a positive amount";
                let bigger = size + by * 2;
                return create Box { owner = owner, size = bigger, tags = tags + ["grown"] };
            }
        }
        """

    /// The same package with other whitespace, comments, redundant
    /// parentheses, trailing commas and fields given in another order.
    static let reformatted = """
        // A comment.
        package   shapes ;
        template Box{owner:Party;size:Int;
          tags : List< Text > ;   // tags
          signatory (owner);
          ensure ((size > 0) && ((((size * 2)) - 1) < 100));
          choice Grow( by : Int , ) : ContractId<Box> controller owner {
            assert (by > 0), "grow by a positive amount" ;
            let bigger = (size + (by * 2));
            return create Box { owner = owner, size = bigger, tags = (tags + ["grown",]), };
          }
        }
        """

    @Test("formatting, comments and redundant parentheses do not change the package id")
    func formattingKeepsTheID() throws {
        let a = try Package(source: Self.original, file: "a.weft")
        let b = try Package(source: Self.reformatted, file: "b.weft")
        #expect(a.canonicalForm == b.canonicalForm)
        #expect(a.id == b.id)
    }

    @Test(
        "a change of meaning changes the package id",
        arguments: [
            ("size > 0 &&", "size >= 0 &&"),
            ("tags + [\"grown\"]", "[\"grown\"] + tags"),
            ("(size * 2) - 1", "size * (2 - 1)"),
            ("\"grow by a positive amount\"", "\"grow by more than nothing\""),
            ("package shapes;", "package boxes;"),
        ])
    func meaningChangesTheID(change: (String, String)) throws {
        let a = try Package(source: Self.original, file: "a.weft")
        let changed = Self.original.replacingOccurrences(of: change.0, with: change.1)
        #expect(changed != Self.original)
        let b = try Package(source: changed, file: "b.weft")
        #expect(a.id != b.id)
    }

    @Test("the canonical form of a known package; the id as hex")
    func idIsTheHashOfTheCanonicalForm() throws {
        let package = try Package(source: Self.original, file: "a.weft")
        #expect(package.id.description.count == 64)
        #expect(PackageID(hex: package.id.description) == package.id)
        // Known answer, so that any change to the canonical form or the
        // hashing is deliberate (it changes every package id).
        #expect(
            package.canonicalForm == """
                package shapes;

                template Box {
                    owner: Party;
                    size: Int;
                    tags: List<Text>;
                    signatory owner;
                    ensure size > 0 && size * 2 - 1 < 100;

                    choice Grow(by: Int): ContractId<Box>
                        controller owner
                    {
                        assert by > 0, "grow by a positive amount";
                        let bigger = size + by * 2;
                        return create Box { owner = owner, size = bigger, tags = tags + ["grown"] };
                    }
                }

                """)
    }

    @Test("literals print canonically: negative numbers, decimals, escapes")
    func literals() throws {
        let source = """
            package literals;
            template T {
                p: Party;
                signatory p;
                ensure -(-5) == 5 && 1.50 == 1.5 && -0.25 < 0.0 && "a\\"b\\\\c\\n\\u{e9}€" != "" && - -9223372036854775808 != 0
                    && !!true && (if true then 1 else 2) + 1 == 2;
            }
            """
        let package = try Package(source: source, file: "literals.weft")
        #expect(
            package.canonicalForm.contains(
                #"ensure -(-5) == 5 && 1.5 == 1.5 && -0.25 < 0.0 && "a\"b\\c\n\u{e9}\u{20ac}" != "" && -(-9223372036854775808) != 0 && !!true && (if true then 1 else 2) + 1 == 2;"#
            ))
        let again = try Package(source: package.canonicalForm, file: "again.weft")
        #expect(again.id == package.id)
    }
}
