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
#include <set>

#include "common/file_hash.h"
#include "common/strfmt.h"
#include "restorer/check_inet.h"
#include "restorer/restart.h"
#include "restorer/validate.h"
#include "state/kobj.h"
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

namespace {

constexpr uint64_t kUserTop = 0x7ffffffff000ull;
constexpr int kMaxFd = 1 << 20;            // the kernel's NR_OPEN
constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
// What fdinfo can show for a regular file or a device (the kernel clears
// O_CREAT, O_EXCL, O_NOCTTY and O_TRUNC after open).
constexpr uint32_t kFdOpenFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | FASYNC | O_DIRECT |
                                  kOLargefile | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_SYNC |
                                  O_PATH;
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

// A later fd of an open file description: restore dups `same_as` to it, so
// that must be an earlier record of the image that is its own description, and
// the fields restore does not read (it uses the first fd's) must say the same.
Status check_same_as(const DecodedImage& img, const FdEntry& f) {
    const auto& r = f.rec;
    auto lead = std::find_if(img.fds.begin(), img.fds.end(),
                             [&](const FdEntry& e) { return e.rec.fd == r.same_as; });
    if (lead == img.fds.end() || lead >= img.fds.begin() + (&f - img.fds.data()) ||
        lead->rec.same_as != -1 || r.same_as >= r.fd)
        return bad(
            strfmt("fd {}: same_as {} is not a lower fd recorded before it that has no "
                   "same_as of its own",
                   r.fd, r.same_as));
    const auto& l = lead->rec;
    struct Field {
        const char* name;
        bool differs;
    };
    const Field fields[] = {{"kind", r.kind != l.kind},
                            {"path", f.path != lead->path},
                            {"open_flags", r.open_flags != l.open_flags},
                            {"pos", r.pos != l.pos},
                            {"mode", r.mode != l.mode},
                            {"dev", r.dev != l.dev},
                            {"ino", r.ino != l.ino},
                            {"size", r.size != l.size},
                            {"rdev", r.rdev != l.rdev},
                            {"mtime", r.mtime_sec != l.mtime_sec || r.mtime_nsec != l.mtime_nsec}};
    for (const auto& field : fields)
        if (field.differs)
            return bad(strfmt("fd {}: same_as {} but its {} differs from fd {}'s", r.fd, r.same_as,
                              field.name, r.same_as));
    return {};
}

// share: a description an earlier process of the tree gives (restorer/tree_share.h
// checks the owner's side): one share-fd record, no path, flags as any fd's.
Status check_shared_fd(const FdEntry& f) {
    const auto& r = f.rec;
    bool lead = r.same_as < 0;
    if (f.kobj.size() != (lead ? 1u : 0u) ||
        (lead && f.kobj[0].first != image::RecordType::kShareFd) || !f.path.empty() ||
        (r.open_flags & ~kFdOpenFlags) || (r.fd_flags & ~image::kFdCloexec) || f.content)
        return bad(
            strfmt("fd {}: a shared fd needs one share-fd record, no path, "
                   "known flags",
                   r.fd));
    return {};
}

Status check_fds(const DecodedImage& img) {
    std::set<int> seen;
    for (const auto& f : img.fds) {
        const auto& r = f.rec;
        if (r.fd < 0 || r.fd >= kMaxFd || !seen.insert(r.fd).second)
            return bad(strfmt("fd number {} (negative, too large or twice)", r.fd));
        if (r.reserved) return bad(strfmt("fd {}: reserved 0x{:x}", r.fd, r.reserved));
        if (r.same_as != -1)
            if (auto s = check_same_as(img, f); !s) return s;
        if (is_socket_kind(r.kind)) {
            if (auto s = check_socket_fd(f); !s) return s;
            continue;
        }
        if (r.kind == uint32_t(image::FdKind::kShared)) {  // restorer/tree_share.cc checks it
            if (auto s = check_shared_fd(f); !s) return s;
            continue;
        }
        // Kernel objects (state/kobj.h) check their own records and flags; so do
        // pipes, FIFOs and unix sockets (state/pipe.cc, state/unix_socket.cc).
        bool kobj = state::is_kobj(r.kind);
        bool pipe = r.kind == uint32_t(image::FdKind::kPipe) ||
                    r.kind == uint32_t(image::FdKind::kUnixSocket) ||
                    r.kind == uint32_t(image::FdKind::kUnixBound) ||
                    r.kind == uint32_t(image::FdKind::kFifo);
        if ((r.kind < 1 || r.kind > 3) && !kobj && !pipe)
            return bad(strfmt("fd {}: kind {}", r.fd, r.kind));
        if (!kobj && !f.kobj.empty())
            return bad(strfmt("fd {}: kernel-object records for a file", r.fd));
        if (kobj)
            if (auto s = state::kobj_check(f, img); !s) return s;
        if ((r.open_flags & ~(kFdOpenFlags | (kobj ? uint32_t(O_EXCL) : 0))) ||
            (r.open_flags & O_ACCMODE) == O_ACCMODE)
            return bad(strfmt("fd {}: open flags 0{:o}", r.fd, r.open_flags));
        if (r.fd_flags & ~image::kFdCloexec)
            return bad(strfmt("fd {}: fd flags 0x{:x}", r.fd, r.fd_flags));
        if (r.pos > uint64_t(INT64_MAX)) return bad(strfmt("fd {}: offset {}", r.fd, r.pos));
        if (!pipe && bad_path(f.path) && !state::kobj_is_pathless(r.kind))
            return bad(strfmt("fd {}: path not absolute or holds a NUL", r.fd));
        // fidelity: a fingerprint of a read-only file, of the size its record says.
        if (f.content &&
            (!fd_content_checked(r) || f.content->size != r.size || f.content->reserved))
            return bad(strfmt("fd {}: fd-content of {} bytes (reserved 0x{:x})", r.fd,
                              f.content->size, f.content->reserved));
    }
    return {};
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
