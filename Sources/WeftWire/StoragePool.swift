import CWeftWireSupport
import Synchronization

/// The storage class of a message that keeps its fields on the heap
/// (codegen's `isBoxed`), as the decode pool needs to see it.
protocol DecodedStorage: AnyObject {
    associatedtype CStruct
    init(decoded source: DecodedSource<CStruct>)
    /// Gives up the decoded struct (its tree goes to the thread's tree cache,
    /// `DecodedTree.recycle`, for the decode that takes the storage) and any
    /// fields read from it, leaving the storage as `init()` found it. Only
    /// for a storage nothing but the pool references.
    func clearForReuse()
    /// Makes a cleared storage the storage of a new decode of `source`.
    func attach(_ source: DecodedSource<CStruct>)
}

/// A generated message whose fields live in a `DecodedStorage`.
protocol BoxedMessage: CBackedMessage {
    associatedtype Storage: DecodedStorage where Storage.CStruct == CStruct
    init(storage: Storage)
}

/// Reuses the storage object of a small decoded value once the value is gone.
///
/// Decoding a small message and dropping it, a node's usual pattern (a
/// sequencer reading an envelope, a client reading a receipt), costs about as
/// much in the storage object's life as in protobuf-c's unpack: an allocation,
/// then at the value's end the release that frees it (the runtime's slow path,
/// a compare-and-swap), its `deinit` and a `free`. Each thread keeps, per
/// message type, the storage of the last small value it decoded, with one
/// reference of its own. The next decode of that type on that thread finds it
/// uniquely referenced once the value is gone, clears it and uses it again:
/// one atomic increment instead of the allocation and the free.
///
/// The pool's reference also means that a decoded value is never uniquely
/// referenced, so its first mutation copies the storage (`_uniqueStorage`),
/// and a value shared with another thread is never changed under it. A pooled
/// storage keeps its decode tree and any fields read until the thread's next
/// decode of the same type, or the thread's exit; only inputs of up to
/// `maxInputBytes` are pooled, so that is a few KiB per type and thread.
enum StoragePool {
    /// Largest input whose storage is pooled. Above it, the allocation is a
    /// small part of the decode and the memory a pooled value would hold on to
    /// grows.
    static let maxInputBytes = 2048

    /// The storage in `slot`, cleared and owned by the caller (one
    /// reference), if the value it served is gone; else nil. Unmanaged
    /// throughout: a strong reference here cost retains and releases, each
    /// an atomic operation, which is what the pool is there to save.
    @inline(__always)
    static func take<Storage: DecodedStorage>(_: Storage.Type, slot: Int) -> Unmanaged<Storage>? {
        guard let pointer = weft_storage_pool_take(Int32(truncatingIfNeeded: slot)) else { return nil }
        let storage = Unmanaged<Storage>.fromOpaque(pointer)
        guard swift_isUniquelyReferenced_nonNull_native(pointer) else {
            // A live value still holds it and keeps it; the pool lets go.
            storage.release()
            return nil
        }
        // The last release, maybe on another thread, came after that thread's
        // last read of the storage; this orders it before the reuse here.
        atomicMemoryFence(ordering: .acquiring)
        storage._withUnsafeGuaranteedRef { $0.clearForReuse() }
        return storage
    }

    /// Puts the reference `storage` stands for in `slot`, for the next decode.
    @inline(__always)
    static func give<Storage: DecodedStorage>(_ storage: Unmanaged<Storage>, slot: Int) {
        if weft_storage_pool_give(Int32(truncatingIfNeeded: slot), storage.toOpaque(), releasePooledStorage) == 0 {
            storage.release()
        }
    }
}

/// What WeftWire keeps per thread between one encode or decode and the next:
/// an arena block, a decode tree and the pooled storages (`StoragePool`).
public enum WireThreadCaches {
    /// Releases the calling thread's caches now rather than at its exit.
    ///
    /// The fuzz targets call it after each input. A pooled storage keeps the
    /// fields read from its last value, and a submessage held in a oneof is
    /// referenced through a pointer in which Swift keeps the enum's case (its
    /// spare bits). LeakSanitizer does not take such a word for a pointer, so
    /// when libFuzzer checks for leaks between inputs that submessage looked
    /// leaked although the pool still reached it (a `DeliverError` held by a
    /// pooled `SequencedEvent`, from an earlier input).
    public static func release() { weft_thread_caches_release() }
}

/// Releases a reference a thread's storage pool held (a C function pointer
/// for `weft_storage_pool_give`, also called when the thread exits).
private func releasePooledStorage(_ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    Unmanaged<AnyObject>.fromOpaque(pointer).release()
}

extension BoxedMessage {
    /// `decode` with the storage object taken from this thread's pool when the
    /// input is small (see `StoragePool`). The unpack may take
    /// `memoryBytesPerInputByte` for each input byte (`DecodeLimits`).
    static func decodePooled(
        _ bytes: UnsafeRawBufferPointer, memoryBytesPerInputByte: Int = DecodeLimits.memoryBytesPerInputByte
    ) throws(WireError) -> Self {
        guard bytes.count <= StoragePool.maxInputBytes else {
            return try decode(bytes, memoryBytesPerInputByte: memoryBytesPerInputByte)
        }
        // Cleared first: its tree goes to the thread's tree cache, which the
        // unpack takes. (Rewinding the storage's tree directly, without the
        // cache, ran about 10 ns slower per envelope encode and decode, for
        // reasons the profiles did not show.)
        let reused = StoragePool.take(Storage.self, slot: shapeIndex)
        let source: DecodedSource<CStruct>
        do throws(WireError) {
            source = try unpackChecked(bytes, memoryBytesPerInputByte: memoryBytesPerInputByte)
        } catch {
            if let reused { StoragePool.give(reused, slot: shapeIndex) }
            throw error
        }
        let storage: Unmanaged<Storage>
        if let reused {
            reused._withUnsafeGuaranteedRef { $0.attach(source) }
            storage = reused
        } else {
            storage = .passRetained(Storage(decoded: source))
        }
        // One reference for the value, one for the pool.
        StoragePool.give(storage.retain(), slot: shapeIndex)
        return Self(storage: storage.takeRetainedValue())
    }

    /// `decodePooled` from an array, specialized for each generated type.
    static func decodePooled(_ bytes: [UInt8]) throws(WireError) -> Self {
        let result: Result<Self, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try decodePooled(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
