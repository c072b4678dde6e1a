import CWeftWire

extension Weft.V1 {
    /// The serialized `google.protobuf.FileDescriptorSet` of `Proto/weft/v1`,
    /// embedded at build time, as served by `weft.v1.ReflectionService`.
    /// Generic tools read message and method definitions from it.
    public static var descriptorSet: [UInt8] {
        [UInt8](UnsafeBufferPointer(start: weft_descriptor_set_pointer(), count: weft_descriptor_set_size))
    }
}
