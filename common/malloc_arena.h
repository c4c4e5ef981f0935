// The daemon's malloc, one arena (session 17, s17-malloc). glibc gives each
// thread an arena of its own (up to 8 per core), and a thread's arena keeps
// the free memory at its top (what a decode or a plan freed last) as long as
// it is below glibc's trim threshold, which rises with the largest block
// freed (up to 64 MiB); `malloc_trim(0)` gives back the free pages inside an
// arena's bins and the main arena's top, never a thread arena's top. A tree's
// members are clones of the daemon (state/tree_restore.h) and each copied
// those pages (4 MiB per member on a daemon's second restore). With one
// arena, the main one, whose top `malloc_trim(0)` gives back, every free page
// is given back before the root's clone.
#pragma once

namespace crfs {

// Before any thread starts (glibc attaches a thread to an arena at its first
// malloc). Nothing with CRFS_TREE_CLONE_ARENAS=1 in the environment (benches:
// glibc's arenas, the old path).
void use_one_malloc_arena();

}  // namespace crfs
