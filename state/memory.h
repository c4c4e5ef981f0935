// The memory kind's detect half (state/memory.cc): how a mapping is
// classified, shared by detect and the dump half (state/memory_dump.h); the
// restore half and the check of a hostile image's VMAs are
// state/memory_restore.h.
#pragma once

#include "common/procfs.h"
#include "crfs/image_format.h"

namespace crfs {

// What the image records `e` as (VmaRecord.kind).
image::VmaKind classify_vma(const MapsEntry& e);

// Whether dumping `e` reads /proc/<pid>/map_files (shared anonymous memory, a
// private mapping of an unlinked file), which the kernel opens only for
// CAP_CHECKPOINT_RESTORE. Returns what the mapping is ("shared memory"), or
// nullptr when it does not.
const char* map_files_use(const MapsEntry& e);

namespace state {

// crfsd's: whether the live snapshot of a checkpoint in progress may have
// write-protected `pid`'s memory (its image, or an ancestor's tree image, is
// being taken: checkpoint/pid_lock.h). Its "uw" registrations are then
// crfs's, not the task's reason. Set by crfsd, and by a reasons worker from
// the list crfsd gives it (fs/ckpt_worker.cc); unset (a checkpoint worker, a
// tool): none is.
using OursToProtect = bool (*)(pid_t pid);
void set_ours_to_protect(OursToProtect f);

// A checkpoint worker's: whether the "uw" registration of `pid`'s area
// [start, end) is the one its checkpoint made ahead of the freeze
// (checkpoint/live_snapshot.h ProtectAhead), as the kernel answers for the
// area (an area takes one userfaultfd). Unset: none is.
using OursRegistered = bool (*)(pid_t pid, uint64_t start, uint64_t end);
void set_ours_registered(OursRegistered f);

}  // namespace state
}  // namespace crfs
