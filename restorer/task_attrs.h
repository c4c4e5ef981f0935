// Process attributes of the task to restore: session and process group,
// cwd, umask, nice, personality, comm, rlimits, and the file-system
// credentials stage 1 uses to open the task's files (so a restore never opens
// a file the task could not). Credentials proper are set by the blob, last,
// because PR_SET_MM_MAP still needs the daemon's capabilities.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "common/image_reader.h"
#include "crfs/restorer_args.h"

namespace crfs {

struct AttrPlan {
    pid_t image_pid = 0, image_sid = 0, image_pgid = 0;
    std::string cwd;
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

}  // namespace crfs
