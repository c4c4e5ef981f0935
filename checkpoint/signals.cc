#include "checkpoint/signals.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cstring>

#include "common/strfmt.h"

namespace crfs {

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

Result<TaskSignals> read_signals(pid_t pid, RemoteSyscall& rs) {
    TaskSignals s;
    for (int sig = 1; sig <= 64; ++sig) {
        auto r = rs.call(SYS_rt_sigaction, uint64_t(sig), 0, rs.scratch(), 8);
        if (!r) return std::unexpected(r.error());
        if (*r != 0) {
            // 32 and 33 belong to glibc/NPTL but are valid kernel signals; every 1..64 answers.
            return make_error(EIO, strfmt("rt_sigaction({}) in task {} returned {}", sig, pid, *r));
        }
        if (auto rd = rs.read_scratch(&s.actions.action[sig - 1], sizeof(image::KernelSigaction));
            !rd)
            return std::unexpected(rd.error());
    }

    stack_t ss{};
    auto r = rs.call(SYS_sigaltstack, 0, rs.scratch());
    if (!r) return std::unexpected(r.error());
    if (*r != 0) return make_error(EIO, strfmt("sigaltstack in task {} returned {}", pid, *r));
    if (auto rd = rs.read_scratch(&ss, sizeof ss); !rd) return std::unexpected(rd.error());
    s.state.altstack_sp = reinterpret_cast<uint64_t>(ss.ss_sp);
    s.state.altstack_size = ss.ss_size;
    s.state.altstack_flags = ss.ss_flags;
    s.state.blocked = rs.saved_sigmask();

    for (bool shared : {false, true}) {
        auto p = peek_pending(pid, shared);
        if (!p) return std::unexpected(p.error());
        s.pending.insert(s.pending.end(), p->begin(), p->end());
    }
    return s;
}

}  // namespace crfs
