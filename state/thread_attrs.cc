#include "state/thread_attrs.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstdint>

#include "common/strfmt.h"

namespace crfs::state {

namespace {

constexpr uint64_t kIoprioWhoProcess = 1;  // linux/ioprio.h
constexpr uint32_t kIoprioClassShift = 13;
constexpr uint32_t kIoprioMaxHint = 7;  // IOPRIO_HINT_DEV_DURATION_LIMIT_7

// Which attribute a failed blob step names (its arg's low byte).
enum Which : uint8_t { kSlack = 1, kIoprio = 2, kPdeathsig = 3, kSecurebits = 4 };

// SECBIT_NOROOT .. SECBIT_EXEC_DENY_INTERACTIVE_LOCKED (linux/securebits.h,
// Linux 6.14 has the last four): any other bit is not a securebit. Which of
// these a kernel takes is its own answer (PR_SET_SECUREBITS: EPERM).
constexpr uint32_t kSecurebitsMask = 0xfff;

Result<int64_t> in_task(const InTask& in, pid_t tid, const char* what, long nr, uint64_t a1,
                        uint64_t a2) {
    auto r = in.call(nr, a1, a2);
    if (!r) return std::unexpected(r.error());
    if (*r < 0 && *r > -4096) return sys_error(int(-*r), strfmt("{} in thread {}", what, tid));
    return *r;
}

std::string ioprio_text(uint32_t v) {
    static constexpr const char* kClasses[] = {"none", "realtime", "best-effort", "idle"};
    uint32_t cls = v >> kIoprioClassShift;
    if (cls >= std::size(kClasses)) return strfmt("0x{:x}", v);
    return strfmt("{} level {} hint {}", kClasses[cls], v & 7, (v >> 3) & 0x3ff);
}

const image::ThreadAttrsRecord* find(const DecodedImage& img, int32_t tid) {
    if (img.main_attrs && img.main_attrs->tid == tid) return &*img.main_attrs;
    for (const auto& t : img.threads)
        if (t.attrs && t.attrs->tid == tid) return &*t.attrs;
    return nullptr;
}

crfs_ra_thread_attrs plan_one(const std::optional<image::ThreadAttrsRecord>& r,
                              bool parent_restored) {
    crfs_ra_thread_attrs out{};
    if (!r) return out;
    out.present = 1;
    out.tid = r->tid;
    out.timer_slack_ns = r->timer_slack_ns;
    out.ioprio = int32_t(r->ioprio);
    out.pdeathsig = parent_restored ? r->pdeathsig : 0;
    out.securebits = r->securebits;
    return out;
}

}  // namespace

Result<image::ThreadAttrsRecord> dump_thread_attrs(pid_t tid, const InTask& in) {
    image::ThreadAttrsRecord r{};
    r.tid = tid;
    auto slack = in_task(in, tid, "PR_GET_TIMERSLACK", SYS_prctl, PR_GET_TIMERSLACK, 0);
    if (!slack) return std::unexpected(slack.error());
    r.timer_slack_ns = uint64_t(*slack);
    auto io = in_task(in, tid, "ioprio_get", SYS_ioprio_get, kIoprioWhoProcess, 0);
    // A kernel without CONFIG_BLOCK has no I/O priorities (ioprio_get and
    // ioprio_set are ENOSYS): every task has the one value it has, none (0),
    // which the restore sets where it can and needs nowhere else (the blob
    // takes ENOSYS for 0 as done: restorer/blob/threads.h).
    if (!io && io.error().code == ENOSYS) io = 0;
    if (!io) return std::unexpected(io.error());
    r.ioprio = uint32_t(*io);
    auto pd = in_task(in, tid, "PR_GET_PDEATHSIG", SYS_prctl, PR_GET_PDEATHSIG, in.scratch);
    if (!pd) return std::unexpected(pd.error());
    if (auto rd = in.read_scratch(&r.pdeathsig, sizeof r.pdeathsig); !rd)
        return std::unexpected(rd.error());
    auto bits = in_task(in, tid, "PR_GET_SECUREBITS", SYS_prctl, PR_GET_SECUREBITS, 0);
    if (!bits) return std::unexpected(bits.error());
    r.securebits = uint32_t(*bits);
    return r;
}

Status check_thread_attrs(const DecodedImage& img) {
    const bool rt =
        img.settings && (img.settings->policy == SCHED_FIFO || img.settings->policy == SCHED_RR);
    auto check = [&](const std::optional<image::ThreadAttrsRecord>& a) -> Status {
        if (!a) return {};
        auto bad = [&](std::string what) {
            return make_error(EINVAL,
                              strfmt("image field out of range: thread {}: {}", a->tid, what));
        };
        if (a->pdeathsig < 0 || a->pdeathsig > 64) return bad(strfmt("pdeathsig {}", a->pdeathsig));
        // As for the settings record: real-time threads have no slack (0);
        // 0 would ask a normal thread for its default.
        if ((a->timer_slack_ns == 0 && !rt) || a->timer_slack_ns > uint64_t(INT64_MAX))
            return bad(strfmt("timer slack {} ns", a->timer_slack_ns));
        uint32_t cls = a->ioprio >> kIoprioClassShift, hint = (a->ioprio >> 3) & 0x3ff;
        if (cls > 3 || (cls == 0 && a->ioprio != 0) || hint > kIoprioMaxHint)
            return bad("I/O priority " + ioprio_text(a->ioprio));
        if (a->securebits & ~kSecurebitsMask)
            return bad(strfmt("securebits 0x{:x}", a->securebits));
        return {};
    };
    if (auto s = check(img.main_attrs); !s) return s;
    for (const auto& t : img.threads)
        if (auto s = check(t.attrs); !s) return s;
    return {};
}

void plan_thread_attrs(const DecodedImage& img, bool parent_restored, crfs_restorer_args& a) {
    a.main_attrs = plan_one(img.main_attrs, parent_restored);
    auto* ts = reinterpret_cast<crfs_ra_thread*>(a.threads);
    for (size_t i = 0; ts && i < a.nr_threads && i < img.threads.size(); ++i)
        ts[i].attrs = plan_one(img.threads[i].attrs, parent_restored);
}

std::string thread_attrs_step_text(uint64_t arg, const DecodedImage& img) {
    int32_t tid = int32_t(arg >> 8);
    const image::ThreadAttrsRecord* r = find(img, tid);
    if (!r) return strfmt("setting the attributes of thread {}", tid);
    switch (arg & 0xff) {
        case kSlack:
            return strfmt("setting timer slack {} ns of thread {}", r->timer_slack_ns, tid);
        case kIoprio:
            return strfmt("setting I/O priority {} of thread {} (realtime needs CAP_SYS_NICE)",
                          ioprio_text(r->ioprio), tid);
        case kPdeathsig:
            return strfmt("setting pdeathsig {} of thread {}", r->pdeathsig, tid);
        case kSecurebits:
            return strfmt("setting securebits 0x{:x} of thread {} (needs CAP_SETPCAP)",
                          r->securebits, tid);
    }
    return strfmt("setting the attributes of thread {}", tid);
}

}  // namespace crfs::state
