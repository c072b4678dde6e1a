import ArgumentParser

/// `weft`: Weft's one executable. Later issues add the daemon (`weft run`) and
/// the operator's console verbs; today it runs the foundation demo.
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
        subcommands: [DemoCommand.self, CertsCommand.self]
    )
}
