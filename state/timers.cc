// Timers. itimers (ITIMER_REAL/VIRTUAL/PROF) are captured by the parasite
// (checkpoint/parasite.cc) and re-armed by the blob. POSIX timers
// (timer_create), the whole story here (docs/state.md, "timers"):
//
//   detect    /proc/<pid>/timers: a notification or clock a restore cannot
//             make again is a reason (a signal to a thread that has exited,
//             a CPU clock of another process)
//   dump      timer_gettime run in the frozen task (id, clock, sigevent from
//             /proc; time left and period from the task), twice around a
//             read of the pending signals (a timer signal pending then is
//             restored as a queued signal with its siginfo)
//   check     a hostile image's records in range
//   restore   stage 1, as the writer: timer_create with the same id
//             (PR_TIMER_CREATE_RESTORE_IDS, unprivileged on 6.18; on a kernel
//             without it ids are handed out in order from 0 in the new
//             process, so gaps are filled with timers deleted again), then
//             armed. A timer signalling a thread other than the main one
//             (glibc's SIGEV_THREAD: its helper thread) is made by the blob
//             once the threads exist (restorer/blob/thread_timers.h), with
//             the prctl: the kernel takes only a target of its own group.
//
// Time while the task was away: as for a timerfd (state/timerfd.cc). A timer
// on a wall clock keeps its deadline (an absolute settime at the instant it
// had), and periods that fell due meanwhile are the kernel's overrun of the
// first signal after the restore; a CLOCK_MONOTONIC/BOOTTIME deadline on
// another boot (boot_id differs) and a CPU-time clock resume with the time
// they had left. timerfd is an fd kind (state/timerfd.cc).
#include "state/timers.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/kind.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif
#ifndef SIGEV_THREAD_ID
#define SIGEV_THREAD_ID 4
#endif

namespace crfs::state {
namespace {

constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kMaxNs = 1ull << 62;
constexpr int kTries = 100;
constexpr int32_t kOwnProcessCpuClock = -6;  // ((~0) << 3) | CPUCLOCK_SCHED
constexpr int32_t kOwnThreadCpuClock = -2;   // ... | CPUCLOCK_PERTHREAD_MASK
// In the fallback without PR_TIMER_CREATE_RESTORE_IDS, ids are filled up to here.
constexpr int32_t kMaxFilledId = 4096;

// One entry of /proc/<pid>/timers.
struct ProcTimer {
    int32_t id = -1, signo = 0, clockid = 0, target = 0;
    uint64_t sigval = 0;
    std::string notify;  // "signal", "none", "thread"
    bool to_thread = false;
};

Result<std::vector<ProcTimer>> parse_timers(std::string_view text) {
    std::vector<ProcTimer> out;
    size_t pos = 0;
    auto bad = [](std::string_view line) {
        return make_error(EIO, strfmt("/proc/PID/timers: cannot read the line \"{}\"", line));
    };
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        std::string line(text.substr(pos, eol == std::string_view::npos ? eol : eol - pos));
        pos = eol == std::string_view::npos ? text.size() : eol + 1;
        if (line.empty()) continue;
        if (line.rfind("ID: ", 0) == 0) {
            out.emplace_back();
            if (std::sscanf(line.c_str(), "ID: %d", &out.back().id) != 1) return bad(line);
            continue;
        }
        if (out.empty()) return bad(line);
        ProcTimer& t = out.back();
        unsigned long long v = 0;
        char what[16] = {}, kind[8] = {};
        if (line.rfind("signal: ", 0) == 0) {
            if (std::sscanf(line.c_str(), "signal: %d/%llx", &t.signo, &v) != 2) return bad(line);
            t.sigval = v;
        } else if (line.rfind("notify: ", 0) == 0) {
            if (std::sscanf(line.c_str(), "notify: %15[a-z]/%7[a-z].%d", what, kind, &t.target) !=
                3)
                return bad(line);
            t.notify = what;
            t.to_thread = std::strcmp(kind, "tid") == 0;
        } else if (line.rfind("ClockID: ", 0) == 0) {
            if (std::sscanf(line.c_str(), "ClockID: %d", &t.clockid) != 1) return bad(line);
            // CPU clocks show as the kernel's own ids: MAKE_PROCESS_CPUCLOCK(0,
            // CPUCLOCK_SCHED) is what CLOCK_PROCESS_CPUTIME_ID becomes, the
            // thread one likewise; another pid's CPU clock shows its pid.
            if (t.clockid == kOwnProcessCpuClock)
                t.clockid = CLOCK_PROCESS_CPUTIME_ID;
            else if (t.clockid == kOwnThreadCpuClock)
                t.clockid = CLOCK_THREAD_CPUTIME_ID;
            else if (t.clockid == CLOCK_PROCESS_CPUTIME_ID || t.clockid == CLOCK_THREAD_CPUTIME_ID)
                t.clockid = -1000;  // never shown so: not trusted
        } else {
            return bad(line);
        }
    }
    return out;
}

bool wall_clock(int32_t c) {
    return c == CLOCK_REALTIME || c == CLOCK_MONOTONIC || c == CLOCK_BOOTTIME ||
           c == CLOCK_REALTIME_ALARM || c == CLOCK_BOOTTIME_ALARM;
}

bool cpu_clock(int32_t c) {
    return c == CLOCK_PROCESS_CPUTIME_ID || c == CLOCK_THREAD_CPUTIME_ID;
}

// Whether `tid` is a thread of process `pid` (as /proc shows both).
bool thread_of(pid_t pid, int32_t tid) {
    return tid > 0 && access(strfmt("/proc/{}/task/{}", pid, tid).c_str(), F_OK) == 0;
}

// What of a timer a restore cannot make again; empty if it can.
std::string unsupported(const ProcTimer& t, pid_t pid, int threads) {
    if (!wall_clock(t.clockid) && !cpu_clock(t.clockid))
        return strfmt("on clock {} (a CPU clock of another process or thread)", t.clockid);
    if (t.clockid == CLOCK_THREAD_CPUTIME_ID && threads > 1)
        return "on CLOCK_THREAD_CPUTIME_ID in a task with threads (whose CPU time it counts is "
               "not shown)";
    if (t.notify != "signal" && t.notify != "none")
        return "with notification " + t.notify + " (SIGEV_THREAD: a helper thread)";
    if (t.to_thread && t.target != pid && !thread_of(pid, t.target))
        return strfmt("signalling thread {} (SIGEV_THREAD_ID to a thread that has exited)",
                      t.target);
    if (!t.to_thread && t.target != pid) return strfmt("signalling process {}", t.target);
    return {};
}

uint64_t clock_ns(int32_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * kSec + uint64_t(ts.tv_nsec);
}

uint64_t ts_ns(const timespec& ts) {
    return uint64_t(ts.tv_sec) * kSec + uint64_t(ts.tv_nsec);
}

timespec to_ts(uint64_t ns) {
    return timespec{time_t(ns / kSec), long(ns % kSec)};
}

}  // namespace

