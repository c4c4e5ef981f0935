#include "restorer/settings.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>

#include "common/strfmt.h"
#include "restorer/child.h"

namespace crfs {

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
