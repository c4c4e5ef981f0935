// The dump half of what a tree's processes share (state/tree_share.h decides;
// state/tree_share_restore.h restores): while the tree is frozen, each fd that an
// earlier process gives becomes a kShared fd record with a share-fd record
// naming the giver, and loses its kind's records (the giver's carry the
// description, or the pipe and its bytes).
#pragma once

#include <sys/types.h>

#include <memory>
#include <span>
#include <vector>

#include "checkpoint/files.h"
#include "common/result.h"

namespace crfs {
namespace state {
class TaskView;  // state/kind.h
}

// `fds[i]`: the captured fds of process `pids[i]` (image order). Sharing that
// cannot be restored fails with EBUSY and its reason (`reason` says it first).
// `views[i]`: the view of `pids[i]` its detect and capture read while frozen
// (its fds, read once; the checkpoint's kcmp answers, state/kcmp_cache.h).
Status share_between_members(std::span<const pid_t> pids, std::span<std::vector<TaskFd>*> fds,
                             std::span<state::TaskView* const> views);

}  // namespace crfs
