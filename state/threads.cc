// Threads: every thread of the task is frozen, saved and recreated with its
// tid (checkpoint/threads.cc, restorer/threads.cc, the blob's thread step).
// Per thread the image holds registers, xstate, blocked mask, private pending
// signals, alternate stack, robust list, rseq, clear_child_tid and comm.
// Everything else a thread could hold apart from the main thread (its own
// credentials, seccomp filter, nice value, scheduling policy or reset-on-fork
// flag, affinity, a tracer of its own) is not saved per thread, so a
// difference is a reason (slack, I/O priority, pdeathsig: state/thread_attrs.h).
// Tasks sharing memory, files, fs or signal handlers with their parent
// without being one thread group (clone without CLONE_THREAD) are refused.
#include <dirent.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "common/io.h"
#include "crfs/image_format.h"
#include "state/kind.h"

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

// Children of every thread of `pid`; none if it is gone.
std::vector<pid_t> children_of(pid_t pid) {
    std::vector<pid_t> out;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return out;
    while (dirent* de = ::readdir(d.get())) {
        if (de->d_name[0] == '.') continue;
        auto text = read_file(dir + "/" + de->d_name + "/children");
        if (!text) continue;
        size_t i = 0;
        while (i < text->size()) {
            size_t j = text->find(' ', i);
            if (j == std::string::npos) j = text->size();
            if (j > i && (*text)[i] != '\n') out.push_back(pid_t(std::atol(text->c_str() + i)));
            i = j + 1;
        }
    }
    return out;
}

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
        for (pid_t c : children_of(ppid))
            if (c != t.pid()) others.push_back(c);
    }
    for (pid_t o : others)
        for (const auto& sh : kShared)
            if (syscall(SYS_kcmp, t.pid(), o, sh.type, 0, 0) == 0)
                out.push_back("task: shares " + std::string(sh.what) + " with pid " +
                              std::to_string(o) + " (a clone that is not a thread)" +
                              std::string(kNotYet));

    if ((*ms)->threads <= 1) return {};
    // The blob creates the threads after the main thread took its policy:
    // with reset-on-fork, a negative nice would come back as 0 in each.
    if (int pol = sched_getscheduler(t.pid());
        pol > 0 && (pol & SCHED_RESET_ON_FORK) && (*mst)->nice < 0)
        out.push_back("task: SCHED_RESET_ON_FORK with nice " + std::to_string((*mst)->nice) +
                      " and threads (created again, they would get nice 0)" +
                      std::string(kNotYet));
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
        auto status_text = t.read(dirname + "status");
        if (!stat_text || !status_text) continue;  // the thread exited meanwhile
        auto st = parse_stat(*stat_text);
        if (!st) return std::unexpected(st.error());
        auto s = parse_status(*status_text);
        if (!s) return std::unexpected(s.error());
        if (st->state == 'Z' || st->state == 'X') continue;  // exiting: gone by the freeze
        std::string why = differs(*st, *s, **mst, **ms);
        if (why.empty() && s->tracer_pid != 0) {
            // TracerPid names the tracing thread; the daemon traces from worker threads.
            auto tr = read_status(s->tracer_pid);
            if ((tr ? tr->tgid : s->tracer_pid) != t.self_tgid())
                why = "traced by pid " + std::to_string(tr ? tr->tgid : s->tracer_pid);
        }
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
