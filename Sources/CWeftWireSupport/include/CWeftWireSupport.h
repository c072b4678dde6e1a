// Small C helpers for WeftWire that Swift cannot express cheaply.
#ifndef WEFT_C_WIRE_SUPPORT_H
#define WEFT_C_WIRE_SUPPORT_H

/// Takes this thread's cached arena block (NULL if there is none); the cache is
/// then empty until `weft_arena_give_block`.
void *weft_arena_take_block(void);

/// Caches `block` (allocated with malloc) for this thread's next arena. Returns
/// 0 when the cache is already full: the caller then frees the block itself.
/// A cached block is freed when its thread exits.
int weft_arena_give_block(void *block);

/// Takes this thread's cached decode tree (a retained Swift object, NULL if
/// there is none); the cache is then empty until `weft_decode_tree_give`.
void *weft_decode_tree_take(void);

/// Caches `tree` (one retained reference) for this thread's next decode,
/// releasing a tree cached before it with `release`, which is also called for
/// the cached tree when the thread exits.
void weft_decode_tree_give(void *tree, void (*release)(void *));

/// Slots of the per-thread storage pool: one per message type (its shape
/// index), so at least as many as the schema has messages.
#define WEFT_STORAGE_POOL_SLOTS 512

/// Takes the storage object (a retained Swift object, NULL if there is none)
/// in this thread's slot `slot`; the slot is then empty until
/// `weft_storage_pool_give`.
void *weft_storage_pool_take(int slot);

/// Puts `storage` (one retained reference) in this thread's slot `slot`,
/// releasing what the slot held with `release`, which is also called for
/// every pooled storage when the thread exits. Returns 0, and keeps nothing,
/// for a slot out of range: the caller then releases `storage` itself.
int weft_storage_pool_give(int slot, void *storage, void (*release)(void *));

/// Releases this thread's cached arena block, decode tree and pooled
/// storages now, as its exit would; later encodes and decodes fill them again.
void weft_thread_caches_release(void);

/// The Swift runtime's uniqueness check (exported by libswiftCore, what
/// `isKnownUniquelyReferenced` calls), for an object reached through an
/// unmanaged pointer: checking it through a strong Swift reference would
/// retain and release it, two atomic operations on a path meant to save them.
_Bool swift_isUniquelyReferenced_nonNull_native(const void *object);

/// An empty C string that is not protobuf-c's shared default: protobuf-c
/// skips a oneof string member that points at its default, so a member set to
/// "" must point elsewhere to stay present. Never written to.
static inline char *weft_empty_c_string(void) {
    static char empty[1] = {0};
    return empty;
}

#endif
