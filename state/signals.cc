// Signals: handlers, blocked mask, pending signals (private and shared) and
// the alternate stack: detect, dump and restore (state/signals.h). The
// handlers and the alternate stack are read by the parasite
// (checkpoint/parasite.cc) and set again by the blob (restorer/blob/blob.c,
// with the itimers); a thread's own mask, queue and alternate stack are the
// threads kind's (state/threads.cc). A task inside a mask-swapping wait
// (sigsuspend, ppoll) round-trips with its real mask too: the freeze makes the
// syscall restart, and it swaps the mask again after restore (probes
// signals/sigsuspend, signals/ppoll). Nothing here is refused.
#include "state/signals.h"

#include <signal.h>
#include <sys/ptrace.h>

#include <cstring>

#include "common/strfmt.h"
#include "state/check.h"
#include "state/kind.h"

namespace crfs::state {

Status detect_signals(TaskView&, Reasons&) {
    return {};
}

}  // namespace crfs::state

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

Result<std::vector<image::SiginfoRecord>> peek_pending(pid_t pid, bool shared) {
    std::vector<image::SiginfoRecord> out;
    constexpr int kBatch = 32;
    siginfo_t infos[kBatch];
    static_assert(sizeof(siginfo_t) == sizeof(image::SiginfoRecord::info));
    // The queue cannot grow while the task is frozen... by itself; others may
    // still send. RLIMIT_SIGPENDING bounds it anyway; so do we.
    for (uint64_t off = 0; off < (1u << 20);) {
        __ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u,
                                       kBatch};
        long n = ptrace(PTRACE_PEEKSIGINFO, pid, &args, infos);
        if (n < 0) return errno_error(strfmt("peek pending signals of task {}", pid));
        for (long i = 0; i < n; ++i) {
            image::SiginfoRecord r{};
            r.queue = shared ? image::kSigqueueShared : image::kSigqueuePrivate;
            std::memcpy(r.info, &infos[i], sizeof r.info);
            out.push_back(r);
        }
        if (n < kBatch) return out;
        off += uint64_t(n);
    }
    return make_error(EBUSY, strfmt("task {} has too many pending signals", pid));
}

Result<TaskSignals> read_signals(pid_t pid, const ParasiteOutput& p, uint64_t blocked) {
    TaskSignals s;
    std::memcpy(s.actions.action, p.actions, sizeof s.actions.action);
    s.state.altstack_sp = p.altstack_sp;
    s.state.altstack_size = p.altstack_size;
    s.state.altstack_flags = p.altstack_flags;
    s.state.blocked = blocked;

    for (bool shared : {false, true}) {
        auto p = peek_pending(pid, shared);
        if (!p) return std::unexpected(p.error());
        s.pending.insert(s.pending.end(), p->begin(), p->end());
    }
    return s;
}

}  // namespace crfs

namespace crfs {

// --- restore -----------------------------------------------------------------

void fill_sigactions(const DecodedImage& img, crfs_restorer_args& a) {
    for (int i = 0; i < 64; ++i) {
        const auto& k = img.sigactions.action[i];
        a.sigactions[i] = {k.handler, k.flags, k.restorer, k.mask};
    }
}

std::vector<crfs_ra_siginfo> pending_signals(const DecodedImage& img) {
    std::vector<crfs_ra_siginfo> out;
    for (const auto& p : img.pending) {
        crfs_ra_siginfo s{};
        s.shared = p.queue == image::kSigqueueShared;
        std::memcpy(&s.signo, p.info, 4);  // si_signo leads the kernel siginfo
        std::memcpy(s.info, p.info, sizeof s.info);
        out.push_back(s);
    }
    return out;
}

}  // namespace crfs

// --- check (hostile images, restorer/check_fields.cc runs it) ----------------

namespace crfs {

using check::bad;
using check::kSsFlags;

namespace {
constexpr uint64_t kSaFlags = 0x1 | 0x2 | 0x4 | 0x400 | 0x800 | 0x04000000 | 0x08000000 |
                              0x10000000 | 0x40000000 | 0x80000000ull;
}  // namespace

Status check_pending(const image::SiginfoRecord& p, const std::string& who) {
    int32_t signo;
    std::memcpy(&signo, p.info, sizeof signo);
    if (signo < 1 || signo > 64 || signo == 9 || signo == 19)
        return bad(strfmt("{}pending signal number {}", who, signo));
    if (p.queue > image::kSigqueueShared)
        return bad(strfmt("{}pending signal queue {}", who, p.queue));
    return {};
}

Status check_signals(const DecodedImage& img) {
    for (int i = 0; i < 64; ++i) {
        const auto& a = img.sigactions.action[i];
        if (a.flags & ~kSaFlags) return bad(strfmt("signal {}: sa_flags 0x{:x}", i + 1, a.flags));
        if ((i + 1 == 9 || i + 1 == 19) && (a.handler || a.flags || a.mask))
            return bad(strfmt("signal {}: SIGKILL and SIGSTOP have no handler", i + 1));
    }
    for (const auto& p : img.pending) {
        if (auto s = check_pending(p, ""); !s) return s;
    }
    if (uint32_t(img.sigstate.altstack_flags) & ~kSsFlags)
        return bad(strfmt("alternate stack flags 0x{:x}", img.sigstate.altstack_flags));
    return {};
}

}  // namespace crfs
