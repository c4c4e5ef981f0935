// System V semaphore sets the task operated on (issue 11, sem; docs/state.md,
// docs/image-format.md "sysv-sem").
//
// Detect and checkpoint: a set some semaphore of which the task operated on
// last (semctl GETPID, as the caller: sets the caller cannot read are not
// seen) is the task's. Its key, id, mode, owner, creator, nsems and values
// (GETALL) are read while the task is frozen, as the caller. The task's
// SEM_UNDO adjustments are not seen (no /proc file shows them): a known gap.
// No reasons. In a tree (sysvtree, state/sysv_ids.h) a set is the tree's when
// a semaphore's sempid is a member's, recorded by the first such member in
// image order, and made once.
//
// Restore, before the task exists, as the writer, by the id rule of
// state/sysv_ids.h (sem_next_id): created with the same key and nsems as its
// creator, given its values (SETALL), then the image's owner and mode
// (IPC_SET as the creator: the kernel decides). A restore that fails removes
// what it made.
#pragma once

#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"
#include "state/sysv_ids.h"

namespace crfs {
struct WriterPlan;
}

namespace crfs::state {

class SysvTables;  // state/sysv_tables.h

// Checkpoint (the task frozen): one sysv-sem payload per set it operated on
// last; `image_pids`: a tree's members, image order (empty: the task alone).
// `tables`: the tables as read once for the checkpoint (state/sysv_tables.h).
Result<std::vector<std::string>> dump_sysv_sem(pid_t pid, const std::vector<pid_t>& image_pids,
                                               SysvTables& tables);

// Restore: the records in range and consistent.
Status check_sysv_sem(const DecodedImage& img);

// Restore, before the task is made: every set of `img` made with its values.
// `tree`: a member of a tree image (null: a single process).
Status sysv_sem_restore(const DecodedImage& img, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made);

}  // namespace crfs::state
