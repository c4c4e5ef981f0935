// The task as a whole: kernel threads, zombies, tracers (threads: state/threads.cc).
// Dump: checkpoint/task_attrs.cc (identity, creds), checkpoint/freeze.cc;
// restore: restorer/task_attrs.cc, restorer/restore.cc (clone3 with the pid).
#include <string>

#include "state/kind.h"

namespace crfs::state {

Status detect_task(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    if ((*st)->flags & kPfKthread) out.push_back("task: kernel thread");
    if ((*st)->state == 'Z' || (*st)->state == 'X')
        out.push_back("task: zombie (exited, not yet reaped by its parent)");
    if (!out.empty()) return {};
    auto status = t.status();
    if (!status) return std::unexpected(status.error());
    if (pid_t tracer = (*status)->tracer_pid) {
        // TracerPid names the tracing thread; the daemon traces from worker threads.
        auto st = read_status(tracer);
        pid_t tgid = st ? st->tgid : tracer;
        if (tgid != t.self_tgid())
            out.push_back("task: being traced by pid " + std::to_string(tgid));
    }
    return {};
}

}  // namespace crfs::state
