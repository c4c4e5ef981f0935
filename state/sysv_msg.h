// System V message queues the task used (issue 11, sem; docs/state.md,
// docs/image-format.md "sysv-msg").
//
// Detect and checkpoint: a queue whose last msgsnd or msgrcv was the task's
// (lspid/lrpid of /proc/sysvipc/msg) is the task's. Its key, id, mode, owner,
// creator, qbytes and every queued message (type and text, in queue order)
// are read while the task is frozen, as the caller (msgctl IPC_STAT and
// msgrcv MSG_COPY, which copies without consuming: the kernel decides whether
// the caller may read the queue). Reasons: a queue the caller cannot read,
// one larger than an image holds. In a tree (sysvtree, state/sysv_ids.h) a
// queue is the tree's when its lspid or lrpid is a member's, recorded by the
// first such member in image order, and made once.
//
// Restore, before the task exists, as the writer, by the id rule of
// state/sysv_ids.h (msg_next_id): created with the same key as its creator,
// given the image's qbytes, refilled (msgsnd, in order), then given the
// image's owner and mode (IPC_SET as the creator: the kernel decides). A
// restore that fails removes what it made.
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

// Detect: the reasons of the queues the task used last.
void sysv_msg_reasons(TaskView& t, Reasons& out);

// Checkpoint (the task frozen): one sysv-msg payload per queue it used last.
// `image_pids`: a tree's members, image order (empty: the task alone).
// `tables`: the tables as read once for the checkpoint (state/sysv_tables.h).
Result<std::vector<std::string>> dump_sysv_msg(pid_t pid, const std::vector<pid_t>& image_pids,
                                               SysvTables& tables);

// Restore: the records in range and consistent.
Status check_sysv_msg(const DecodedImage& img);

// Restore, before the task is made: every queue of `img` made and refilled.
// `tree`: a member of a tree image (null: a single process).
Status sysv_msg_restore(const DecodedImage& img, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made);

}  // namespace crfs::state
