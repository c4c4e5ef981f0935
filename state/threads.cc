// Threads: every thread of the task is frozen, saved and recreated with its
// tid: detect here, dump and restore below (state/threads.h), the blob's
// thread step (restorer/blob/threads.h).
// Per thread the image holds registers, xstate, blocked mask, private pending
// signals, alternate stack, robust list, rseq, clear_child_tid and comm.
// Everything else a thread could hold apart from the main thread (its own
// credentials, seccomp filter, nice value, scheduling policy or reset-on-fork
// flag, affinity, a tracer of its own) is not saved per thread, so a
// difference is a reason (slack, I/O priority, pdeathsig: state/thread_attrs.h).
// Tasks sharing memory, files, fs or signal handlers with their parent
// without being one thread group (clone without CLONE_THREAD) are refused.
#include "state/threads.h"

#include <dirent.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "checkpoint/parasite.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "crfs/image_format.h"
#include "state/check.h"
#include "state/kcmp_cache.h"
#include "state/kind.h"
#include "state/signals.h"

namespace crfs::state {
namespace {

// What of a thread's /proc files the image does not hold per thread.
std::string differs(const ProcStat& st, const ProcStatus& s, const ProcStat& mst,
                    const ProcStatus& ms) {
    if (st.policy != 0) return "a scheduling policy of its own";
    if (st.nice != mst.nice)
        return "nice " + std::to_string(st.nice) + " (the main thread's is " +
               std::to_string(mst.nice) + ")";
    if (!std::equal(std::begin(s.uid), std::end(s.uid), std::begin(ms.uid)) ||
        !std::equal(std::begin(s.gid), std::end(s.gid), std::begin(ms.gid)) ||
        s.groups != ms.groups || s.cap_inh != ms.cap_inh || s.cap_prm != ms.cap_prm ||
        s.cap_eff != ms.cap_eff || s.cap_bnd != ms.cap_bnd || s.cap_amb != ms.cap_amb)
        return "credentials other than the main thread's";
    if (s.no_new_privs != ms.no_new_privs) return "a no_new_privs setting of its own";
    if (s.seccomp != 0) return "a seccomp filter";
    if (s.cpus_allowed != ms.cpus_allowed) return "a CPU affinity of its own";
    return {};
}

// kcmp resources a task may share with its parent without being its thread.
struct Shared {
    int type;
    const char* what;
};
constexpr Shared kShared[] = {{KCMP_VM, "memory (CLONE_VM)"},
                              {KCMP_FILES, "its fd table (CLONE_FILES)"},
                              {KCMP_FS, "cwd and umask (CLONE_FS)"},
                              {KCMP_SIGHAND, "signal handlers (CLONE_SIGHAND)"}};

}  // namespace

Status detect_threads(TaskView& t, Reasons& out) {
    auto mst = t.stat();
    if (!mst) return std::unexpected(mst.error());
    auto ms = t.status();
    if (!ms) return std::unexpected(ms.error());
    // Who could share with it: its parent and the parent's other children
    // (CLONE_PARENT). A process the caller may not inspect (kcmp EPERM) is
    // skipped; pid 1 and its children are not looked at (none of them is
    // created by clone with sharing flags but by a service manager).
    pid_t ppid = (*mst)->ppid;
    std::vector<pid_t> others;
    if (ppid > 1) {
        others.push_back(ppid);
        // A tree's member asks its parent's view (read once for all its
        // children); otherwise a view of the parent's own. None if it is gone.
        std::optional<TaskView> own;
        TaskView* parent = nullptr;
        if (MemberViews* views = t.member_views())
            if (auto it = views->find(ppid); it != views->end() && it->second)
                parent = it->second.get();
        if (!parent) parent = &own.emplace(ppid, t.self_tgid());
        if (auto kids = parent->children(); kids)
            for (pid_t c : **kids)
                if (c != t.pid()) others.push_back(c);
    }
    const auto& image = t.image_pids();
    std::vector<char> in_image(others.size());  // perf: each asked once, not per kind
    for (size_t at = 0; at < others.size(); ++at)
        in_image[at] = std::find(image.begin(), image.end(), others[at]) != image.end();
    // A tree's members with one parent each ask about the same set (the
    // parent and its children): told once for all, by sorting
    // (state/kcmp_cache.h), when that asks less than every pair.
    KcmpCache& kcmp = *t.kcmp();
    std::vector<KcmpItem> set{{t.pid(), 0}};
    for (pid_t o : others) set.push_back({o, 0});
    auto asking = uint64_t(std::count(in_image.begin(), in_image.end(), 1) + 1);
    bool sort = KcmpCache::worth_sorting(set.size(), asking * (set.size() - 1) / 2);
    std::map<int, std::optional<std::vector<int>>> classes;
    auto same = [&](int type, size_t at) {  // t and others[at]
        if (sort && in_image[at]) {
            auto it = classes.find(type);
            if (it == classes.end()) it = classes.emplace(type, kcmp.classes(type, set)).first;
            if (it->second) return (*it->second)[0] == (*it->second)[at + 1];
        }
        return kcmp.order(type, t.pid(), others[at]) == 0;
    };
    for (size_t at = 0; at < others.size(); ++at)
        for (const auto& sh : kShared) {
            pid_t o = others[at];
            if (in_image[at] && (sh.type == KCMP_FILES || sh.type == KCMP_FS))
                continue;  // share: tree.cc
            if (same(sh.type, at))
                out.push_back("task: shares " + std::string(sh.what) + " with pid " +
                              std::to_string(o) + " (a clone that is not a thread)" +
                              std::string(kNotYet));
        }

    if ((*ms)->threads <= 1) return {};
    // The blob creates the threads after the main thread took its policy:
    // with reset-on-fork, a negative nice would come back as 0 in each.
    if (int pol = sched_getscheduler(t.pid());
        pol > 0 && (pol & SCHED_RESET_ON_FORK) && (*mst)->nice < 0)
        out.push_back("task: SCHED_RESET_ON_FORK with nice " + std::to_string((*mst)->nice) +
                      " and threads (created again, they would get nice 0)" + std::string(kNotYet));
    if (uint32_t((*ms)->threads) > image::kMaxThreads) {
        out.push_back("task: " + std::to_string((*ms)->threads) + " threads; more than " +
                      std::to_string(image::kMaxThreads) + std::string(kNotYet));
        return {};
    }
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(t.path("task").c_str()), ::closedir);
    if (!dir)
        return errno == ENOENT ? sys_error(ESRCH, t.path("task")) : errno_error(t.path("task"));
    while (dirent* de = ::readdir(dir.get())) {
        if (de->d_name[0] == '.' || std::to_string(t.pid()) == de->d_name) continue;
        std::string dirname = "task/" + std::string(de->d_name) + "/";
        auto stat_text = t.read(dirname + "stat");
        if (!stat_text) continue;  // the thread exited meanwhile
        // Kept in the view: the checkpoint's parasite asks it about SIGTRAP.
        auto kept = t.thread_status(pid_t(std::atol(de->d_name)));
        if (!kept && kept.error().code != EIO) continue;  // exited meanwhile
        if (!kept) return std::unexpected(kept.error());
        const ProcStatus* s = *kept;
        auto st = parse_stat(*stat_text);
        if (!st) return std::unexpected(st.error());
        if (st->state == 'Z' || st->state == 'X') continue;  // exiting: gone by the freeze
        std::string why = differs(*st, *s, **mst, **ms);
        if (why.empty() && s->tracer_pid != 0 && !t.traced_by_us(s->tracer_pid))
            why = "traced by pid " + std::to_string(t.tracer_tgid(s->tracer_pid));
        // A new thread never has SCHED_RESET_ON_FORK (sched_fork clears it):
        // the blob's threads would come back without it.
        int pol = why.empty() ? sched_getscheduler(pid_t(std::atol(de->d_name))) : 0;
        if (pol > 0 && (pol & SCHED_RESET_ON_FORK))
            why = "a reset-on-fork scheduling flag of its own (SCHED_RESET_ON_FORK)";
        if (!why.empty())
            out.push_back("thread " + std::string(de->d_name) + ": " + why +
                          "; per-thread settings" + std::string(kNotYet));
    }
    return {};
}

}  // namespace crfs::state

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

