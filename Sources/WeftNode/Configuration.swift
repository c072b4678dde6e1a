import Foundation
import Yams

/// A node's configuration: dotted keys (`nodes.sequencer1.database.url`) with
/// string values, merged from three layers, each overriding the one before:
///
/// 1. the YAML file (`weft run -c nodes.yaml`), flattened: mappings join
///    their keys with `.`, sequences number their items (`urls.0`, `urls.1`);
/// 2. the environment: `WEFT_` + the key in upper case, levels separated by
///    `__` and `-` written `_` (`WEFT_NODES__SEQUENCER1__DATABASE__URL`);
/// 3. `--set key=value` on the command line.
///
/// Every value remembers where it came from, so an error names the file, the
/// variable or the flag to fix.
public struct Configuration: Sendable, Equatable {
    /// Where a value was set.
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case file(String)
        case environment(String)
        case commandLine
        case defaultValue

        public var description: String {
            switch self {
            case .file(let path): "in \(path)"
            case .environment(let name): "in environment variable \(name)"
            case .commandLine: "in --set"
            case .defaultValue: "by default"
            }
        }

        /// The layer the value was set in: a higher one overrides a lower one (a value's
        /// default, then the file, the environment and `--set`).
        var layer: Int {
            switch self {
            case .defaultValue: 0
            case .file: 1
            case .environment: 2
            case .commandLine: 3
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        public var value: String
        public var source: Source
    }

    public private(set) var entries: [String: Entry] = [:]

    public init(entries: [String: Entry] = [:]) { self.entries = entries }

    /// Loads the three layers. `environment` is usually `ProcessInfo.processInfo.environment`.
    public static func load(file: String?, environment: [String: String], overrides: [String]) throws(ConfigurationError) -> Configuration {
        var configuration = Configuration()
        if let file {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw .unreadableFile(path: file, reason: "\(error.localizedDescription)")
            }
            try configuration.merge(yaml: text, source: .file(file))
        }
        // Every key lives under `nodes.`: other WEFT_ variables are the process's own
        // (WEFT_CONFIG, WEFT_LOG_LEVEL, WEFT_TOKEN, …), not configuration.
        for (name, value) in environment where name.hasPrefix("WEFT_NODES__") {
            let key = name.dropFirst("WEFT_".count).lowercased()
                .replacingOccurrences(of: "__", with: "\u{0}").replacingOccurrences(of: "_", with: "-")
                .replacingOccurrences(of: "\u{0}", with: ".")
            guard !key.isEmpty else { continue }
            configuration.entries[key] = Entry(value: value, source: .environment(name))
        }
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw .badOverride(override)
            }
            let key = String(override[..<equals]).trimmingCharacters(in: .whitespaces)
            configuration.entries[key] = Entry(value: String(override[override.index(after: equals)...]), source: .commandLine)
        }
        return configuration
    }

    /// Adds the flattened contents of a YAML document (later values win).
    public mutating func merge(yaml text: String, source: Source) throws(ConfigurationError) {
        let node: Yams.Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw .invalidYAML(source: source, reason: "\(error)")
        } catch {
            throw .invalidYAML(source: source, reason: "\(error)")
        }
        guard let node else { return }
        guard case .mapping = node else { throw .invalidYAML(source: source, reason: "the document must be a mapping of keys to values") }
        flatten(node, prefix: "", source: source)
    }

    private mutating func flatten(_ node: Yams.Node, prefix: String, source: Source) {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                let name = key.string ?? "\(key)"
                flatten(value, prefix: prefix.isEmpty ? name : prefix + "." + name, source: source)
            }
        case .sequence(let sequence):
            for (index, item) in sequence.enumerated() { flatten(item, prefix: prefix + ".\(index)", source: source) }
        case .scalar(let scalar):
            entries[prefix] = Entry(value: scalar.string, source: source)
        case .alias:
            break
        }
    }

    /// The part under `prefix` (e.g. `nodes.sequencer1`), with the prefix removed.
    public func section(_ prefix: String) -> Configuration {
        var section = Configuration()
        let lead = prefix + "."
        for (key, entry) in entries where key.hasPrefix(lead) { section.entries[String(key.dropFirst(lead.count))] = entry }
        section.path = path.isEmpty ? prefix : path + "." + prefix
        return section
    }

    /// The full key prefix of this section, for error messages.
    public private(set) var path = ""

    /// The names directly under `prefix` (e.g. the node names under `nodes`), sorted.
    public func children(of prefix: String) -> [String] {
        let lead = prefix.isEmpty ? "" : prefix + "."
        let names = entries.keys.compactMap { key -> String? in
            guard key.hasPrefix(lead) else { return nil }
            return key.dropFirst(lead.count).split(separator: ".").first.map(String.init)
        }
        return Array(Set(names)).sorted()
    }

    /// The items of a list key (`key.0`, `key.1`, …), in order.
    public func list(_ key: String) -> [String] { listEntries(key).map(\.value) }

    /// The items of a list key with where each was set (an error about one names its source).
    ///
    /// A list is `key.0`, `key.1`, … (a YAML sequence, or items set one by one), or `key` itself
    /// as one comma-separated value, the way the environment and `--set` give a list. The plain
    /// value replaces the items when it was set in a later layer than all of them: a file's
    /// `sequencers.addresses: [a, b]` is overridden by `WEFT_…__SEQUENCERS__ADDRESSES=c,d`, as
    /// any other key of the file is, instead of being ignored for the file's items.
    public func listEntries(_ key: String) -> [Entry] {
        var items: [Entry] = []
        var index = 0
        while let entry = entries["\(key).\(index)"] {
            items.append(entry)
            index += 1
        }
        guard let single = entries[key], items.allSatisfy({ $0.source.layer < single.source.layer }) else { return items }
        guard !single.value.isEmpty else { return [] }
        return single.value.split(separator: ",").map { Entry(value: $0.trimmingCharacters(in: .whitespaces), source: single.source) }
    }

    /// Sets `key` as the command line would (`--set`).
    public mutating func set(_ key: String, _ value: String) {
        entries[key] = Entry(value: value, source: .commandLine)
    }

    func fullKey(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    public func string(_ key: String) -> String? { entries[key]?.value }

    public func string(_ key: String, default value: String) -> String { entries[key]?.value ?? value }

    public func required(_ key: String) throws(ConfigurationError) -> String {
        guard let value = entries[key]?.value, !value.isEmpty else { throw .missing(key: fullKey(key)) }
        return value
    }

    public func int(_ key: String, default value: Int) throws(ConfigurationError) -> Int {
        guard let entry = entries[key] else { return value }
        guard let parsed = Int(entry.value.trimmingCharacters(in: .whitespaces)) else {
            throw .invalid(key: fullKey(key), value: entry.value, expected: "an integer", source: entry.source)
        }
        return parsed
    }

    /// An integer within `range`. A value outside it is refused at start, naming the range
    /// and the default, because the code that takes it would trap or misbehave instead
    /// (0 database connections, for one, stops the node at its first query).
    public func int(_ key: String, default value: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let entry = entries[key] else { return value }
        guard let parsed = Int(entry.value.trimmingCharacters(in: .whitespaces)), range.contains(parsed) else {
            throw .invalid(
                key: fullKey(key), value: entry.value, expected: "an integer from \(range.lowerBound) to \(range.upperBound), e.g. \(value)",
                source: entry.source)
        }
        return parsed
    }

    public func bool(_ key: String, default value: Bool) throws(ConfigurationError) -> Bool {
        guard let entry = entries[key] else { return value }
        switch entry.value.lowercased().trimmingCharacters(in: .whitespaces) {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw .invalid(key: fullKey(key), value: entry.value, expected: "true or false", source: entry.source)
        }
    }

    /// A duration such as `250ms`, `10s`, `5m`, `1h`, `500us`.
    public func duration(_ key: String, default value: Duration) throws(ConfigurationError) -> Duration {
        guard let entry = entries[key] else { return value }
        guard let parsed = Self.parseDuration(entry.value) else {
            throw .invalid(key: fullKey(key), value: entry.value, expected: "a duration such as 250ms, 10s, 5m or 1h", source: entry.source)
        }
        return parsed
    }

    /// A duration within `range`: a timer of 0 fires at once and a huge one overflows
    /// where it is turned into nanoseconds, so both are refused at start, naming the range.
    public func duration(_ key: String, default value: Duration, in range: ClosedRange<Duration>) throws(ConfigurationError) -> Duration {
        guard let entry = entries[key] else { return value }
        guard let parsed = Self.parseDuration(entry.value), range.contains(parsed) else {
            throw .invalid(
                key: fullKey(key), value: entry.value,
                expected: "a duration from \(Self.text(range.lowerBound)) to \(Self.text(range.upperBound)), e.g. \(Self.text(value))",
                source: entry.source)
        }
        return parsed
    }

    /// A duration within `range`, or nil for `off`: for timers that can be turned off, so
    /// that an operator who wants "never" writes it instead of a 0 that fires at once.
    public func durationOrOff(_ key: String, default value: Duration?, in range: ClosedRange<Duration>) throws(ConfigurationError) -> Duration? {
        guard let entry = entries[key] else { return value }
        if entry.value.trimmingCharacters(in: .whitespaces).lowercased() == "off" { return nil }
        guard let parsed = Self.parseDuration(entry.value), range.contains(parsed) else {
            let example = value.map { Self.text($0) } ?? "off"
            throw .invalid(
                key: fullKey(key), value: entry.value,
                expected: "a duration from \(Self.text(range.lowerBound)) to \(Self.text(range.upperBound)), e.g. \(example), or off for never",
                source: entry.source)
        }
        return parsed
    }

    /// A size such as `4MiB`, `16KiB`, `1048576`.
    public func bytes(_ key: String, default value: Int) throws(ConfigurationError) -> Int {
        guard let entry = entries[key] else { return value }
        guard let parsed = Self.parseBytes(entry.value) else {
            throw .invalid(key: fullKey(key), value: entry.value, expected: "a size such as 4MiB, 16KiB or a number of bytes", source: entry.source)
        }
        return parsed
    }

    /// A size within `range`; outside it is refused at start, naming the range, rather than
    /// raised, lowered or passed on to a limit that cannot work (a frame too small for its
    /// own header).
    public func bytes(_ key: String, default value: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let entry = entries[key] else { return value }
        guard let parsed = Self.parseBytes(entry.value), range.contains(parsed) else {
            throw .invalid(
                key: fullKey(key), value: entry.value,
                expected: "a size from \(Self.text(bytes: range.lowerBound)) to \(Self.text(bytes: range.upperBound)), e.g. \(Self.text(bytes: value))",
                source: entry.source)
        }
        return parsed
    }

    /// nil for text that is not a duration, or one too long for a 64-bit count of
    /// microseconds (about 292,000 years): refused rather than trapping on overflow.
    public static func parseDuration(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int64)] = [("us", 1), ("ms", 1000), ("s", 1_000_000), ("m", 60_000_000), ("h", 3_600_000_000)]
        for (suffix, micros) in units where trimmed.hasSuffix(suffix) {
            let number = trimmed.dropLast(suffix.count)
            // "ms" and "us" end in "s" too: only accept a plain number before the unit.
            guard let value = Int64(number), value >= 0 else { continue }
            let (product, overflow) = value.multipliedReportingOverflow(by: micros)
            return overflow ? nil : .microseconds(product)
        }
        return nil
    }

    /// nil for text that is not a size, or one past `Int.max` bytes (refused rather than
    /// trapping on overflow).
    public static func parseBytes(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            guard let value = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), value >= 0 else { return nil }
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        return Int(trimmed).flatMap { $0 >= 0 ? $0 : nil }
    }

    /// `duration` as an operator would write it (`10s`, `5m`, `250ms`), for error messages.
    static func text(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        guard seconds < Int64.max / 1_000_000 else { return "\(seconds)s" }
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        guard micros != 0 else { return "0s" }
        let units: [(String, Int64)] = [("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000)]
        for (suffix, factor) in units where micros % factor == 0 { return "\(micros / factor)\(suffix)" }
        return "\(micros)us"
    }

    /// `bytes` as an operator would write it (`4MiB`, `64KiB`), for error messages.
    static func text(bytes: Int) -> String {
        guard bytes != 0 else { return "0" }
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        for (suffix, factor) in units where bytes % factor == 0 { return "\(bytes / factor)\(suffix)" }
        return "\(bytes)"
    }

    /// Keys set that `known` does not list: probably typos.
    ///
    /// A key of `knownPrefixes` (a list key such as `sequencers.addresses`) admits itself and
    /// what lies under it (`sequencers.addresses.0`), matched at a `.`: a bare prefix match
    /// would also admit a typo such as `sequencers.addresses-backup`, which nothing reads.
    public func unknownKeys(known: Set<String>, knownPrefixes: [String] = []) -> [String] {
        let prefixes = knownPrefixes.map { $0.hasSuffix(".") ? String($0.dropLast()) : $0 }
        return entries.keys.filter { key in
            !known.contains(key) && !prefixes.contains { key == $0 || key.hasPrefix($0 + ".") }
        }.sorted()
    }

    public func source(of key: String) -> Source? { entries[key]?.source }
}

/// Why a configuration cannot be used; each says what to change and where.
public enum ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadableFile(path: String, reason: String)
    case invalidYAML(source: Configuration.Source, reason: String)
    case badOverride(String)
    case missing(key: String)
    case invalid(key: String, value: String, expected: String, source: Configuration.Source)
    case unknownKeys([String])
    case unknownNodeKind(node: String, kind: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            "cannot read the configuration file \(path): \(reason)"
        case .invalidYAML(let source, let reason):
            "the configuration \(source) is not valid YAML: \(reason)"
        case .badOverride(let text):
            "--set \(text): expected key=value, e.g. --set nodes.sequencer1.database.url=postgresql://…"
        case .missing(let key):
            "configuration key \(key) is required; set it in the file, as WEFT_\(key.uppercased().replacingOccurrences(of: ".", with: "__").replacingOccurrences(of: "-", with: "_")), or with --set \(key)=…"
        case .invalid(let key, let value, let expected, let source):
            "configuration key \(key) = '\(value)' (\(source)): expected \(expected)"
        case .unknownKeys(let keys):
            "unknown configuration keys (typos?): \(keys.joined(separator: ", ")); docs/operations.md lists every key"
        case .unknownNodeKind(let node, let kind):
            "node \(node) has kind '\(kind)'; expected sequencer, domain-manager, mediator or participant"
        }
    }
}
