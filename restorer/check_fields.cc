// Every field of a hostile image in range before anything is created: the
// checksum is public, so each enum, flag, number and register may have been
// chosen by the writer. A value the restore would hand to a syscall that
// accepts it but does something else than the image means (a handler for
// SIGKILL, an unknown open flag, rip outside the code) is refused here, with
// EINVAL naming the record and the value.
#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/file_hash.h"
#include "common/strfmt.h"
#include "restorer/check_inet.h"
#include "restorer/restart.h"
#include "restorer/validate.h"
#include "state/file_kind.h"
#include "state/locks.h"
#include "state/memfd.h"
#include "state/memory_restore.h"  // check_vmas, vma_at
#include "state/mlockall.h"
#include "state/pipe.h"
#include "state/seccomp.h"
#include "state/thread_attrs.h"
#include "state/timers.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs {

using state::check_fds;  // the fd table's check (state/fd_check.cc)

namespace {

constexpr uint64_t kUserTop = 0x7ffffffff000ull;
constexpr uint64_t kSaFlags = 0x1 | 0x2 | 0x4 | 0x400 | 0x800 | 0x04000000 | 0x08000000 |
                              0x10000000 | 0x40000000 | 0x80000000ull;
constexpr uint32_t kSsFlags = 1u | 2u | (1u << 31);
constexpr int32_t kMaxPid = 4 << 20;  // PID_MAX_LIMIT
constexpr uint64_t kRobustHead = 24;  // sizeof(struct robust_list_head)

Status bad(std::string what) {
    return make_error(EINVAL, "image field out of range: " + std::move(what));
}

bool bad_path(const std::string& p) {
    return p.empty() || p[0] != '/' || p.find('\0') != std::string::npos;
}

Status check_thread_regs(const DecodedImage& img, const image::RegsRecord& r,
                         const std::string& who) {
    const VmaEntry* code = vma_at(img, r.rip, false);
    if (!code || !(code->rec.flags & image::kVmaExec))
        return bad(strfmt("{}rip 0x{:x} is not in an executable mapping of the image", who, r.rip));
    const VmaEntry* stack = vma_at(img, r.rsp, true);
    if (!stack || !(stack->rec.flags & image::kVmaWrite) ||
        image::VmaKind(stack->rec.kind) == image::VmaKind::kFileShared ||
        image::VmaKind(stack->rec.kind) == image::VmaKind::kMemfdShared)
        return bad(
            strfmt("{}rsp 0x{:x} is not in a writable private mapping of the image", who, r.rsp));
    return {};
}

Status check_regs(const DecodedImage& img) {
    return check_thread_regs(img, img.regs, "");
}

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

// A thread record's registrations: the kernel's own sizes, user addresses.
Status check_thread_record(const image::ThreadRecord& t) {
    std::string who = strfmt("thread {}: ", t.tid);
    if (t.tid <= 0 || t.tid > kMaxPid) return bad(strfmt("thread id {}", t.tid));
    if (t.reserved) return bad(strfmt("{}reserved 0x{:x}", who, t.reserved));
    if (t.robust_head && (t.robust_len != kRobustHead || t.robust_head >= kUserTop))
        return bad(strfmt("{}robust list 0x{:x} of {} bytes", who, t.robust_head, t.robust_len));
    if (!t.robust_head && t.robust_len) return bad(who + "robust list length without a head");
    if (t.rseq_addr &&
        (t.rseq_addr % 32 || t.rseq_len < 32 || t.rseq_len > 4096 || t.rseq_addr >= kUserTop))
        return bad(strfmt("{}rseq area 0x{:x} of {} bytes", who, t.rseq_addr, t.rseq_len));
    if (!t.rseq_addr && (t.rseq_len || t.rseq_sig)) return bad(who + "rseq fields without an area");
    if (t.clear_child_tid % 4 || t.clear_child_tid >= kUserTop)
        return bad(strfmt("{}clear_child_tid 0x{:x}", who, t.clear_child_tid));
    return {};
}

Status check_threads(const DecodedImage& img) {
    if (img.main_thread)
        if (auto s = check_thread_record(*img.main_thread); !s) return s;
    for (const auto& t : img.threads) {
        std::string who = strfmt("thread {}: ", t.rec.tid);
        if (auto s = check_thread_record(t.rec); !s) return s;
        if (auto s = check_thread_regs(img, t.regs, who); !s) return s;
        if (uint32_t(t.sigstate.altstack_flags) & ~kSsFlags)
            return bad(strfmt("{}alternate stack flags 0x{:x}", who, t.sigstate.altstack_flags));
        for (const auto& p : t.pending) {
            if (p.queue != image::kSigqueuePrivate)
                return bad(who + "a signal of the process queue among its own");
            if (auto s = check_pending(p, who); !s) return s;
        }
    }
    return {};
}

Status check_task(const DecodedImage& img) {
    if (img.task.nice < -20 || img.task.nice > 19) return bad(strfmt("nice {}", img.task.nice));
    if (img.fs.umask & ~0777u) return bad(strfmt("umask 0{:o}", img.fs.umask));
    if (bad_path(img.cwd)) return bad("cwd not absolute or holds a NUL");
    if (!img.exe.empty() && bad_path(img.exe)) return bad("exe not absolute or holds a NUL");
    if (img.header.flags & ~image::kHeaderTaskWasStopped)
        return bad(strfmt("header flags 0x{:x}", img.header.flags));
    for (int i = 0; i < 16; ++i)
        if (img.rlimits.cur[i] > img.rlimits.max[i])
            return bad(strfmt("rlimit {}: soft {} above hard {}", i, img.rlimits.cur[i],
                              img.rlimits.max[i]));
    for (int w = 0; w < 3; ++w)
        for (int k = 0; k < 4; k += 2)
            if (img.itimers.v[w][k] < 0 || img.itimers.v[w][k + 1] < 0 ||
                img.itimers.v[w][k + 1] >= 1000000)
                return bad(
                    strfmt("itimer {}: {}.{:06}", w, img.itimers.v[w][k], img.itimers.v[w][k + 1]));
    return {};
}

}  // namespace

Status check_fields(const DecodedImage& img) {
    for (auto check : {check_task, check_vmas, check_regs, check_fds, check_signals, check_settings,
                       state::check_pipes, state::check_unix_sockets, check_inet, check_threads,
                       state::check_memfds, state::check_unix_bound,

                       state::check_seccomp, state::check_posix_timers,
                       state::check_locks, check_restart, state::check_mlockall,
                       state::check_thread_attrs})
        if (auto s = check(img); !s) return s;
    return {};
}

}  // namespace crfs
