import Testing
import WeftWire

/// What `weft call` reads from a node's reflection service: every service and
/// method of the embedded descriptor set, with the streaming kinds protoc
/// recorded, equal to the method table codegen generated from the same files.
@Suite struct ServiceCatalogTests {
    @Test func theDescriptorSetDeclaresTheGeneratedMethods() throws {
        let catalog = try ServiceCatalog(descriptorSet: Weft.V1.descriptorSet)
        #expect(Set(catalog.methods) == Set(Weft.V1.methods))
        #expect(catalog.services.contains { $0.name == "weft.v1.HealthService" })
        #expect(catalog.method(path: "/weft.v1.HealthService/Watch")?.kind == .serverStreaming)
        #expect(catalog.method(path: "/weft.v1.HealthService/Check")?.responseType == "weft.v1.CheckResponse")
    }

    @Test func badBytesAreATypedError() {
        #expect(throws: WireError.self) { try ServiceCatalog(descriptorSet: [0x0A, 0x05, 0x01]) }
        #expect(throws: WireError.self) { try ServiceCatalog(descriptorSet: [0x0B]) }
        #expect(throws: WireError.self) { try ServiceCatalog(descriptorSet: [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]) }
    }
}