namespace {

// linux/ptrace.h's, which cannot be included with sys/ptrace.h.
struct RseqConfiguration {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
};

}  // namespace

Result<std::vector<pid_t>> list_tids(pid_t pid) {
    std::string path = strfmt("/proc/{}/task", pid);
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (!dir) return errno == ENOENT ? sys_error(ESRCH, path) : errno_error(path);
    std::vector<pid_t> out;
    while (dirent* de = ::readdir(dir.get()))
        if (de->d_name[0] != '.') out.push_back(pid_t(std::stol(de->d_name)));
    return out;
}

Result<FrozenThreads> FrozenThreads::freeze(pid_t pid, bool suspend_seccomp) {
    FrozenThreads ft;
    auto main = FrozenTask::freeze(pid, suspend_seccomp);
    if (!main) return std::unexpected(main.error());
    ft.all_.push_back(std::move(*main));
    // Bounded: each round freezes at least one new thread, and a task has at
    // most kMaxThreads of them that we save.
    for (uint32_t round = 0; round <= image::kMaxThreads + 1; ++round) {
        auto tids = list_tids(pid);
        if (!tids) return std::unexpected(tids.error());
        bool added = false;
        for (pid_t tid : *tids) {
            bool known = std::any_of(ft.all_.begin(), ft.all_.end(),
                                     [&](const auto& t) { return t->pid() == tid; });
            if (known) continue;
            auto t = FrozenTask::freeze(tid, suspend_seccomp);
            if (!t && t.error().code == ESRCH) continue;  // exited before we got it
            if (!t) return std::unexpected(t.error().context(strfmt("thread {}", tid)));
            ft.all_.push_back(std::move(*t));
            added = true;
        }
        if (!added) return ft;
        if (ft.all_.size() > image::kMaxThreads)
            return make_error(EBUSY,
                              strfmt("task {} has more than {} threads", pid, image::kMaxThreads));
    }
    return make_error(EBUSY, strfmt("task {} keeps creating threads", pid));
}

