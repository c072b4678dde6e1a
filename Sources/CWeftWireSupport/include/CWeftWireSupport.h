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

/// An empty C string that is not protobuf-c's shared default: protobuf-c
/// skips a oneof string member that points at its default, so a member set to
/// "" must point elsewhere to stay present. Never written to.
static inline char *weft_empty_c_string(void) {
    static char empty[1] = {0};
    return empty;
}

#endif
