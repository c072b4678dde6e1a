// weft-codegen: the generator behind codegen/generate.
//
//   weft-codegen --descriptor-set ALL.pb --plain-descriptor-set PLAIN.pb \
//                --swift-out DIR --tests-out DIR --c-out DIR --docs-out DIR \
//                --transport-out DIR --wireshark-out DIR
//
// ALL.pb is `protoc --include_source_info` output (comments become doc
// comments); PLAIN.pb, without source info, is embedded for reflection.
import Foundation

func argument(_ name: String) -> String {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else {
        FileHandle.standardError.write(Data("weft-codegen: missing \(name)\n".utf8))
        exit(64)
    }
    return arguments[index + 1]
}

func write(_ text: String, to path: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

do {
    let descriptorSet = try [UInt8](Data(contentsOf: URL(fileURLWithPath: argument("--descriptor-set"))))
    let plain = try [UInt8](Data(contentsOf: URL(fileURLWithPath: argument("--plain-descriptor-set"))))
    let swiftOut = argument("--swift-out")
    let testsOut = argument("--tests-out")
    let cOut = argument("--c-out")
    let docsOut = argument("--docs-out")
    let transportOut = argument("--transport-out")
    let wiresharkOut = argument("--wireshark-out")

    let schema = try Schema(descriptorSet: descriptorSet, onlyPackage: "weft.v1")
    let swift = SwiftEmitter(schema: schema)
    for file in schema.files {
        let base = ((file.name as NSString).lastPathComponent as NSString).deletingPathExtension
        try write(swift.emitFile(file), to: "\(swiftOut)/\(base).pb.swift")
        try write(JSONEmitter(schema: schema, swift: swift).emitFile(file), to: "\(swiftOut)/\(base).json.swift")
    }
    try write(swift.emitRegistry(), to: "\(swiftOut)/Registry.swift")
    try write(StubEmitter(schema: schema, swift: swift).emit(), to: "\(transportOut)/Services.swift")
    try write(SampleEmitter(schema: schema, swift: swift).emit(), to: "\(testsOut)/Samples.swift")
    try write(DocsEmitter.methods(schema), to: "\(docsOut)/methods.md")
    try write(LuaEmitter(schema: schema).emit(), to: "\(wiresharkOut)/weft.lua")
    try write(CEmitter.umbrellaHeader(schema), to: "\(cOut)/include/CWeftWire.h")
    try write(CEmitter.descriptorSetSource(plain), to: "\(cOut)/descriptor_set.c")
    // A module map of our own: SwiftPM refuses an umbrella header with
    // subdirectories beside it, and protoc-c's headers live in weft/v1/.
    try write("module CWeftWire {\n    header \"CWeftWire.h\"\n    export *\n}\n", to: "\(cOut)/include/module.modulemap")
} catch {
    FileHandle.standardError.write(Data("weft-codegen: \(error)\n".utf8))
    exit(1)
}
