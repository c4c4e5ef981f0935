#include "checkpoint/settings.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>

#include "checkpoint/task_attrs.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

constexpr uint64_t kMembarrierGetRegistrations = 1 << 9;  // Linux 6.3; not in Debian 12's headers

// prctl / membarrier inside the task; a negative result is an error naming it.
Result<uint64_t> remote(RemoteSyscall& rs, const char* what, long nr, uint64_t a1,
                        uint64_t a2 = 0) {
    auto r = rs.call(nr, a1, a2);
    if (!r) return std::unexpected(r.error());
    if (*r < 0 && *r > -4096) return sys_error(int(-*r), strfmt("{} in task {}", what, rs.pid()));
    return uint64_t(*r);
}

}  // namespace

Result<TaskSettings> read_task_settings(pid_t pid, RemoteSyscall& rs) {
    TaskSettings s;
    auto& r = s.rec;
    int policy = sched_getscheduler(pid);
    if (policy < 0) return errno_error(strfmt("sched_getscheduler of task {}", pid));
    r.reset_on_fork = (policy & SCHED_RESET_ON_FORK) ? 1 : 0;
    r.policy = uint32_t(policy & ~SCHED_RESET_ON_FORK);
    sched_param sp{};
    if (sched_getparam(pid, &sp) != 0) return errno_error(strfmt("sched_getparam of task {}", pid));
    r.rt_priority = uint32_t(sp.sched_priority);

    s.cpu_mask.resize(image::kMaxCpuMaskBytes);
    long n = syscall(SYS_sched_getaffinity, pid, s.cpu_mask.size(), s.cpu_mask.data());
    if (n <= 0) return errno_error(strfmt("sched_getaffinity of task {}", pid));
    s.cpu_mask.resize(size_t(n));
    r.cpus_len = uint32_t(n);

    auto oom = read_proc(pid, "oom_score_adj");
    if (!oom) return std::unexpected(oom.error());
    auto [p, ec] = std::from_chars(oom->data(), oom->data() + oom->size(), r.oom_score_adj);
    if (ec != std::errc()) return make_error(EIO, strfmt("task {}: oom_score_adj {}", pid, *oom));

    auto slack = remote(rs, "PR_GET_TIMERSLACK", SYS_prctl, PR_GET_TIMERSLACK);
    if (!slack) return std::unexpected(slack.error());
    r.timer_slack_ns = *slack;
    auto thp = remote(rs, "PR_GET_THP_DISABLE", SYS_prctl, PR_GET_THP_DISABLE);
    if (!thp) return std::unexpected(thp.error());
    r.thp_disable = uint32_t(*thp);
    auto dump = remote(rs, "PR_GET_DUMPABLE", SYS_prctl, PR_GET_DUMPABLE);
    if (!dump) return std::unexpected(dump.error());
    r.dumpable = uint32_t(*dump);
    auto reaper =
        remote(rs, "PR_GET_CHILD_SUBREAPER", SYS_prctl, PR_GET_CHILD_SUBREAPER, rs.scratch());
    if (!reaper) return std::unexpected(reaper.error());
    int32_t is_reaper = 0;
    if (auto rd = rs.read_scratch(&is_reaper, sizeof is_reaper); !rd)
        return std::unexpected(rd.error());
    r.child_subreaper = is_reaper ? 1 : 0;
    auto mb = remote(rs, "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)", SYS_membarrier,
                     kMembarrierGetRegistrations);
    if (!mb) return std::unexpected(mb.error());
    r.membarrier = uint32_t(*mb);
    return s;
}

}  // namespace crfs
