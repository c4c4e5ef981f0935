// Delta images (issue 13, docs/incremental.md): what changed since the
// previous image of a chain, found with the kernel's written bits.
//
// Tracking is a userfaultfd in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC): the kernel clears a page's protection itself when
// the task writes it, nothing waits, and PAGEMAP_SCAN reports the page as
// PAGE_IS_WRITTEN until it is protected again. Each checkpoint of a chain,
// while frozen:
//   1. leave_unwritten  pages of tracked areas (PAGE_IS_WPALLOWED) that were
//                       not written since the previous one become keep
//                       records; the others are copied as in a complete image.
//   2. arm_tracking     every private anonymous area is registered and its
//                       pages protected: the next delta starts here.
// An area tracking does not cover (new, moved, shared, file-backed, refused
// by the kernel) is copied in full every time, never left to the base.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "checkpoint/track_channel.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/memory_dump.h"

namespace crfs {

// UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED (Linux 6.7; the
// latter makes an anonymous area count as PAGE_IS_WPALLOWED).
inline constexpr uint64_t kTrackUffdFeatures = (1u << 15) | (1u << 13);

// What a checkpoint of a chain carries in and out.
struct Tracking {
    UniqueFd uffd;       // in: the previous checkpoint's (may be stale); out: the armed one
    bool delta = false;  // a base exists: leave unwritten pages to it
    std::vector<image::KeepRecord> keeps;  // out
    uint64_t pages_kept = 0;               // out
};

// The tracking of a tree (docs/incremental.md "Trees"): one userfaultfd per
// process. A delta is taken only if the tree has the very processes (pid and
// start time) the previous image had; otherwise the image is complete and
// starts a new chain (`delta` is cleared), the trackings of the processes
// still there reused.
struct ChainTracking {
    std::vector<TrackedMember> members;  // in: the previous image's; out: armed for the next
    bool delta = false;                  // in: a base exists; out: this image is a delta
};

// Whether `members` (pid, start time) are exactly those tracked, in any order.
bool same_members(const std::vector<TrackedMember>& tracked,
                  const std::vector<std::pair<pid_t, uint64_t>>& members);

// Keeps `t.uffd` only if it still belongs to the task's memory (an exec
// makes a new one): it must register the task's areas. Before the freeze ends.
void check_tracking_uffd(const std::vector<MapsEntry>& maps, Tracking& t);

// dump_memory (state/memory_dump.h) for a chain: steps 1 and 2 above.
Result<MemoryDump> dump_memory_tracked(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer,
                                       Tracking& t);

}  // namespace crfs
