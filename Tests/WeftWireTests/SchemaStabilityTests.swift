import Foundation
import Testing
import WeftTestSupport

/// Schema stability (issue 9, item 5): `buf breaking` with the FILE rules compares Proto/
/// with the committed image of the last released schema, Proto/baseline/weft-v1.binpb, so
/// a change that would break clients generated from it fails the suite unless the baseline
/// is moved on purpose (scripts/schema-baseline; docs/clients.md §7).
@Suite(.timeLimit(.minutes(5))) struct SchemaStabilityTests {
    static let baseline = repositoryRoot.appendingPathComponent("Proto/baseline/weft-v1.binpb").path

    /// `buf breaking` of a copy of Proto/ in which `edit` changed status.proto.
    static func breaking(afterEditing edit: (String) -> String) async throws -> TestSubprocess.Outcome {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("weft-proto-\(UUID())")
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("Proto"), to: copy)
        let file = copy.appendingPathComponent("weft/v1/status.proto")
        let original = try String(contentsOf: file, encoding: .utf8)
        let edited = edit(original)
        #expect(edited != original, "the edit changed nothing")
        try edited.write(to: file, atomically: true, encoding: .utf8)
        return try await TestSubprocess.run([
            repositoryRoot.appendingPathComponent("scripts/buf").path, "breaking", copy.path, "--against", baseline,
        ])
    }

    @Test func theSchemaMatchesTheBaselineAndABreakingChangeFails() async throws {
        // The schema as committed: compatible (what scripts/test runs).
        let current = try await TestSubprocess.run([repositoryRoot.appendingPathComponent("scripts/schema-baseline").path, "--check"])
        #expect(current.status == 0, "\(current.output)\(current.error)")
        #expect(current.output.contains("compatible with Proto/baseline/weft-v1.binpb"), "\(current.output)")

        // A new field is compatible.
        let added = try await Self.breaking {
            $0.replacingOccurrences(
                of: "  repeated StatusDetail details = 5;\n",
                with: "  repeated StatusDetail details = 5;\n  // What to try next.\n  string hint = 6;\n")
        }
        #expect(added.status == 0, "\(added.output)\(added.error)")

        // Renumbering a field breaks the wire: refused, naming the field.
        let renumbered = try await Self.breaking {
            $0.replacingOccurrences(of: "  string error_id = 3;", with: "  string error_id = 13;")
        }
        #expect(renumbered.status != 0)
        #expect(renumbered.output.contains(#"field "3" with name "error_id" on message "Status" was deleted"#), "\(renumbered.output)")

        // Deleting a field breaks generated code even when its number is reserved (FILE rules).
        let deleted = try await Self.breaking {
            $0.replacingOccurrences(of: "  string correlation_id = 4;", with: "  reserved 4;\n  reserved \"correlation_id\";")
        }
        #expect(deleted.status != 0)
        #expect(deleted.output.contains(#""correlation_id" on message "Status" was deleted"#), "\(deleted.output)")

        // Renaming one breaks the JSON names and every client's source.
        let renamed = try await Self.breaking {
            $0.replacingOccurrences(of: "  string error_id = 3;", with: "  string error_code = 3;")
        }
        #expect(renamed.status != 0)
        #expect(renamed.output.contains(#"changed name from "error_id" to "error_code""#), "\(renamed.output)")
    }
}
