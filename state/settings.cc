// Per-task settings: the sched and prctl kinds (state/settings.h): detect,
// dump (record `settings`) and stage-1 restore. dumpable is set by the blob
// after the credentials; no_new_privs travels with the credentials
// (state/task_attrs.cc). pdeathsig, and each thread's own slack and I/O
// priority: state/thread_attrs.h. nice: state/task_attrs.cc.
//
// What stays a reason:
//   prctl: dumpable 0  of a non-root task (/proc/<pid>/status owned by root):
//                      its user could not checkpoint it by hand either
//   sched: a policy    the settings record cannot carry: SCHED_DEADLINE
//                      (runtime, deadline, period), sched_ext or any policy
//                      newer than crfs
#include "state/settings.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>

#include "checkpoint/task_attrs.h"
#include "common/strfmt.h"
#include "restorer/child.h"
#include "state/check.h"
#include "state/kind.h"

namespace crfs::state {

// --- detect ------------------------------------------------------------------

Status detect_prctl(TaskView& t, Reasons& out) {
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
    // The files in /proc/<pid> (not the directory itself) belong to root while
    // the task is not dumpable (task_dump_owner).
    auto file = t.stat_of("status");
    if (!file) return std::unexpected(file.error());
    if ((*file)->st_uid == 0 && (*st)->uid[1] != 0)
        out.push_back("prctl: not dumpable (PR_SET_DUMPABLE 0 or a set-id exec)" +
                      std::string(kNotYet));
    return {};
}

namespace {

std::string policy_name(unsigned p) {
    static constexpr const char* kNames[] = {"SCHED_OTHER",    "SCHED_FIFO", "SCHED_RR",
                                             "SCHED_BATCH",    "SCHED_ISO",  "SCHED_IDLE",
                                             "SCHED_DEADLINE", "SCHED_EXT"};
    return p < std::size(kNames) ? kNames[p] : "policy " + std::to_string(p);
}

// What child_settings (below) sets with sched_setscheduler.
bool restorable(unsigned p) {
    return p == SCHED_OTHER || p == SCHED_FIFO || p == SCHED_RR || p == SCHED_BATCH ||
           p == SCHED_IDLE;
}

}  // namespace

Status detect_sched(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    if (!restorable((*st)->policy))
        out.push_back("sched: scheduling policy " + policy_name((*st)->policy) +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

namespace {

constexpr uint64_t kMembarrierGetRegistrations = 1 << 9;  // Linux 6.3; not in Debian 12's headers

// prctl / membarrier inside the task; a negative result is an error naming it.
Result<uint64_t> remote(const state::InTask& in, pid_t pid, const char* what, long nr, uint64_t a1,
                        uint64_t a2 = 0) {
    auto r = in.call(nr, a1, a2);
    if (!r) return std::unexpected(r.error());
    if (*r < 0 && *r > -4096) return sys_error(int(-*r), strfmt("{} in task {}", what, pid));
    return uint64_t(*r);
}

}  // namespace

Result<TaskSettings> read_task_settings(pid_t pid, const state::InTask& in) {
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

    auto slack = remote(in, pid, "PR_GET_TIMERSLACK", SYS_prctl, PR_GET_TIMERSLACK);
    if (!slack) return std::unexpected(slack.error());
    r.timer_slack_ns = *slack;
    auto thp = remote(in, pid, "PR_GET_THP_DISABLE", SYS_prctl, PR_GET_THP_DISABLE);
    if (!thp) return std::unexpected(thp.error());
    r.thp_disable = uint32_t(*thp);
    auto dump = remote(in, pid, "PR_GET_DUMPABLE", SYS_prctl, PR_GET_DUMPABLE);
    if (!dump) return std::unexpected(dump.error());
    r.dumpable = uint32_t(*dump);
    auto reaper =
        remote(in, pid, "PR_GET_CHILD_SUBREAPER", SYS_prctl, PR_GET_CHILD_SUBREAPER, in.scratch);
    if (!reaper) return std::unexpected(reaper.error());
    int32_t is_reaper = 0;
    if (auto rd = in.read_scratch(&is_reaper, sizeof is_reaper); !rd)
        return std::unexpected(rd.error());
    r.child_subreaper = is_reaper ? 1 : 0;
    auto mb = remote(in, pid, "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)", SYS_membarrier,
                     kMembarrierGetRegistrations);
    if (!mb) return std::unexpected(mb.error());
    r.membarrier = uint32_t(*mb);
    return s;
}

}  // namespace crfs

namespace crfs {

// --- restore -----------------------------------------------------------------

namespace {

const char* policy_name(uint32_t p) {
    switch (p) {
        case SCHED_OTHER:
            return "SCHED_OTHER";
        case SCHED_FIFO:
            return "SCHED_FIFO";
        case SCHED_RR:
            return "SCHED_RR";
        case SCHED_BATCH:
            return "SCHED_BATCH";
        case SCHED_IDLE:
            return "SCHED_IDLE";
    }
    return "an unknown policy";
}

void fail(int status_fd, uint64_t step) {
    child_fail(status_fd, CRFS_RA_STEP_SETTINGS, errno, step);
}

// Written only when it differs: an equal value needs no right, a lower one
// CAP_SYS_RESOURCE (the kernel's rule, checked at the write).
void set_oom_score_adj(int fd, int32_t want, int status_fd) {
    char buf[16] = {};
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    int32_t cur = 0;
    if (n <= 0 || std::from_chars(buf, buf + n, cur).ec != std::errc()) {
        if (n >= 0) errno = EIO;
        fail(status_fd, kSetOomScoreAdj);
    }
    if (cur != want) {
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, want);
        if (syscall(SYS_pwrite64, fd, buf, end - buf, 0) != end - buf)
            fail(status_fd, kSetOomScoreAdj);
    }
    syscall(SYS_close, fd);
}

}  // namespace

SettingsPlan plan_settings(const DecodedImage& img) {
    SettingsPlan p;
    if (!img.settings) return p;
    p.present = true;
    p.rec = *img.settings;
    p.cpu_mask = img.cpu_mask;
    return p;
}

int child_open_oom_score_adj(const SettingsPlan& p, int min_fd, int status_fd) {
    if (!p.present) return -1;
    int fd = int(syscall(SYS_open, "/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC));
    if (fd < 0) fail(status_fd, kSetOomScoreAdj);
    int high = int(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min_fd));
    if (high < 0) fail(status_fd, kSetOomScoreAdj);
    syscall(SYS_close, fd);
    return high;
}

void child_settings(const SettingsPlan& p, int oom_fd, int status_fd) {
    if (!p.present) return;
    const auto& r = p.rec;
    if (syscall(SYS_sched_setaffinity, 0, p.cpu_mask.size(), p.cpu_mask.data()) != 0)
        fail(status_fd, kSetAffinity);
    sched_param sp{};
    sp.sched_priority = int(r.rt_priority);
    if (syscall(SYS_sched_setscheduler, 0,
                int(r.policy) | (r.reset_on_fork ? SCHED_RESET_ON_FORK : 0), &sp) != 0)
        fail(status_fd, kSetScheduler);
    set_oom_score_adj(oom_fd, r.oom_score_adj, status_fd);
    if (syscall(SYS_prctl, PR_SET_TIMERSLACK, r.timer_slack_ns, 0, 0, 0) != 0)
        fail(status_fd, kSetTimerSlack);
    if (syscall(SYS_prctl, PR_SET_THP_DISABLE, r.thp_disable, 0, 0, 0) != 0)
        fail(status_fd, kSetThpDisable);
    if (syscall(SYS_prctl, PR_SET_CHILD_SUBREAPER, r.child_subreaper, 0, 0, 0) != 0)
        fail(status_fd, kSetChildSubreaper);
    for (uint32_t bit = 1; bit; bit <<= 1)
        if ((r.membarrier & bit) && syscall(SYS_membarrier, bit, 0, 0) != 0)
            fail(status_fd, kSetMembarrier | (uint64_t(bit) << 8));
}

std::string settings_step_text(uint64_t arg, const DecodedImage& img) {
    image::SettingsRecord r = img.settings ? *img.settings : image::SettingsRecord{};
    switch (arg & 0xff) {
        case kSetAffinity:
            return "setting the CPU affinity (no CPU of the image's mask here?)";
        case kSetScheduler:
            return strfmt("setting scheduling policy {} priority {}{}", policy_name(r.policy),
                          r.rt_priority, r.reset_on_fork ? " (reset on fork)" : "");
        case kSetOomScoreAdj:
            return strfmt("setting oom_score_adj {}", r.oom_score_adj);
        case kSetTimerSlack:
            return strfmt("setting timer slack {} ns", r.timer_slack_ns);
        case kSetThpDisable:
            return strfmt("setting PR_SET_THP_DISABLE {}", r.thp_disable);
        case kSetChildSubreaper:
            return strfmt("setting PR_SET_CHILD_SUBREAPER {}", r.child_subreaper);
        case kSetMembarrier:
            return strfmt("registering membarrier command 0x{:x}", arg >> 8);
    }
    return strfmt("setting {}", arg);
}

}  // namespace crfs

// --- check (hostile images, restorer/check_fields.cc runs it) ----------------

namespace crfs {

using check::bad;

// fidelity: the settings record, each value one the restore's syscalls take
// to mean what the image says (docs/state.md).
Status check_settings(const DecodedImage& img) {
    if (!img.settings) return {};
    const auto& r = *img.settings;
    bool rt = r.policy == 1 || r.policy == 2;  // SCHED_FIFO, SCHED_RR
    if (r.policy > 5 || r.policy == 4 ||
        (rt ? r.rt_priority < 1 || r.rt_priority > 99 : r.rt_priority))
        return bad(strfmt("settings: scheduling policy {} priority {}", r.policy, r.rt_priority));
    if (r.reset_on_fork > 1 || r.thp_disable > 1 || r.child_subreaper > 1 || r.dumpable > 1 ||
        r.reserved)
        return bad(
            strfmt("settings: a flag out of range (reset_on_fork {} thp_disable {} "
                   "child_subreaper {} dumpable {} reserved {})",
                   r.reset_on_fork, r.thp_disable, r.child_subreaper, r.dumpable, r.reserved));
    if (r.oom_score_adj < -1000 || r.oom_score_adj > 1000)
        return bad(strfmt("settings: oom_score_adj {}", r.oom_score_adj));
    // Real-time tasks have no slack (0); 0 asks a normal task for the default.
    if ((r.timer_slack_ns == 0 && !rt) || r.timer_slack_ns > uint64_t(INT64_MAX))
        return bad(strfmt("settings: timer slack {} ns", r.timer_slack_ns));
    if (r.membarrier & ~image::kMembarrierRegistrations)
        return bad(strfmt("settings: membarrier registrations 0x{:x}", r.membarrier));
    if (r.cpus_len < 8 || r.cpus_len % 8 || r.cpus_len > image::kMaxCpuMaskBytes ||
        img.cpu_mask.find_first_not_of('\0') == std::string::npos)
        return bad(strfmt("settings: CPU affinity mask of {} bytes, or no CPU", r.cpus_len));
    return {};
}

}  // namespace crfs
