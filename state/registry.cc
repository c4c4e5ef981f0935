#include "state/registry.h"

#include "common/escape.h"

namespace crfs::state {
namespace {

// Adding a kind: a file under state/, a line here, a row in docs/state.md and
// a probe in tests/probes/.
// clang-format off
constexpr StateKind kStateKinds[] = {
    {"task", detect_task},        // zombie, kernel thread, tracer
    {"threads", detect_threads},  // per-thread differences, clones that are not threads
    {"tree", detect_tree},        // child processes
    {"seccomp", detect_seccomp},  // seccomp mode and filters
    {"prctl", detect_prctl},      // THP disable, timer slack, dumpable
    {"sched", detect_sched},      // policy, affinity, oom_score_adj
    {"fs", detect_fs},            // cwd, root
    {"signals", detect_signals},  // handlers, mask, pending, altstack: all captured
    {"timers", detect_timers},    // POSIX timers (itimers are captured)
    {"futex", detect_futex},      // robust list, rseq
    {"memory", detect_memory},    // VMAs: flags, kinds, mlock, guard regions
    {"fds", detect_fds},          // one FdKind per kind of file
    {"locks", detect_locks},      // flock, POSIX and OFD locks, leases
    {"ipc", detect_ipc},          // System V queues and semaphores
    {"tty", detect_tty},          // a shell job's session on its terminal
};
// clang-format on

}  // namespace

std::span<const StateKind> state_kinds() {
    return kStateKinds;
}

Result<Reasons> detect_reasons(pid_t pid, pid_t self_tgid) {
    // A tree's members' views, kept for the whole read (as a checkpoint's,
    // checkpoint/checkpoint.cc): the tree kind (third) makes them, and each
    // member's and the root's later kinds read another member's smaps and fds
    // from its view instead of /proc again (shared memory: n^2 reads of maps).
    MemberViews views;
    auto view = std::make_shared<TaskView>(pid, self_tgid);
    views[pid] = view;
    view->set_member_views(&views);
    return detect_reasons(*view);
}

Result<Reasons> detect_reasons(TaskView& view) {
    Reasons out;
    auto finish = [&] {
        // One reason per line: a control character in a name the task chose (a
        // file path, a memfd name) is shown escaped, so it cannot forge a line.
        for (auto& line : out) line = escape_nonprintable(line);
        return out;
    };
    for (const StateKind& k : kStateKinds) {
        if (auto r = k.detect(view, out); !r) return std::unexpected(r.error());
        // A zombie or a kernel thread has nothing more to look at.
        if (&k == &kStateKinds[0]) {
            auto st = view.stat();
            if (!st) return std::unexpected(st.error());
            if (((*st)->flags & kPfKthread) || (*st)->state == 'Z' || (*st)->state == 'X')
                return finish();
        }
    }
    return finish();
}

}  // namespace crfs::state
