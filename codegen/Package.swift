// swift-tools-version: 6.1
//
// weft-codegen: reads the FileDescriptorSet that `protoc --descriptor_set_out`
// writes for Proto/ and emits Weft's generated sources. Run through
// `codegen/generate`, never by hand. No dependencies, so it builds in seconds.
import PackageDescription

let package = Package(
    name: "weft-codegen",
    targets: [
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        // protoc-c output for google/protobuf/descriptor.proto (written by `generate`).
        .target(name: "CDescriptor", dependencies: ["CProtobufC"]),
        .executableTarget(
            name: "weft-codegen",
            dependencies: ["CDescriptor", "CProtobufC"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
