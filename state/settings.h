// Per-task settings, image record `settings` (docs/state.md rows "sched" and
// "prctl"): detect, dump and restore of both kinds live in state/settings.cc.
//
// Detect (state/kind.h): detect_prctl (a task that is not dumpable),
// detect_sched (a policy the record cannot carry: SCHED_DEADLINE, sched_ext).
//
// Dump: scheduling policy, real-time priority and reset-on-fork, CPU affinity,
// oom_score_adj, timer slack, THP disable, child subreaper, dumpable and the
// membarrier registrations. The ones only the task itself can read (timer
// slack without CAP_SYS_NICE, subreaper, dumpable, membarrier, THP disable)
// are asked by remote syscalls while it is frozen; the others come from
// sched_get*(pid) and /proc.
//
// Restore: stage 1 applies the record with the writer's
// credentials, so the kernel decides: SCHED_FIFO without CAP_SYS_NICE or
// RLIMIT_RTPRIO, an oom_score_adj below the writer's minimum without
// CAP_SYS_RESOURCE, an affinity with no CPU of this machine, all fail the
// restore with an error naming the setting. Dumpable is the blob's (it must
// follow the credential switch, which clears it). An image without the record
// restores what the restorer gives (version 2 refused tasks whose settings
// differed from that).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/remote_syscall.h"
#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/timers.h"  // state::InTask

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

struct TaskSettings {
    image::SettingsRecord rec{};
    std::string cpu_mask;  // sched_getaffinity bytes
};

// The prctl / membarrier values are asked in the task through `in` (the
// parasite's batch answers them: checkpoint/parasite.h).
Result<TaskSettings> read_task_settings(pid_t pid, const state::InTask& in);

// --- restore -----------------------------------------------------------------

struct SettingsPlan {
    bool present = false;
    image::SettingsRecord rec{};
    std::string cpu_mask;
};

enum SettingsStep : uint64_t {
    kSetAffinity = 1,
    kSetScheduler,
    kSetOomScoreAdj,
    kSetTimerSlack,
    kSetThpDisable,
    kSetChildSubreaper,
    kSetMembarrier,  // arg: kSetMembarrier | the registration bit << 8
};

SettingsPlan plan_settings(const DecodedImage& img);

// Stage 1 (child), syscalls only; a failure is CRFS_RA_STEP_SETTINGS with the step.
// /proc/self/oom_score_adj is opened before the switch to the writer's
// credentials (which makes the task non-dumpable, so its /proc files root's)
// at an fd number >= `min_fd` (above every fd the image names) and written
// after it: the kernel checks the right to lower it (CAP_SYS_RESOURCE) at the
// write, against the writer.
int child_open_oom_score_adj(const SettingsPlan& p, int min_fd, int status_fd);
void child_settings(const SettingsPlan& p, int oom_fd, int status_fd);

// "setting scheduling policy SCHED_FIFO priority 10", for the status text.
std::string settings_step_text(uint64_t arg, const DecodedImage& img);

// --- check (hostile images) --------------------------------------------------

// Each value one the restore's syscalls take to mean what the image says.
Status check_settings(const DecodedImage& img);

}  // namespace crfs
