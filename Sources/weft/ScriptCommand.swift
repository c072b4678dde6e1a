import ArgumentParser
import Foundation

/// `weft script FILE`: the console's verbs, headless — a domain's or a participant's bootstrap
/// written down once and run by automation (Canton's bootstrap scripts).
///
/// One `weft` command per line, without the leading `weft`; words split as a shell would
/// (quotes, backslashes), no shell in between. `#` starts a comment. `let NAME = COMMAND` keeps
/// the command's standard output (trimmed) for later lines as `${NAME}`; `${NAME}` is also
/// read from the environment. Each step runs as its own `weft` process; the first that fails
/// stops the script, which exits with status 1 (64 for a script that does not parse), naming
/// the line.
struct ScriptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "script",
        abstract: "Run a file of weft commands (a bootstrap), stopping at the first that fails.",
        discussion: """
            One weft command per line, without the leading `weft`, e.g.:
              # participant1 joins mydomain
              let ID = participant id -c participant1.yaml
              domain-manager set-state ${ID} --permission submission --remote localhost:4402 --root-cert ca.pem
              participant connect-multi mydomain seq1:4401 --root-cert ca.pem --remote localhost:4501
            Words split as in a shell (quotes, backslashes). `let NAME = …` keeps a command's output as
            ${NAME}; ${NAME} also reads the environment. Every step is printed before it runs. The first
            failing step stops the script: exit status 1, naming the line (64 if the script does not parse).
            """)

    @Argument(help: "The script file ('-' for standard input).")
    var file: String

    @Flag(help: "Print the steps and check the script without running anything.")
    var dryRun = false

    func run() async throws {
        let text: String
        do {
            text = file == "-"
                ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                : try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read the script \(file): \(error.localizedDescription)")
        }
        let steps: [ScriptStep]
        do {
            steps = try ScriptStep.parse(text)
        } catch let error as ScriptError {
            throw ValidationError("\(file):\(error.line): \(error.message)")
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var variables = ProcessInfo.processInfo.environment
        for step in steps {
            let arguments: [String]
            do {
                arguments = try step.words.map { try ScriptStep.expand($0, variables, line: step.line) }
            } catch let error as ScriptError {
                FileHandle.standardError.write(Data("weft script: \(file):\(error.line): \(error.message)\n".utf8))
                throw ExitCode.failure
            }
            show("+ weft " + arguments.map(ScriptStep.quoted).joined(separator: " "))
            if dryRun { continue }
            let outcome = try await DemoProcesses.runToEnd(
                executable, arguments, directory: FileManager.default.currentDirectoryPath)
            FileHandle.standardError.write(Data(outcome.error.utf8))
            if let name = step.variable {
                variables[name] = outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                FileHandle.standardOutput.write(Data(outcome.output.utf8))
            }
            guard outcome.status == 0 else {
                FileHandle.standardError.write(
                    Data("weft script: \(file):\(step.line): `weft \(arguments.first ?? "")…` exited \(outcome.status); stopped there\n".utf8))
                throw ExitCode.failure
            }
        }
    }
}

/// A script that does not parse, or a `${NAME}` that is not set: the line and what is wrong.
struct ScriptError: Error {
    let line: Int
    let message: String
}

/// One line of a script: the command's words (not yet expanded) and the variable that keeps
/// its output, if any.
struct ScriptStep: Equatable {
    let line: Int
    let variable: String?
    let words: [String]

    /// The steps of `text`; throws for a line that does not split (an open quote) or a `let`
    /// without a name or command.
    static func parse(_ text: String) throws -> [ScriptStep] {
        var steps: [ScriptStep] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            var words = try split(String(raw), line: line)
            guard !words.isEmpty else { continue }
            var variable: String?
            if words[0] == "let" {
                guard words.count >= 4, words[2] == "=", isName(words[1]) else {
                    throw ScriptError(line: line, message: "write `let NAME = COMMAND…` (NAME: letters, digits and _)")
                }
                variable = words[1]
                words = Array(words.dropFirst(3))
            }
            if words.first == "weft" { words.removeFirst() }
            guard !words.isEmpty else { throw ScriptError(line: line, message: "no command") }
            guard words[0] != "script" else { throw ScriptError(line: line, message: "a script cannot run scripts") }
            steps.append(ScriptStep(line: line, variable: variable, words: words))
        }
        return steps
    }

    /// Splits a line into words as a POSIX shell does for quotes and backslashes; `#` at the
    /// start of a word ends the line.
    static func split(_ line: String, line number: Int) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
                continue
            }
            if let open = quote {
                if character == open {
                    quote = nil
                } else if character == "\\" && open == "\"" {
                    escaped = true
                } else {
                    current.append(character)
                }
                continue
            }
            switch character {
            case "\\":
                escaped = true
                inWord = true
            case "'", "\"":
                quote = character
                inWord = true
            case " ", "\t", "\r":
                if inWord { words.append(current) }
                current = ""
                inWord = false
            case "#" where !inWord:
                return words
            default:
                current.append(character)
                inWord = true
            }
        }
        guard quote == nil, !escaped else { throw ScriptError(line: number, message: "an unclosed quote or a trailing backslash") }
        if inWord { words.append(current) }
        return words
    }

    /// `word` with each `${NAME}` replaced by its value.
    static func expand(_ word: String, _ variables: [String: String], line: Int) throws -> String {
        var result = ""
        var rest = Substring(word)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ScriptError(line: line, message: "an unclosed ${ in '\(word)'")
            }
            let name = String(rest[start.upperBound..<end])
            guard let value = variables[name] else {
                throw ScriptError(line: line, message: "${\(name)} is not set (no `let \(name) = …` before, nor in the environment)")
            }
            result += value
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") } && !text.first!.isNumber
    }

    /// `word` as a shell would need it written.
    static func quoted(_ word: String) -> String {
        word.isEmpty || word.contains(where: { " \t'\"\\#$".contains($0) }) ? "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" : word
    }
}
