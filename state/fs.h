// The task's fs context (state/fs.cc): a removed cwd, made again as fd kind
// 39's removed directory is (state/dir_deleted.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs {
struct FdPlan;
}

namespace crfs::state {

// Checkpoint, the task frozen: when `cwd` (readlink of /proc/PID/cwd) is a
// removed directory, strips its " (deleted)" and returns its record.
Result<std::optional<image::DeletedCwdRecord>> dump_deleted_cwd(pid_t pid, std::string& cwd);

// Hostile images: the record's path, mode, mtime and fd.
Status check_deleted_cwd(const DecodedImage& img);

// Restore, as the writer, after plan_fds: the descriptor stage 1 fchdirs to
// (the kind 39 fd's own when the record names one, else a removed directory
// made here and held in fds.copies), or -1 when the cwd is no removed one.
Result<int> plan_deleted_cwd(const DecodedImage& img, FdPlan& fds);

// A tree: a removed cwd is one member's alone (another member's cwd or fd of
// it would come back as another directory): a reason naming both.
void detect_deleted_cwd_shared(std::span<TaskView* const> members, Reasons& out);

}  // namespace crfs::state
