// swift-tools-version: 6.1
//
// libFuzzer targets for WeftWire, kept out of the main package so that the
// sanitizer flags and the `LLVMFuzzerTestOneInput` entry points never touch
// a normal build. Build and run them with `scripts/fuzz`.
import Foundation
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The main package: this checkout by default. `scripts/fuzz` points this at
/// a snapshot of the sources so that edits made while it builds (a release
/// build of WeftWire takes a minute) cannot fail the build half-way.
let weftPath = ProcessInfo.processInfo.environment["WEFT_FUZZ_PACKAGE_PATH"] ?? ".."

/// SwiftPM names a path dependency after its directory, so the identity is
/// whatever that directory is called (`main`, a worktree's name, ...).
let weftIdentity = String(
    (weftPath == ".." ? String(#filePath.split(separator: "/").dropLast(2).last ?? "weft") : weftPath)
        .split(separator: "/").last ?? "weft"
).lowercased()

let package = Package(
    name: "weft-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: weftPath)
    ],
    targets: [
        // Declares libFuzzer's driver, which each target's `main` calls
        // (the runtime itself comes from `-sanitize=fuzzer`, see scripts/fuzz).
        .systemLibrary(name: "CLibFuzzer"),
        // `runLibFuzzer`, the `main` of every target.
        .target(name: "FuzzDriver", dependencies: ["CLibFuzzer"], swiftSettings: swiftSettings),

        .executableTarget(
            name: "FuzzFrameDecoder",
            dependencies: ["FuzzDriver", .product(name: "WeftWire", package: weftIdentity)],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzMessages",
            dependencies: ["FuzzDriver", .product(name: "WeftWire", package: weftIdentity)],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FuzzJSON",
            dependencies: ["FuzzDriver", .product(name: "WeftWire", package: weftIdentity)],
            swiftSettings: swiftSettings
        ),
    ]
)
