// System V shared memory attached by the task (issue 11, sysv; docs/state.md,
// docs/image-format.md "sysv-shm").
//
// Checkpoint: every `/SYSV<key> (deleted)` mapping is an attach (shmat) of the
// segment whose shmid is its inode. Each segment is recorded once (key, id,
// size, mode, owner and creator as /proc/sysvipc/shm shows them while the task
// is frozen); each attach is a VmaKind::kSysvShm VMA whose pages (the
// segment's allocated extents, read through map_files) are its content.
// Reasons: an attach that is not whole (split, partly unmapped), a segment
// locked in memory (SHM_LOCK), one attached outside the image too (nattch
// larger than the attaches of the image's processes: they would not share the
// segment the restore makes). In a tree (sysvtree, state/sysv_ids.h) each
// process that attaches a segment records it; its content is in the first's
// attaches only (image order), and the restore makes it once.
//
// Restore, before the task exists, as the writer (restorer/writer.h): the id
// must come back too (the task holds it in memory). The writer asks the kernel
// for it through /proc/sys/kernel/shm_next_id (writable only by root of the IPC
// namespace's user namespace), then creates the segment with the same key,
// IPC_CREAT|IPC_EXCL, as the segment's creator (a root writer creates it as the
// image's cuid/cgid; any other writer as itself, and a segment some other user
// created is refused). A key or id in use (the original segment still exists),
// or an id that came out differently (the writer could not choose it, or
// another creator raced), is an error naming it: never a reuse of a live
// segment. The content is written into it, then its owner and mode are the
// image's (IPC_SET as its creator: the kernel decides). The blob attaches it at
// the task's address (SHM_RDONLY when the attach could not write, SHM_EXEC) and
// removes it (IPC_RMID) when the task's segment was removed while attached.
// A restore that fails removes what it made.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/image_reader.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/restorer_args.h"
#include "state/kind.h"
#include "state/memory_dump.h"
#include "state/sysv_ids.h"

namespace crfs {
struct WriterPlan;
}

namespace crfs::state {

// The rows of /proc/sysvipc/<name> after its header, as numbers (state/ipc.cc).
std::vector<std::vector<long long>> sysvipc_table(const char* name);

// Detect: the reasons of the task's System V attaches in `maps`.
void sysv_shm_reasons(TaskView& t, const std::vector<MapsEntry>& maps, Reasons& out);

// Checkpoint (the task frozen): one record per segment the task attaches.
Result<std::vector<image::SysvShmRecord>> dump_sysv_shm(const std::vector<MapsEntry>& maps);

// sysvtree, checkpoint of a tree (frozen): `mems[i]` and `recs[i]` are the
// memory and segments of `pids[i]` (image order). A segment's pages stay in
// its first holder's attaches only; an attach outside the tree fails (EBUSY,
// the reason `reason` gives).
Status share_sysv_shm_between_members(std::span<const pid_t> pids,
                                      std::span<MemoryDump* const> mems,
                                      std::span<std::vector<image::SysvShmRecord>* const> recs);

// Restore: the records and the kSysvShm VMAs in range and consistent.
Status check_sysv_shm(const DecodedImage& img);

// Restore, before the task is made: every segment of `img` created and filled
// (the pages of its attaches leave img.pages). `tree`: a member of a tree
// image (null: a single process); a segment an earlier member made is
// attached again (state/sysv_ids.h).
Status sysv_shm_restore(DecodedImage& img, int pages_fd, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made);

// The blob's attach of kSysvShm VMA `v` (plan_memory).
void sysv_shm_blob_vma(const DecodedImage& img, const VmaEntry& v, crfs_ra_vma& r);

}  // namespace crfs::state
