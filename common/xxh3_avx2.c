// XXH3's streaming update built for AVX2 (this file alone: -mavx2, CMake),
// called by xxh3_update (common/xxh3_update.h) only where the CPU has AVX2.
// C, and everything of xxhash.h static (XXH_INLINE_ALL): no function of
// external linkage is compiled here for AVX2 that another file could call.
#define XXH_INLINE_ALL
#include <xxhash.h>

void crfs_xxh3_update_avx2(void* state, const void* input, size_t len);

void crfs_xxh3_update_avx2(void* state, const void* input, size_t len) {
    XXH3_64bits_update((XXH3_state_t*)state, input, len);
}
