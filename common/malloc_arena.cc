#include "common/malloc_arena.h"

#include <malloc.h>

#include <cstdlib>

namespace crfs {

void use_one_malloc_arena() {
    if (std::getenv("CRFS_TREE_CLONE_ARENAS")) return;
    (void)mallopt(M_ARENA_MAX, 1);
}

}  // namespace crfs
