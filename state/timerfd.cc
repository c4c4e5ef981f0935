// timerfd: clock, expiries not yet read (ticks), time to the next expiry and
// period, TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET ("settime flags"),
// from fdinfo; O_NONBLOCK is in the fd record's open flags.
//
// Time while the task was away (docs/state.md "timerfd"): a timer keeps its
// deadline on its own clock, as it would for a stopped task. The checkpoint
// records the deadline as (clock at the fdinfo read, time left); the restore
// sets that deadline again, and expiries that fell due meanwhile become ticks
// (one per period, the kernel's overrun rule): none lost, none doubled. A
// CLOCK_MONOTONIC or CLOCK_BOOTTIME deadline means nothing on another boot
// (boot_id differs): there the timer resumes with the time it had left.
// Not restorable, because fdinfo does not show it: a pending ECANCELED (the
// realtime clock was set while a CANCEL_ON_SET timer was armed and the task
// has not read since).
//
// Between its expiry and the run of its hrtimer (late when the host does not
// run the vCPU that holds it, or when that cpu's interrupt runs many timers
// due before it) an armed timer has no time left and no ticks yet: fdinfo and
// timerfd_gettime show it as they show a disarmed timer (fs/timerfd.c
// timerfd_get_remaining clamps a past expiry to 0; timerfd_tmrproc counts the
// tick). The kernel's hrtimer queues tell them apart: until its callback
// runs, /proc/timer_list lists the timer, due. See zero_left.
#include "state/timerfd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "checkpoint/files.h"
#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "state/kobj.h"
#include "state/timers.h"  // boot_id

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace crfs::state {
namespace {

constexpr uint64_t kMaxNs = 1ull << 62;  // ~146 years: every sum below stays in uint64
constexpr uint64_t kSec = 1000000000ull;
constexpr uint32_t kFlags = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET;

// A deadline is kept to within this much (docs/state.md, timerfd): the gap
// between two readings of the clock around the fdinfo read at checkpoint and
// around settime at restore, each made again (up to kTries times) when
// preempted for longer.
constexpr uint64_t kWindowNs = 50000;
constexpr int kTries = 1000;

// How long a due expiry listed in /proc/timer_list is waited for (its
// interrupt to run) before the checkpoint fails with EAGAIN (readers retry).
constexpr uint64_t kDueWaitNs = 5 * kSec;
constexpr int64_t kKtimeMax = INT64_MAX;  // .expires_next of a CPU running its timers

bool known_clock(int64_t c) {
    return c == CLOCK_REALTIME || c == CLOCK_MONOTONIC || c == CLOCK_BOOTTIME ||
           c == CLOCK_REALTIME_ALARM || c == CLOCK_BOOTTIME_ALARM;
}

bool realtime_clock(int32_t c) {
    return c == CLOCK_REALTIME || c == CLOCK_REALTIME_ALARM;
}

bool match(const FdView& f) {
    return f.link == "anon_inode:[timerfd]";
}

// "(sec, nsec)" in ns.
std::optional<uint64_t> pair_ns(std::string_view text, std::string_view key) {
    auto v = fdinfo_value(text, key);
    unsigned long long s = 0, ns = 0;
    if (!v || std::sscanf(std::string(*v).c_str(), "(%llu, %llu)", &s, &ns) != 2 ||
        s >= kMaxNs / kSec || ns >= kSec)
        return std::nullopt;
    return s * kSec + ns;
}

Result<image::TimerfdRecord> parse(int fd, std::string_view text) {
    image::TimerfdRecord r{};
    r.fd = fd;
    auto clock = fdinfo_number(text, "clockid:", 10);
    auto ticks = fdinfo_number(text, "ticks:", 10);
    auto flags = fdinfo_number(text, "settime flags:", 8);
    auto value = pair_ns(text, "it_value:");
    auto interval = pair_ns(text, "it_interval:");
    if (!clock || !ticks || !flags || !value || !interval)
        return make_error(ENOTSUP,
                          "timerfd whose fdinfo this crfs cannot read" + std::string(kNotYet));
    if (!known_clock(int64_t(*clock)))
        return make_error(ENOTSUP, strfmt("timerfd on clock {}{}", *clock, kNotYet));
    if (*flags & ~uint64_t(kFlags) || *ticks >= kMaxNs)
        return make_error(ENOTSUP, strfmt("timerfd with settime flags {} and {} ticks{}",
                                          kobj_oct(*flags), *ticks, kNotYet));
    r.clockid = int32_t(*clock);
    r.ticks = *ticks;
    r.settime_flags = uint32_t(*flags);
    r.value_ns = *value;
    r.interval_ns = *interval;
    return r;
}

uint64_t clock_ns(int32_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return uint64_t(ts.tv_sec) * kSec + uint64_t(ts.tv_nsec);
}

std::string_view next_line(std::string_view& text) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == text.npos ? text.size() : nl + 1);
    return line;
}

