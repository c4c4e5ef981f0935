// POSIX timers (state/timers.cc): read in the frozen task, range-checked in
// a hostile image, made again in stage 1 of a restore with their ids.
#pragma once

#include <sys/types.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/restorer_args.h"

namespace crfs::state {

// The 16 bytes of /proc/sys/kernel/random/boot_id: whether a monotonic
// deadline of an image still means the same instant (timers, timerfd).
Result<std::string> boot_id();

// A syscall run inside the frozen task (checkpoint/remote_syscall.h), and the
// task's scratch bytes it may write to.
struct InTask {
    std::function<Result<int64_t>(long nr, uint64_t a1, uint64_t a2)> call;
    std::function<Status(void* out, size_t len)> read_scratch;
    uint64_t scratch = 0;
};

// Checkpoint: every timer of `timers` (the text of /proc/<pid>/timers, as the
// task's view read it while frozen: TaskView::timers) with its time
// (timer_gettime in the task), read on both sides of `reread_pending` (which reads the
// task's pending signals again) until no timer expired in between; `threads`:
// the target of each timer signalling a thread other than the main one.
struct PosixTimers {
    std::vector<image::PosixTimerRecord> timers;
    std::vector<image::PosixTimerThreadRecord> threads;  // id order
};
Result<PosixTimers> dump_posix_timers(pid_t pid, std::string_view timers, const InTask& in,
                                      const std::function<Status()>& reread_pending);

// Restore: the records in range.
Status check_posix_timers(const DecodedImage& img);

// Stage 1, in the new task (as the writer): each timer made with its id
// (PR_TIMER_CREATE_RESTORE_IDS, else ids handed out in order, gaps filled and
// freed again) and armed. On failure: the errno and the timer id, for
// child_fail(CRFS_RA_STEP_POSIX_TIMER). No allocation: it runs in the clone.
// The timers signalling another thread are left to the blob (`blob`: made
// once the threads exist, restorer/blob/thread_timers.h).
struct TimersPlan {
    std::vector<image::PosixTimerRecord> timers;
    std::vector<crfs_ra_posix_timer> blob;
    bool same_boot = false;
};
Result<TimersPlan> plan_posix_timers(const DecodedImage& img);
struct TimerFail {
    int err = 0;
    int32_t id = 0;
};
TimerFail child_posix_timers(const TimersPlan& p);

}  // namespace crfs::state
