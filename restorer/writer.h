// Restoring as the writer (issue 8; docs/security-restore.md). For a writer
// that is not root, the new task takes the writer's full credentials in stage
// 1, before it opens or applies anything the image names, and the daemon's
// own look-ups of image paths run on a helper thread holding those
// credentials: the kernel then refuses what the writer could not do by hand.
// The few things the task takes from the writer instead of from the daemon
// (cgroup, login uid, rlimit and nice baselines) are read here from the
// writer's thread, and a fresh session keyring replaces the daemon's.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "restorer/restore.h"

namespace crfs {

inline constexpr int kCapCheckpointRestore = 40;

// What the new task takes from the writer and from the daemon rather than
// from its image: the same for every process of one restore, so a tree's
// processes read it once (treeperf: ~120 us a process, read for each before).
struct WriterContext {
    uint32_t last_cap = 40;
    // Applied while still root, so that the image's values are then judged by
    // the kernel against the writer's own (a hard limit may only go down, nice
    // only up, as for the writer by hand).
    struct rlimit rlimits[16] = {};
    int nice = 0;
    std::string loginuid;                   // the writer's, if not the daemon's; "" keeps it
    std::vector<std::string> cgroup_procs;  // cgroup.procs of the writer's cgroups not ours
};

struct WriterPlan {
    bool as_writer = false;  // not root: stage 1 switches credentials first
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // the image's (check_creds: among the writer's)
    uint64_t cap_bnd = ~0ull;   // the image's bounding set, dropped to while root
    bool keep_exe_cap = false;  // CAP_CHECKPOINT_RESTORE kept for the blob's exe link
    WriterContext context;
};

// What the new task takes from the writer (req.writer_pid; 0: this process).
// `shared` (a tree's): the context read for an earlier process of the same
// restore, or empty, and then filled for the later ones.
Result<WriterPlan> plan_writer(const DecodedImage& img, const RestoreRequest& req,
                               std::optional<WriterContext>* shared = nullptr);

// Runs fn with the writer's credentials: on a helper thread that switches its
// own (per-thread) credentials with raw syscalls, when plan.as_writer;
// directly otherwise.
Status as_writer(const WriterPlan& plan, const std::function<Status()>& fn);

// Stage 1 (child), syscalls only. child_writer_context runs while the task is
// root (loginuid, cgroups, bounding set, rlimit and nice baselines);
// child_become_writer switches credentials (keeping only
// CAP_CHECKPOINT_RESTORE when keep_exe_cap) and joins a fresh session keyring.
void child_writer_context(const WriterPlan& p, int status_fd);
void child_become_writer(const WriterPlan& p, int status_fd);

}  // namespace crfs
