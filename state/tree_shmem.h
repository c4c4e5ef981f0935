// Shared anonymous memory between the processes of a tree (issues 10 and 11;
// docs/trees.md, "Shared memory between members"): a MAP_SHARED|MAP_ANONYMOUS
// area mapped before a fork is ONE shmem object in every process that maps
// it. The object is named by the kernel's identity of its shmem file (device
// and inode in /proc/<pid>/maps), never by addresses.
//
// One rule, used by `reason` (the memory kind's detect, per member) and by
// the checkpoint (state/tree_shmem_dump.h), so they cannot disagree:
//   - its first holder in image order (parents first) is its owner: its
//     mappings of the object carry the content (VmaKind::kAnonSharedOwner);
//   - every later member that maps it takes it (kAnonSharedTaken, no pages),
//     if every page it maps is one the owner maps too (else a reason naming
//     both pids: those pages would have no content);
//   - a process outside the image that maps it is a reason naming it.
// Restore: state/tree_shmem_restore.h.
#pragma once

#include <sys/types.h>

#include <compare>
#include <cstdint>
#include <span>
#include <vector>

#include "common/procfs.h"
#include "state/kind.h"

namespace crfs::state {

// The kernel's identity of a shmem object.
struct ShmemKey {
    uint64_t dev = 0, ino = 0;
    auto operator<=>(const ShmemKey&) const = default;
};

// The mappings of `pid` (maps, not smaps: only the identities are needed);
// empty if it is gone or not the caller's to read. (Also state/sysv_shm.cc.)
std::vector<MapsEntry> maps_of(pid_t pid);

// The mappings of member `pid` as `t`'s detect sees them: in a tree
// checkpoint, its view's smaps (read once while frozen, for its own detect
// and dump too); else maps_of, kept in `storage`.
const std::vector<MapsEntry>& member_maps(TaskView& t, pid_t pid, std::vector<MapsEntry>& storage);

// Whether `m` maps shared anonymous memory that a tree may share (not System
// V, which is the memory kind's own reason); its object in `key`.
bool tree_shmem_key(const MapsEntry& m, ShmemKey& key);

// Whether the pages `m` maps of its object all lie in mappings `owner` makes of it.
bool shmem_covered(const MapsEntry& m, std::span<const MapsEntry* const> owner);

// An object mapped by two or more members: its owner and takers (indexes).
struct ShmemShare {
    ShmemKey key;
    size_t owner = 0;
    std::vector<size_t> takers;
};
// `maps[i]`: the mappings of `pids[i]` (image order). A reason in `out`,
// naming both pids, for every taker mapping pages its owner does not.
std::vector<ShmemShare> classify_shmem(std::span<const pid_t> pids,
                                       std::span<const std::vector<MapsEntry>* const> maps,
                                       Reasons& out);

// Detect (state/memory.cc), per task: its shared anonymous mappings shared
// with a process outside the image, or mapping pages the object's owner in
// the tree does not. Replaces the single-process "mapped by another process".
void shmem_share_reasons(TaskView& t, Reasons& out);

}  // namespace crfs::state
