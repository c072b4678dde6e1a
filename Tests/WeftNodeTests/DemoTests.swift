import Foundation
import Testing

/// The README's main command works and says what it should.
@Suite(.timeLimit(.minutes(3))) struct DemoTests {
    @Test func theDemoRunsADomainAndOnlyTheRecipientReadsTheView() async throws {
        let directory = FileManager.default.temporaryDirectory.path
        let (status, output, error) = try await WeftProcess.run(["demo"], directory: directory)
        #expect(status == 0, "\(error)")
        #expect(output.contains("before the owner allow-lists it, connecting is refused"), "\(output)")
        let lines = output.split(separator: "\n")
        let decrypted = lines.filter { $0.contains("decrypted: \"IOU: participant1 owes participant2 100 USD") }
        #expect(decrypted.count == 1 && decrypted[0].contains("participant2 event"), "only participant2 reads the view: \(output)")
        #expect(lines.filter { $0.contains("\"hello from participant1\"") }.count == 3, "\(output)")
        #expect(output.contains("the view's text appears in the sequencer's tables: no — ciphertext only"), "\(output)")
        #expect(output.contains("database: stopped and removed"))
    }
}
