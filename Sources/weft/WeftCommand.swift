import ArgumentParser
import WeftCrypto

#if canImport(Glibc)
    import Glibc
#endif

/// `weft`: Weft's one executable: the daemon (`weft run`), database and
/// certificate tools, and the demo. The operator's console verbs grow with the
/// domain and protocol work.
@main
struct WeftCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft",
        abstract: "Weft: privacy-preserving ledger synchronization.",
        discussion: """
            Participants run business logic locally and confirm each other's transactions;
            a domain (domain manager, sequencers on PostgreSQL, mediator) orders and relays
            their encrypted messages. See README.md and docs/.
            """,
        version: "0.1.0 (wire protocol weft/1, schema weft.v1)",
        subcommands: [
            RunCommand.self, DatabaseCommand.self, KeysCommand.self, DomainManagerCommand.self, ParticipantCommand.self, CertsCommand.self,
            DemoCommand.self, ConfigCommand.self, HealthCommand.self, PartyCommand.self, PackageCommand.self, SubmitCommand.self,
            ActiveContractsCommand.self, TransactionsCommand.self, LedgerEndCommand.self, TokenCommand.self, ScriptCommand.self, DomainCommand.self,
            InspectCommand.self, DecodeCommand.self, CallCommand.self, CommitmentsCommand.self, PruneCommand.self,
            RepairCommand.self,
        ]
    )

    /// OpenSSL keeps its state until the process is gone (`OpenSSLProcess`): a node returning
    /// from here may still have threads inside libcrypto.
    static func main() async {
        lineBufferStandardOutput()
        OpenSSLProcess.keepStateUntilExit()
        await main(nil)
    }

    /// Makes standard output line-buffered. Into a pipe or a file, stdio buffers it in blocks
    /// of some KiB: `weft transactions --follow | jq` would show nothing until a block filled,
    /// and Ctrl-C would lose the lines still in the buffer. Line by line, each line leaves as
    /// it is printed. Called before anything is printed, as setvbuf requires.
    private static func lineBufferStandardOutput() {
        #if canImport(Glibc)
            // Swift 6 refuses to name Glibc's `stdout`, a mutable C global ("not
            // concurrency-safe", swiftlang/swift#75601); the stream is read from its symbol.
            guard let symbol = dlsym(nil, "stdout") else { return }
            setvbuf(symbol.load(as: UnsafeMutablePointer<FILE>?.self), nil, _IOLBF, 0)
        #endif
    }
}
