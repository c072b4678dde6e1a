import ArgumentParser

/// `weft repair …`: what an operator does when data was lost (docs/operator-guide.md §7).
struct RepairCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Recover a participant after data loss: move it to a new domain.",
        subcommands: [MigrateDomain.self])
}
