// File descriptors of the task to restore. The parent checks and prepares
// (paths, flags, and for deleted files an unlinked copy filled from the
// image); stage 1 in the new task opens each one with the image's flags and
// the task's file-system credentials, puts it at its number with its
// close-on-exec flag, and seeks it to its offset.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

struct FdAction {
    int target = -1;
    int open_flags = 0;
    bool cloexec = false;
    bool seek = false;
    uint64_t pos = 0;
    std::string path;  // a deleted file: "/proc/self/fd/N" of its prepared copy
};

struct FdPlan {
    std::vector<FdAction> actions;
    std::vector<UniqueFd> copies;  // unlinked copies of deleted files (parent side)
    int max_target = -1;
};

// `min_fd`: the copies are moved to numbers >= min_fd (clear of every target).
Result<FdPlan> plan_fds(const DecodedImage& img, int image_fd, int min_fd);

// Stage 1 (child): opens every fd of the plan. Syscalls only.
void child_open_fds(const FdPlan& plan, int status_fd);

}  // namespace crfs