Result<std::string> boot_id() {
    auto text = read_file("/proc/sys/kernel/random/boot_id");
    if (!text) return std::unexpected(text.error());
    std::string hex;
    for (char c : *text)
        if (std::isxdigit(static_cast<unsigned char>(c))) hex += c;
    if (hex.size() != 32) return make_error(EIO, "/proc/sys/kernel/random/boot_id: not a UUID");
    std::string out(16, '\0');
    for (size_t i = 0; i < 16; ++i) out[i] = char(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    return out;
}

Status detect_timers(TaskView& t, Reasons& out) {
    auto text = t.timers();
    if (!text) return std::unexpected(text.error());
    auto timers = parse_timers(**text);
    if (!timers) {
        out.push_back("timers: " + timers.error().what);
        return {};
    }
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
    for (const ProcTimer& p : *timers)
        if (auto why = unsupported(p, t.pid(), (*st)->threads); !why.empty())
            out.push_back(strfmt("timers: POSIX timer {} ", p.id) + why + std::string(kNotYet));
    return {};
}

namespace {

// Each timer's time, asked in the task (timer_gettime).
Result<PosixTimers> read_times(const std::vector<ProcTimer>& timers, const InTask& in, pid_t pid,
                               const std::string& boot) {
    PosixTimers all;
    auto& out = all.timers;
    for (const ProcTimer& p : timers) {
        if (auto why = unsupported(p, pid, 1); !why.empty())
            return make_error(EBUSY, strfmt("timers: POSIX timer {} {}", p.id, why));
        auto r = in.call(SYS_timer_gettime, uint64_t(p.id), in.scratch);
        if (!r) return std::unexpected(r.error());
        if (*r < 0) return sys_error(int(-*r), strfmt("timer_gettime({}) in the task", p.id));
        uint64_t captured = wall_clock(p.clockid) ? clock_ns(p.clockid) : 0;
        itimerspec its{};
        if (auto s = in.read_scratch(&its, sizeof its); !s) return std::unexpected(s.error());
        image::PosixTimerRecord t{};
        t.id = p.id;
        t.clockid = p.clockid;
        t.notify = p.notify == "none" ? SIGEV_NONE : p.to_thread ? SIGEV_THREAD_ID : SIGEV_SIGNAL;
        t.signo = p.signo;
        t.sigval = p.sigval;
        t.value_ns = ts_ns(its.it_value);
        t.interval_ns = ts_ns(its.it_interval);
        t.captured_ns = captured;
        std::memcpy(t.boot_id, boot.data(), sizeof t.boot_id);
        out.push_back(t);
        if (p.to_thread && p.target != pid) all.threads.push_back({p.id, p.target});
    }
    // /proc lists the newest first; the image holds them in id order.
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    std::sort(all.threads.begin(), all.threads.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    return all;
}

// Whether a timer expired between two readings (its time left went up, or
// a one-shot timer went off): a signal may have been queued in between.
bool expired_between(const std::vector<image::PosixTimerRecord>& a,
                     const std::vector<image::PosixTimerRecord>& b) {
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (a[i].value_ns && (b[i].value_ns > a[i].value_ns || !b[i].value_ns)) return true;
    return a.size() != b.size();
}

}  // namespace

Result<PosixTimers> dump_posix_timers(pid_t pid, std::string_view text, const InTask& in,
                                      const std::function<Status()>& reread_pending) {
    auto timers = parse_timers(text);
    if (!timers) return std::unexpected(timers.error());
    if (timers->empty()) return PosixTimers{};
    auto boot = boot_id();
    if (!boot) return std::unexpected(boot.error());
    // The timers run on while the task is frozen, and an expiry queues a
    // signal: the queue is read again between two readings of the timers,
    // until no timer expired in between, so that the pending signals and the
    // times agree (each expiry either queued or still ahead, never both).
    for (int tries = 0; tries < kTries; ++tries) {
        auto before = read_times(*timers, in, pid, *boot);
        if (!before) return std::unexpected(before.error());
        if (auto s = reread_pending(); !s) return std::unexpected(s.error());
        auto after = read_times(*timers, in, pid, *boot);
        if (!after) return std::unexpected(after.error());
        if (!expired_between(before->timers, after->timers)) return after;
    }
    return make_error(EBUSY,
                      "timers: a POSIX timer keeps expiring while its time is read; "
                      "not supported");
}

Status check_posix_timers(const DecodedImage& img) {
    for (const auto& t : img.posix_timers) {
        auto bad = [&](std::string what) {
            return make_error(EINVAL,
                              strfmt("image field out of range: POSIX timer {}: {}", t.id, what));
        };
        if (t.id < 0) return bad("id");
        if (!wall_clock(t.clockid) && !cpu_clock(t.clockid))
            return bad(strfmt("clock {}", t.clockid));
        if (t.clockid == CLOCK_THREAD_CPUTIME_ID && !img.threads.empty())
            return bad("a thread CPU clock in a task with threads");
        if (t.notify != SIGEV_SIGNAL && t.notify != SIGEV_NONE && t.notify != SIGEV_THREAD_ID)
            return bad(strfmt("notify {}", t.notify));
        bool signals = t.notify != SIGEV_NONE;
        if (t.signo < (signals ? 1 : 0) || t.signo > 64 ||
            (signals && (t.signo == SIGKILL || t.signo == SIGSTOP)))
            return bad(strfmt("signal {}", t.signo));
        if (t.value_ns >= kMaxNs || t.interval_ns >= kMaxNs || t.captured_ns >= kMaxNs)
            return bad(strfmt("time left {} ns, period {} ns, clock {} ns", t.value_ns,
                              t.interval_ns, t.captured_ns));
    }
    for (const auto& th : img.posix_timer_threads) {  // timer
        auto t = std::find_if(img.posix_timers.begin(), img.posix_timers.end(),
                              [&](const auto& x) { return x.id == th.id; });
        if (t == img.posix_timers.end() || t->notify != SIGEV_THREAD_ID)
            return make_error(EINVAL, strfmt("image field out of range: POSIX timer {}: a target "
                                             "thread for a timer that signals no thread",
                                             th.id));
        bool known = std::any_of(img.threads.begin(), img.threads.end(),
                                 [&](const auto& x) { return x.rec.tid == th.tid; });
        if (!known || th.tid == img.task.pid)
            return make_error(EINVAL, strfmt("image field out of range: POSIX timer {}: target "
                                             "thread {} is not one of the other threads",
                                             th.id, th.tid));
    }
    if (!img.posix_timers.empty() && img.posix_timers.back().id >= int32_t(image::kMaxPosixTimers))
        return make_error(EINVAL, strfmt("image field out of range: POSIX timer id {}",
                                         img.posix_timers.back().id));
    return {};
}

namespace {

// The timer_settime of a restored timer. A wall-clock deadline stays where
// it was; one already past fires at once, its missed periods the kernel's
// overrun.
struct Arming {
    itimerspec its;
    int flags = 0;
};
Arming arming(const image::PosixTimerRecord& t, bool same_boot) {
    Arming a{{to_ts(t.interval_ns), to_ts(t.value_ns)}};
    if (wall_clock(t.clockid) &&
        (same_boot || t.clockid == CLOCK_REALTIME || t.clockid == CLOCK_REALTIME_ALARM)) {
        a.its.it_value = to_ts(t.captured_ns + t.value_ns);
        a.flags = TIMER_ABSTIME;
    }
    return a;
}

}  // namespace

Result<TimersPlan> plan_posix_timers(const DecodedImage& img) {
    TimersPlan p;
    if (img.posix_timers.empty()) return p;
    auto id = boot_id();
    if (!id) return std::unexpected(id.error());
    const auto& first = img.posix_timers[0];
    p.same_boot = std::memcmp(id->data(), first.boot_id, sizeof first.boot_id) == 0;
    for (const auto& t : img.posix_timers) {
        if (std::memcmp(t.boot_id, first.boot_id, sizeof t.boot_id) != 0)
            return make_error(EINVAL, "image field out of range: POSIX timers of two boots");
        auto th = std::find_if(img.posix_timer_threads.begin(), img.posix_timer_threads.end(),
                               [&](const auto& x) { return x.id == t.id; });
        if (th == img.posix_timer_threads.end()) {
            p.timers.push_back(t);
            continue;
        }
        crfs_ra_posix_timer b{};  // timer: made by the blob once its thread exists
        b.id = t.id;
        b.clockid = t.clockid;
        b.signo = t.signo;
        b.tid = th->tid;
        b.sigval = t.sigval;
        if (t.value_ns) {  // else disarmed: all zero
            Arming a = arming(t, p.same_boot);
            b.its[0] = a.its.it_interval.tv_sec, b.its[1] = a.its.it_interval.tv_nsec;
            b.its[2] = a.its.it_value.tv_sec, b.its[3] = a.its.it_value.tv_nsec;
            b.settime_flags = a.flags;
        }
        p.blob.push_back(b);
    }
    return p;
}

TimerFail child_posix_timers(const TimersPlan& p) {
    if (p.timers.empty() && p.blob.empty()) return {};
    // With the prctl, timer_create takes the id it finds at its third argument.
    bool chosen = prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0) == 0;
    // The blob makes the timers signalling another thread with the prctl:
    // without it their ids cannot be chosen after the fillers are gone.
    if (!chosen && !p.blob.empty()) return {EOPNOTSUPP, p.blob[0].id};
    int32_t next = 0;  // without: the id the kernel hands out next in this new process
    for (const auto& t : p.timers) {
        sigevent sev{};
        sev.sigev_notify = t.notify;
        sev.sigev_signo = t.signo;
        sev.sigev_value.sival_ptr = reinterpret_cast<void*>(t.sigval);
        if (t.notify == SIGEV_THREAD_ID) sev._sigev_un._tid = int(syscall(SYS_gettid));
        int kid = t.id;
        if (!chosen) {
            if (t.id >= kMaxFilledId) return {ENOSPC, t.id};
            for (; next < t.id; ++next) {  // a gap: fill it, free it after
                sigevent none{};
                none.sigev_notify = SIGEV_NONE;
                int filler = -1;
                if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &none, &filler) != 0)
                    return {errno, t.id};
                if (filler != next) return {EEXIST, t.id};
            }
        }
        if (syscall(SYS_timer_create, t.clockid, &sev, &kid) != 0) return {errno, t.id};
        if (kid != t.id) return {EEXIST, t.id};
        next = t.id + 1;
    }
    if (chosen) prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0);
    if (!chosen) {  // free the fillers: every id below the last that is not a timer
        size_t i = 0;
        for (int32_t id = 0; id < p.timers.back().id; ++id) {
            while (i < p.timers.size() && p.timers[i].id < id) ++i;
            if (i < p.timers.size() && p.timers[i].id == id) continue;
            if (syscall(SYS_timer_delete, id) != 0) return {errno, id};
        }
    }
    for (const auto& t : p.timers) {
        if (!t.value_ns) continue;  // disarmed
        Arming a = arming(t, p.same_boot);
        if (syscall(SYS_timer_settime, t.id, a.flags, &a.its, nullptr) != 0) return {errno, t.id};
    }
    return {};
}

}  // namespace crfs::state