std::vector<FrozenTask*> FrozenThreads::others() const {
    std::vector<FrozenTask*> out;
    for (size_t i = 1; i < all_.size(); ++i) out.push_back(all_[i].get());
    return out;
}

Status FrozenThreads::release() {
    Status first;
    // The others first: the main thread's release may re-stop the group.
    // Those the release follows to a restarted syscall are all resumed
    // first, then each one's stop collected: their trips overlap.
    for (size_t i = all_.size(); i-- > 1;) all_[i]->start_release();
    for (size_t i = all_.size(); i-- > 0;)
        if (auto r = all_[i]->release(); !r && first) first = r;
    return first;
}

uint64_t FrozenThreads::frozen_ns() const {
    uint64_t ns = 0;
    for (const auto& t : all_) ns = std::max(ns, t->frozen_ns());
    return ns;
}

Result<image::ThreadRecord> read_thread_record(pid_t pid, pid_t tid, const std::string* known) {
    image::ThreadRecord r{};
    r.tid = tid;
    void* head = nullptr;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, tid, &head, &len) != 0)
        return errno_error(strfmt("get_robust_list of thread {}", tid));
    r.robust_head = head ? uint64_t(head) : 0;
    r.robust_len = head ? len : 0;
    RseqConfiguration rc{};
    long n = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof rc, &rc);
    if (n < 0) return errno_error(strfmt("rseq configuration of thread {}", tid));
    if (rc.flags != 0)
        return make_error(EBUSY,
                          strfmt("thread {}: rseq flags 0x{:x} not supported yet", tid, rc.flags));
    r.rseq_addr = rc.rseq_abi_pointer;
    r.rseq_len = rc.rseq_abi_pointer ? rc.rseq_abi_size : 0;
    r.rseq_sig = rc.rseq_abi_pointer ? rc.signature : 0;
    auto comm =
        known ? Result<std::string>(*known) : read_file(strfmt("/proc/{}/task/{}/comm", pid, tid));
    if (!comm) return std::unexpected(comm.error());
    while (!comm->empty() && comm->back() == '\n') comm->pop_back();
    std::memcpy(r.comm, comm->data(), std::min(comm->size(), sizeof r.comm - 1));
    return r;
}

