// prctl settings visible from outside the task. None is captured yet: a
// restored task inherits the daemon's, so a value that differs from the
// daemon's is a reason.
//   THP disable        status THP_enabled
//   timer slack        /proc/<pid>/timerslack_ns (when the reader has CAP_SYS_NICE)
//   dumpable 0         /proc/<pid>/status owned by root while the task's euid is not
// Not visible outside the task (so not detected; docs/state.md): pdeathsig,
// child subreaper, dumpable of a root task, membarrier registrations.
// no_new_privs is captured (checkpoint/checkpoint.cc CredsRecord) and restored
// by the blob.
#include <sys/prctl.h>
#include <sys/stat.h>

#include <unistd.h>

#include "state/kind.h"

namespace crfs::state {

Status detect_prctl(TaskView& t, Reasons& out) {
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
    auto self = read_status(getpid());
    if (!self) return std::unexpected(self.error());
    if ((*st)->thp_enabled != self->thp_enabled && (*st)->thp_enabled == 0)
        out.push_back("prctl: transparent huge pages disabled (PR_SET_THP_DISABLE)" +
                      std::string(kNotYet));

    // Reading another task's timerslack_ns needs CAP_SYS_NICE: a caller
    // without it (a normal user checkpointing their own task) cannot tell, and
    // that is not held against the task (docs/state.md, known gaps).
    auto slack = t.read("timerslack_ns");
    if (!slack && slack.error().code != EPERM && slack.error().code != EACCES)
        return std::unexpected(slack.error());
    while (slack && !slack->empty() && slack->back() == '\n') slack->pop_back();
    // The calling thread's own slack: what a task clone3'd by it starts with
    // (and readable whatever credentials the thread acts with).
    if (std::string ours = std::to_string(prctl(PR_GET_TIMERSLACK)); slack && *slack != ours)
        out.push_back("prctl: timer slack " + *slack + " ns (a restored task gets " + ours + ")" +
                      std::string(kNotYet));

    // The files in /proc/<pid> (not the directory itself) belong to root while
    // the task is not dumpable (task_dump_owner).
    struct stat file {};
    if (::stat(t.path("status").c_str(), &file) != 0)
        return errno_error("stat " + t.path("status"));
    if (file.st_uid == 0 && (*st)->uid[1] != 0)
        out.push_back("prctl: not dumpable (PR_SET_DUMPABLE 0 or a set-id exec)" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
