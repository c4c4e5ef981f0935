#include "common/xxh3_update.h"

#include <xxhash.h>

#include <cstdlib>

extern "C" void crfs_xxh3_update_avx2(void* state, const void* input, size_t len);

namespace crfs {

void xxh3_update(void* state, const void* input, size_t len) {
    // CRFS_XXH3_SSE2=1 in the environment: libxxhash's (benches: "before").
    static const bool avx2 = __builtin_cpu_supports("avx2") && !getenv("CRFS_XXH3_SSE2");
    if (avx2)
        crfs_xxh3_update_avx2(state, input, len);
    else
        XXH3_64bits_update(static_cast<XXH3_state_t*>(state), input, len);
}

}  // namespace crfs