Result<uint64_t> read_tid_address(pid_t tid, const state::InTask& in) {
    auto r = in.call(SYS_prctl, PR_GET_TID_ADDRESS, in.scratch);
    if (!r) return std::unexpected(r.error());
    if (*r != 0)
        return make_error(EIO, strfmt("PR_GET_TID_ADDRESS in thread {} returned {}", tid, *r));
    uint64_t addr = 0;
    if (auto rd = in.read_scratch(&addr, sizeof addr); !rd) return std::unexpected(rd.error());
    return addr;
}

Result<ThreadCapture> capture_thread(pid_t pid, FrozenTask& t, uint64_t vdso_start,
                                     uint64_t vdso_end, const ProcStatus* frozen,
                                     const ParasiteArea* area) {
    ThreadCapture c;
    pid_t tid = t.pid();
    auto rec = read_thread_record(pid, tid);
    if (!rec) return std::unexpected(rec.error());
    c.rec = *rec;
    auto regs = read_regs(tid);
    if (!regs) return std::unexpected(regs.error());
    c.regs = std::move(*regs);
    auto rs = RemoteSyscall::prepare(t, vdso_start, vdso_end);
    if (!rs) return std::unexpected(rs.error());
    // The parasite's batch and altstack in this thread: one stop in the main
    // thread's area (three in one of its own) rather than 10
    // (checkpoint/parasite.h); without executable memory, single syscalls.
    auto out = try_parasite_in(**rs, area, frozen);
    if (!out) return std::unexpected(out.error());
    ParasiteOutput o{};  // without a parasite, no batch: every call runs in the thread
    if (*out) o = **out;
    ParasiteAnswers asked(**rs, o);
    auto cctid = read_tid_address(tid, asked.in());
    if (!cctid) return std::unexpected(cctid.error());
    c.rec.clear_child_tid = *cctid;
    auto attrs = state::dump_thread_attrs(tid, asked.in());
    if (!attrs) return std::unexpected(attrs.error());
    c.attrs = *attrs;
    if (!*out) {
        auto ss = (*rs)->call(SYS_sigaltstack, 0, (*rs)->scratch());
        if (!ss) return std::unexpected(ss.error());
        if (*ss != 0)
            return make_error(EIO, strfmt("sigaltstack in thread {} returned {}", tid, *ss));
        if (auto rd = (*rs)->read_scratch(&o.altstack_sp, 24); !rd)
            return std::unexpected(rd.error());
    }
    c.sigstate.altstack_sp = o.altstack_sp;
    c.sigstate.altstack_flags = o.altstack_flags;
    c.sigstate.altstack_size = o.altstack_size;
    c.sigstate.blocked = (*rs)->saved_sigmask();
    if (auto r = (*rs)->finish(); !r) return std::unexpected(r.error());
    // The saved registers, with a syscall restart applied, are what the thread resumes with.
    const user_regs_struct resumed = restart_fixup((*rs)->saved_regs());
    std::memcpy(&c.regs.gp, &resumed, sizeof c.regs.gp);
    c.regs.restart = syscall_restart((*rs)->saved_regs());
    auto pending = peek_pending(tid, false);
    if (!pending) return std::unexpected(pending.error());
    c.pending = std::move(*pending);
    return c;
}

}  // namespace crfs

