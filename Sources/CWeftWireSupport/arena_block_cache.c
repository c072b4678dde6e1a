// One reusable arena block per thread (see Arena.swift), one reusable decode
// tree (see DecodedTree.swift) and, per message type, the storage object of
// the last small value decoded on the thread (see StoragePool.swift). A
// `__thread` slot costs a few instructions; `pthread_getspecific` and
// `pthread_setspecific` on every encode and decode cost about 4% of decoding a
// small envelope. The pthread key exists only so that a thread's block, tree
// and storages are released when the thread exits.
#include "CWeftWireSupport.h"

#include <pthread.h>
#include <stdlib.h>

static __thread void *cached_block;
static __thread void *cached_tree;
static __thread void (*release_tree)(void *);
static __thread void *pooled_storage[WEFT_STORAGE_POOL_SLOTS];
static __thread void (*release_storage)(void *);
static __thread int exit_hook_armed;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void free_cached_block(void *marker) {
    (void)marker;
    // Storages first: releasing one can hand its decode tree to `cached_tree`.
    for (int slot = 0; slot < WEFT_STORAGE_POOL_SLOTS; slot++) {
        void *storage = pooled_storage[slot];
        pooled_storage[slot] = NULL;
        if (storage != NULL && release_storage != NULL) release_storage(storage);
    }
    free(cached_block);
    cached_block = NULL;
    void *tree = cached_tree;
    cached_tree = NULL;
    if (tree != NULL && release_tree != NULL) release_tree(tree);
}

void weft_thread_caches_release(void) { free_cached_block(NULL); }

static void make_exit_key(void) { (void)pthread_key_create(&exit_key, free_cached_block); }

static void arm_exit_hook(void) {
    if (exit_hook_armed) return;
    // The key's destructor runs at thread exit only for a non-NULL value.
    (void)pthread_once(&exit_key_once, make_exit_key);
    (void)pthread_setspecific(exit_key, (void *)1);
    exit_hook_armed = 1;
}

void *weft_arena_take_block(void) {
    void *block = cached_block;
    cached_block = NULL;
    return block;
}

int weft_arena_give_block(void *block) {
    if (cached_block != NULL) return 0;
    arm_exit_hook();
    cached_block = block;
    return 1;
}

void *weft_decode_tree_take(void) {
    void *tree = cached_tree;
    cached_tree = NULL;
    return tree;
}

void weft_decode_tree_give(void *tree, void (*release)(void *)) {
    arm_exit_hook();
    release_tree = release;
    void *previous = cached_tree;
    cached_tree = tree;
    if (previous != NULL) release(previous);
}

void *weft_storage_pool_take(int slot) {
    if (slot < 0 || slot >= WEFT_STORAGE_POOL_SLOTS) return NULL;
    void *storage = pooled_storage[slot];
    pooled_storage[slot] = NULL;
    return storage;
}

int weft_storage_pool_give(int slot, void *storage, void (*release)(void *)) {
    if (slot < 0 || slot >= WEFT_STORAGE_POOL_SLOTS) return 0;
    arm_exit_hook();
    release_storage = release;
    void *previous = pooled_storage[slot];
    pooled_storage[slot] = storage;
    if (previous != NULL) release(previous);
    return 1;
}
