// The task kind (docs/state.md "task"): detect (state/task_attrs.cc
// detect_task: kernel threads, zombies, tracers), dump and restore of the
// process attributes: identity, credentials, fs context, rlimits,
// personality, mm layout.
//
// Dump: what /proc and plain syscalls give without entering the task.
// Parsers are split from readers so they are unit-tested on fixed text; stat
// and status are parsed by common/procfs.h, for everyone. The records are
// written by checkpoint/checkpoint.cc `build_records`.
//
// Restore: process attributes of the task to restore: session and process group,
// cwd, umask, nice, personality, comm, rlimits, and the file-system
// credentials stage 1 uses to open the task's files (so a restore never opens
// a file the task could not). Credentials proper are set by the blob, last,
// because PR_SET_MM_MAP still needs the daemon's capabilities; whether the
// writer may have them is `check_creds`, here.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_reader.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "crfs/restorer_args.h"
#include "restorer/restore.h"

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

// Everything of this file that goes into the image.
struct TaskAttrs {
    ProcStat stat;
    ProcStatus status;
    uint32_t personality = 0;
    std::string cwd, root, exe;
    std::vector<uint64_t> auxv;
    image::RlimitsRecord rlimits{};
};
// Reads them for a frozen task, all but `stat` and `status`: those are its
// own as read while it is frozen (its state::TaskView's), not read again, and
// set by with_stat. (perf: a tree's member reads the rest before it takes the
// checkpoint's Serial, checkpoint/checkpoint.cc.)
Result<TaskAttrs> read_task_attrs(pid_t pid);
// `a` given its task's stat and status; a status without Umask (kernel < 4.7)
// is ENOTSUP.
Status with_stat(TaskAttrs& a, const ProcStat& stat, const ProcStatus& status);

// The 16 soft and hard limits of /proc/<pid>/limits, in the kernel's RLIMIT_*
// order. Read there, not with prlimit(2): prlimit on another user's task needs
// CAP_SYS_RESOURCE, which root lacks on some machines.
struct Limits {
    uint64_t cur[16], max[16];
};
Result<Limits> parse_limits(std::string_view text);

// --- restore -----------------------------------------------------------------

struct AttrPlan {
    pid_t image_pid = 0, image_sid = 0, image_pgid = 0;
    std::string cwd;
    int cwd_fd = -1;  // delcwd: a removed cwd made again (state/fs.h), fchdir'd to
    mode_t umask = 022;
    int nice = 0;
    uint32_t personality = 0;
    char comm[16] = {};
    struct rlimit rlimits[16] = {};
    uid_t fsuid = 0;
    gid_t fsgid = 0;
    std::vector<gid_t> groups;
};

AttrPlan plan_attrs(const DecodedImage& img);

// Credentials the blob sets (all of the image's; validate.cc decided the
// writer may have them).
void fill_creds(const DecodedImage& img, crfs_restorer_args& a, const uint32_t* groups);

// Stage 1 (child), syscalls only.
void child_session(const AttrPlan& p, int status_fd);
void child_enter_fs_creds(const AttrPlan& p, int status_fd);  // fsuid/fsgid/groups of the task
void child_leave_fs_creds(int status_fd);                     // back to root's fsuid/fsgid
void child_attrs(const AttrPlan& p, int status_fd);           // cwd, umask, nice, rlimits, ...

// --- check (hostile images) --------------------------------------------------

// nice, umask, cwd and exe paths, header flags, rlimits (soft under hard).
Status check_task(const DecodedImage& img);

// Whether the writer may have the image's credentials (EPERM naming the id or
// capability that is not the writer's); root may have any.
Status check_creds(const DecodedImage& img, const RestoreRequest& req);

}  // namespace crfs