// "  .key: N nsecs" (the value of a field of timer_list's cpu and clock lines).
std::optional<int64_t> field_ns(std::string_view line, std::string_view key) {
    auto at = line.find(key);
    if (at == line.npos) return std::nullopt;
    long long v = 0;
    if (std::sscanf(std::string(line.substr(at + key.size())).c_str(), " : %lld", &v) != 1)
        return std::nullopt;
    return v;
}

}  // namespace

std::optional<bool> timer_list_due(std::string_view text) {
    if (!text.starts_with("Timer List Version: v0.")) return std::nullopt;
    int cpus = 0, complete = 0;  // cpu sections, and those with both hres fields
    bool listed = false;         // the current cpu lists a timer
    bool hres = false, ours = false;
    int64_t resolution = 0;
    while (!text.empty()) {
        auto line = next_line(text);
        if (line.starts_with("cpu: ")) {
            ++cpus, listed = false, hres = false;
        } else if (auto r = field_ns(line, "  .resolution")) {
            resolution = *r;
        } else if (line.starts_with(" #") && !line.starts_with(" # ")) {
            // " #N: <address>, function, S:state": a timerfd's, an alarm's, or
            // one the kernel cannot name (no kallsyms: an address) may be ours.
            auto at = line.find(">, ");
            if (at == line.npos) return std::nullopt;
            auto fn = line.substr(at + 3);
            fn = fn.substr(0, fn.find(','));
            ours = fn == "timerfd_tmrproc" || fn == "alarmtimer_fired" || fn.starts_with("0x");
            listed = true;
        } else if (line.starts_with(" # expires at ")) {
            // "[in SOFT to HARD nsecs]" from the listing's clock reading, made
            // after the caller's: a due timer's HARD is at most 0 (a relative
            // timer on a low-resolution clock: the resolution).
            long long soft = 0, hard = 0;
            auto in = line.find("[in ");
            if (in == line.npos || std::sscanf(std::string(line.substr(in)).c_str(),
                                               "[in %lld to %lld nsecs]", &soft, &hard) != 2)
                return std::nullopt;
            if (ours && hard <= resolution) return true;
        } else if (auto next = field_ns(line, "  .expires_next")) {
            // An interrupt running this cpu's timers: the one whose callback
            // runs is off the queue meanwhile, and may be ours.
            if (*next == kKtimeMax && listed) return true;
            hres = true;
        } else if (line.starts_with("  .hres_active")) {
            // Low resolution: timers run from the tick, with no trace here.
            if (field_ns(line, "  .hres_active") != 1 || !hres) return std::nullopt;
            ++complete;
        }
    }
    if (!cpus || complete != cpus) return std::nullopt;
    return false;
}

