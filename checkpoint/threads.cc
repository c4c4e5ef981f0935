#include "checkpoint/threads.h"

#include <dirent.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "checkpoint/signals.h"
#include "common/io.h"
#include "common/strfmt.h"

namespace crfs {

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
    for (size_t i = all_.size(); i-- > 0;)
        if (auto r = all_[i]->release(); !r && first) first = r;
    return first;
}

uint64_t FrozenThreads::frozen_ns() const {
    uint64_t ns = 0;
    for (const auto& t : all_) ns = std::max(ns, t->frozen_ns());
    return ns;
}

Result<image::ThreadRecord> read_thread_record(pid_t pid, pid_t tid) {
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
    auto comm = read_file(strfmt("/proc/{}/task/{}/comm", pid, tid));
    if (!comm) return std::unexpected(comm.error());
    while (!comm->empty() && comm->back() == '\n') comm->pop_back();
    std::memcpy(r.comm, comm->data(), std::min(comm->size(), sizeof r.comm - 1));
    return r;
}

Result<uint64_t> read_tid_address(RemoteSyscall& rs) {
    auto r = rs.call(SYS_prctl, PR_GET_TID_ADDRESS, rs.scratch());
    if (!r) return std::unexpected(r.error());
    if (*r != 0)
        return make_error(EIO, strfmt("PR_GET_TID_ADDRESS in thread {} returned {}", rs.pid(), *r));
    uint64_t addr = 0;
    if (auto rd = rs.read_scratch(&addr, sizeof addr); !rd) return std::unexpected(rd.error());
    return addr;
}

Result<image::ThreadAttrsRecord> read_thread_attrs(RemoteSyscall& rs) {
    state::InTask in{[&](long nr, uint64_t a1, uint64_t a2) { return rs.call(nr, a1, a2); },
                     [&](void* out, size_t n) { return rs.read_scratch(out, n); }, rs.scratch()};
    return state::dump_thread_attrs(rs.pid(), in);
}

Result<ThreadCapture> capture_thread(pid_t pid, FrozenTask& t, uint64_t vdso_start,
                                     uint64_t vdso_end) {
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
    auto cctid = read_tid_address(**rs);
    if (!cctid) return std::unexpected(cctid.error());
    c.rec.clear_child_tid = *cctid;
    auto attrs = read_thread_attrs(**rs);
    if (!attrs) return std::unexpected(attrs.error());
    c.attrs = *attrs;
    auto ss = (*rs)->call(SYS_sigaltstack, 0, (*rs)->scratch());
    if (!ss) return std::unexpected(ss.error());
    if (*ss != 0) return make_error(EIO, strfmt("sigaltstack in thread {} returned {}", tid, *ss));
    struct {
        uint64_t sp;
        int32_t flags, pad;
        uint64_t size;
    } alt{};
    if (auto rd = (*rs)->read_scratch(&alt, sizeof alt); !rd) return std::unexpected(rd.error());
    c.sigstate.altstack_sp = alt.sp;
    c.sigstate.altstack_flags = alt.flags;
    c.sigstate.altstack_size = alt.size;
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