namespace crfs {

// --- restore -----------------------------------------------------------------

namespace {

constexpr size_t kThreadStack = 16 << 10;  // the blob's thread steps need a few hundred bytes

}  // namespace

Status check_thread_ids(const DecodedImage& img, const RestoreRequest& req) {
    if (img.threads.empty() || req.want_pid == img.task.pid) return {};
    return make_error(EPERM, strfmt("image has {} threads: threads come back only with their "
                                    "original tids (glibc keeps them in the task's memory), so "
                                    "restore it into /crfs/{} (choosing pids needs root or the "
                                    "group the administrator named)",
                                    img.threads.size() + 1, img.task.pid));
}

uint64_t threads_area_bytes(const DecodedImage& img) {
    uint64_t n = sizeof(crfs_ra_thread) * img.threads.size() + 64;
    for (const auto& t : img.threads)
        n +=
            kThreadStack + sigframe_size(t) + 128 + t.pending.size() * sizeof(crfs_ra_siginfo) + 16;
    return n;
}

Status fill_threads(const DecodedImage& img, const AreaAlloc& take, crfs_restorer_args& a) {
    if (img.main_thread) {
        a.robust_head = img.main_thread->robust_head;
        a.robust_len = img.main_thread->robust_len;
        a.clear_child_tid = img.main_thread->clear_child_tid;
    }
    if (img.threads.empty()) return {};
    auto* ts = static_cast<crfs_ra_thread*>(take(sizeof(crfs_ra_thread) * img.threads.size(), 16));
    if (!ts) return make_error(ENOMEM, "restorer area too small for the threads (internal error)");
    for (size_t i = 0; i < img.threads.size(); ++i) {
        const ThreadImage& t = img.threads[i];
        crfs_ra_thread& r = ts[i];
        std::memset(&r, 0, sizeof r);
        r.tid = t.rec.tid;
        auto* stack = static_cast<char*>(take(kThreadStack, 16));
        void* frame = take(sigframe_size(t), 64);
        if (!stack || !frame)
            return make_error(ENOMEM, "restorer area too small for the threads (internal error)");
        r.stack_top = reinterpret_cast<uint64_t>(stack) + kThreadStack;
        uint64_t at = sigframe_on_stack(img, t);
        if (auto s = build_sigframe(t, frame, at ? at : uint64_t(frame)); !s)
            return std::unexpected(s.error().context(strfmt("thread {}", t.rec.tid)));
        r.sigframe = reinterpret_cast<uint64_t>(frame);
        if (at) r.sigframe_dst = at, r.sigframe_len = sigframe_size(t);
        r.fs_base = t.regs.fs_base;
        r.gs_base = t.regs.gs_base;
        r.robust_head = t.rec.robust_head;
        r.robust_len = t.rec.robust_len;
        r.rseq_area = t.rec.rseq_addr;
        r.rseq_len = t.rec.rseq_len;
        r.rseq_sig = t.rec.rseq_sig;
        r.clear_child_tid = t.rec.clear_child_tid;
        std::memcpy(r.comm, t.rec.comm, sizeof r.comm);
        r.comm[sizeof r.comm - 1] = '\0';
        if (!t.pending.empty()) {
            auto* si =
                static_cast<crfs_ra_siginfo*>(take(t.pending.size() * sizeof(crfs_ra_siginfo), 16));
            if (!si)
                return make_error(ENOMEM,
                                  "restorer area too small for the threads (internal error)");
            for (size_t k = 0; k < t.pending.size(); ++k) {
                std::memset(&si[k], 0, sizeof si[k]);
                std::memcpy(&si[k].signo, t.pending[k].info, 4);
                std::memcpy(si[k].info, t.pending[k].info, sizeof si[k].info);
            }
            r.siginfo = reinterpret_cast<uint64_t>(si);
            r.nr_siginfo = t.pending.size();
        }
    }
    a.threads = reinterpret_cast<uint64_t>(ts);
    a.nr_threads = img.threads.size();
    return {};
}

}  // namespace crfs

// --- check (hostile images, restorer/check_fields.cc runs it) ----------------

namespace crfs {

using check::bad;
using check::kMaxPid;
using check::kSsFlags;
using check::kUserTop;

namespace {
constexpr uint64_t kRobustHead = 24;  // sizeof(struct robust_list_head)
}  // namespace

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

}  // namespace crfs
