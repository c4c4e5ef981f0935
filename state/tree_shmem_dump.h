// The dump half of shared anonymous memory between a tree's processes
// (state/tree_shmem.h decides; state/tree_shmem_restore.h restores): while the
// tree is frozen, each object mapped by several members has its owner's
// mappings recorded as VmaKind::kAnonSharedOwner (their pages are its
// content) and every later member's as kAnonSharedTaken, without pages.
#pragma once

#include <sys/types.h>

#include <span>

#include "common/result.h"
#include "state/memfd.h"
#include "state/memory_dump.h"

namespace crfs {

// `mems[i]`: the memory dump of process `pids[i]` (image order). Sharing that
// cannot be restored fails with EBUSY and its reason (`reason` says it first).
Status share_shmem_between_members(std::span<const pid_t> pids, std::span<MemoryDump* const> mems);

// shm: a memfd held or mapped by several members is recorded once, in the
// first one's image (`memfds[i]`, image order); the others' fds and mappings
// name it by inode (state/tree_shmem_restore.h).
void share_memfds_between_members(std::span<state::MemfdDump* const> memfds);

// The record of `m`, a VMA of `mem`, with the kind the tree's sharing gave it.
image::VmaRecord tree_vma_record(const MemoryDump& mem, const MapsEntry& m);

}  // namespace crfs