namespace {

std::string cannot_tell() {
    return "timerfd with no time left, and a /proc/timer_list this crfs cannot read to tell "
           "whether it is armed" +
           std::string(kNotYet);
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    auto r = parse(f.fd, f.fdinfo);
    if (!r) return r.error().what;
    if (!r->ticks && !r->value_ns) {  // disarmed, or due: zero_left asks timer_list
        auto text = read_file("/proc/timer_list");
        if (!text || !timer_list_due(*text)) return cannot_tell();
    }
    return std::nullopt;
}

// A periodic timer that expired and was not read shows ticks 1 and no time
// left until someone reads it or asks for its time: the kernel counts the
// periods missed meanwhile then (hrtimer_forward) and re-arms. timerfd_gettime
// on the task's own file (pidfd_getfd) does exactly that accounting, which
// the task could not tell from its own next read.
Result<UniqueFd> own_file(pid_t pid, int fd) {
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return errno_error(strfmt("fd {}: pidfd_open {}", fd, pid));
    UniqueFd own(int(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    if (!own) return errno_error(strfmt("fd {}: pidfd_getfd of the timerfd", fd));
    return own;
}

Status settle(int own, int fd) {
    itimerspec cur{};
    if (timerfd_gettime(own, &cur) < 0) return errno_error(strfmt("fd {}: timerfd_gettime", fd));
    return {};
}

// Test only: CRFS_TEST_TIMERFD_LATE_IRQ=N in crfsd's environment: the first N
// armed timerfds with no ticks, due within 4 s, that a checkpoint reads, read
// as the kernel shows such a timer between its expiry and a late interrupt (no
// time left, no ticks) until their tick comes, and /proc/timer_list counts as
// listing them due meanwhile (docs/restore.md "Fault injection"). Each one is
// logged.
bool late_irq(const image::TimerfdRecord& r, int fd) {
    static std::atomic<int> left{[] {
        const char* v = std::getenv("CRFS_TEST_TIMERFD_LATE_IRQ");
        return v ? std::atoi(v) : 0;
    }()};
    if (r.ticks || !r.value_ns || r.value_ns > 4 * kSec) return false;
    for (int n = left.load(); n > 0;)
        if (left.compare_exchange_weak(n, n - 1)) {
            std::fprintf(stderr, "CRFS_TEST_TIMERFD_LATE_IRQ: fd %d, due in %llu ns, read as due\n",
                         fd, (unsigned long long)r.value_ns);
            return true;
        }
    return false;
}

enum class Zero { kDisarmed, kReadAgain };

// A reading with neither ticks nor time left (`still_zero` makes it again):
// disarmed only when /proc/timer_list, read after it, lists no due timerfd
// (nor a cpu in the middle of running its timers) and then the timer still
// has no ticks and no time left (a realtime clock set back meanwhile gives a
// due timer time again). A due one listed (the listing does not say whose) is
// waited for, the task's file polled for the tick, up to kDueWaitNs.
Result<Zero> zero_left(int own, int fd, bool late,
                       const std::function<Result<bool>()>& still_zero) {
    uint64_t start = clock_ns(CLOCK_MONOTONIC);
    for (;;) {
        auto text = read_file("/proc/timer_list");
        auto due = text ? timer_list_due(*text) : std::nullopt;
        if (!due) return make_error(ENOTSUP, strfmt("fd {}: {}", fd, cannot_tell()));
        bool wait = *due || late;
        pollfd p{own, POLLIN, 0};
        int n = poll(&p, 1, wait ? 1 : 0);
        if (n < 0 && errno != EINTR) return errno_error(strfmt("fd {}: poll of the timerfd", fd));
        if (n > 0) return Zero::kReadAgain;  // its tick came
        if (!wait) {
            auto zero = still_zero();
            if (!zero) return std::unexpected(zero.error());
            return *zero ? Zero::kDisarmed : Zero::kReadAgain;
        }
        if (clock_ns(CLOCK_MONOTONIC) - start > kDueWaitNs)
            return make_error(EAGAIN, strfmt("fd {}: timerfd with no time left while a timer "
                                             "expiry stays due in the kernel for {} s (its "
                                             "interrupt has not run): armed or not, cannot tell",
                                             fd, kDueWaitNs / kSec));
    }
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    // Read again, between two readings of the clock: time left is relative to
    // that read, so the deadline is the later reading plus it, late by at most
    // the gap between the readings (a read preempted for longer is made again)
    // and never early. A timer that expires again between settle and the read
    // is settled again.
    auto own = own_file(pid, f.fd);
    if (!own) return std::unexpected(own.error());
    auto path = strfmt("/proc/{}/fdinfo/{}", pid, f.fd);
    Result<image::TimerfdRecord> r = make_error(EAGAIN, "");
    bool late = false;  // CRFS_TEST_TIMERFD_LATE_IRQ: until its tick comes
    for (int tries = 0; tries < kTries; ++tries) {
        if (auto s = settle(own->get(), f.fd); !s) return std::unexpected(s.error());
        uint64_t before = clock_ns(CLOCK_MONOTONIC);
        auto text = read_file(path);
        if (!text) return std::unexpected(text.error());
        r = parse(f.fd, *text);
        if (!r) return std::unexpected(r.error().context(strfmt("fd {}", f.fd)));
        r->captured_ns = clock_ns(r->clockid);
        bool in_window = clock_ns(CLOCK_MONOTONIC) - before <= kWindowNs;
        late = late || late_irq(*r, f.fd);
        if (late && !r->ticks) r->value_ns = 0;
        if (r->ticks && r->interval_ns && !r->value_ns) {
            r = make_error(EAGAIN, strfmt("fd {}: timerfd with a period of {} ns keeps expiring "
                                          "before its time can be read",
                                          f.fd, r->interval_ns));
            continue;
        }
        if (!r->ticks && !r->value_ns) {
            auto zero = zero_left(own->get(), f.fd, late, [&]() -> Result<bool> {
                auto again = read_file(path);
                if (!again) return std::unexpected(again.error());
                auto a = parse(f.fd, *again);
                if (!a) return std::unexpected(a.error().context(strfmt("fd {}", f.fd)));
                return !a->ticks && !a->value_ns;
            });
            if (!zero) return std::unexpected(zero.error());
            if (*zero == Zero::kDisarmed) break;  // no deadline to keep
            late = false;                         // its tick came
            r = make_error(EAGAIN, strfmt("fd {}: timerfd keeps expiring before its time can "
                                          "be read",
                                          f.fd));
            continue;
        }
        if (in_window) break;  // else read again
    }
    if (!r) return std::unexpected(r.error());
    auto id = boot_id();
    if (!id) return std::unexpected(id.error());
    std::memcpy(r->boot_id, id->data(), sizeof r->boot_id);
    t.records.push_back(kobj_record(image::RecordType::kTimerfd, *r));
    return {};
}

Status check(const FdEntry& f, const DecodedImage&) {
    auto r = kobj_one<image::TimerfdRecord>(f, image::RecordType::kTimerfd, "timerfd");
    if (!r) return std::unexpected(r.error());
    if (!known_clock(r->clockid)) return kobj_bad(f, strfmt("timerfd clock {}", r->clockid));
    if (r->settime_flags & ~kFlags || r->reserved)
        return kobj_bad(f, strfmt("timerfd settime flags {}", kobj_oct(r->settime_flags)));
    if (r->ticks >= kMaxNs || r->value_ns >= kMaxNs || r->interval_ns >= kMaxNs ||
        r->captured_ns >= kMaxNs)
        return kobj_bad(f, strfmt("timerfd ticks {}, time left {} ns, period {} ns, clock {} ns",
                                  r->ticks, r->value_ns, r->interval_ns, r->captured_ns));
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK))
        return kobj_bad(f, strfmt("timerfd open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    auto r = kobj_one<image::TimerfdRecord>(f, image::RecordType::kTimerfd, "timerfd");
    if (!r) return std::unexpected(r.error());
    auto id = boot_id();
    if (!id) return std::unexpected(id.error());
    p.clockid = r->clockid;
    p.flags = (f.rec.open_flags & O_NONBLOCK) ? TFD_NONBLOCK : 0;
    p.same_boot = std::memcmp(id->data(), r->boot_id, sizeof r->boot_id) == 0;
    p.n[0] = r->ticks;
    p.n[1] = r->value_ns;
    p.n[2] = r->interval_ns;
    p.n[3] = r->captured_ns;
    p.n[4] = r->settime_flags;
    return {};
}

// Test only: CRFS_TEST_TIMERFD_SET_TICKS_LATE=PATH in crfsd's environment:
// the first time in a process that ticks are set on an armed timer, its
// expiry is waited for first (poll: settime cleared the count, so readable
// means it expired), so the restore meets the expiry before
// TFD_IOC_SET_TICKS that load makes rare; PATH is made, saying whether it
// came (the restoring process's stderr is the task's: tests/cr/kobj_loop_test.py).
void test_expire_before_set_ticks(int fd, uint64_t deadline) {
    static const char* path = std::getenv("CRFS_TEST_TIMERFD_SET_TICKS_LATE");
    static std::atomic<bool> armed{path != nullptr};
    if (!deadline || !armed.exchange(false)) return;
    pollfd pfd{fd, POLLIN, 0};
    const char* said = poll(&pfd, 1, 10000) == 1 ? "expired\n" : "not expired in 10 s\n";
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return;
    (void)!write(out, said, std::strlen(said));
    close(out);
}

timespec to_ts(uint64_t ns) {
    return timespec{time_t(ns / kSec), long(ns % kSec)};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    int fd = timerfd_create(p.clockid, p.flags | TFD_CLOEXEC);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_KOBJ, errno, 0};
        return -1;
    }
    uint64_t left = p.n[1], period = p.n[2], captured = p.n[3];
    auto flags = int(p.n[4]);
    // A relative time counts from the kernel's reading of the clock inside
    // settime, somewhere between `now` and `after`: the deadline is late by at
    // most that gap, so a settime preempted for longer is made again.
    // The ticks are set after settime, which clears them; TFD_IOC_SET_TICKS
    // overwrites the count, so an expiry of the new setting before it would
    // be lost (its callback's tick overwritten, and the read that forwards a
    // periodic timer counts its overruns less that one: a tick short, seen in
    // the probes under load). So the ioctl must come before the deadline,
    // which the kernel's own lies at or after: if the clock has reached it by
    // the ioctl's end, all is made again.
    bool done = false;
    for (int tries = 0; tries < kTries && !done; ++tries) {
        uint64_t ticks = p.n[0];
        uint64_t now = clock_ns(p.clockid);
        uint64_t deadline = 0;
        if (left) {
            deadline = (p.same_boot || realtime_clock(p.clockid) ? captured : now) + left;
            if (deadline <= now) {  // fell due while away: the kernel's overrun count
                uint64_t missed = period ? (now - deadline) / period + 1 : 1;
                ticks += missed;
                deadline = period ? deadline + missed * period : 0;
            }
        }
        itimerspec its{to_ts(period), {0, 0}};
        if (deadline) its.it_value = to_ts((flags & TFD_TIMER_ABSTIME) ? deadline : deadline - now);
        // Disarmed with its flags kept: fdinfo shows "settime flags" of the last settime.
        if (timerfd_settime(fd, flags, &its, nullptr) < 0) {
            fail = {CRFS_RA_STEP_TIMER, errno, 0};
            close(fd);
            return -1;
        }
        if (deadline && !(flags & TFD_TIMER_ABSTIME) && clock_ns(p.clockid) - now > kWindowNs)
            continue;
        if (!ticks) {
            done = true;
            break;
        }
        test_expire_before_set_ticks(fd, deadline);
        if (ioctl(fd, TFD_IOC_SET_TICKS, &ticks) < 0) {
            fail = {CRFS_RA_STEP_TIMER, errno, 0};
            close(fd);
            return -1;
        }
        done = !deadline || clock_ns(p.clockid) < deadline;
    }
    if (!done) {  // a relative settime kept preempted, or a deadline always reached first
        fail = {CRFS_RA_STEP_TIMER, EAGAIN, 0};
        close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

const KobjKind kTimerfdKind = {
    image::FdKind::kTimerfd, "timerfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
