// prctl settings. Timer slack, THP disable, child subreaper, dumpable (0/1)
// and membarrier registrations are captured by remote syscalls at checkpoint
// (checkpoint/settings.cc) and restored (restorer/settings.cc, the blob for
// dumpable); no_new_privs with the credentials. What stays a reason:
//   dumpable 0         of a non-root task (/proc/<pid>/status owned by root):
//                      its user could not checkpoint it by hand either
// pdeathsig, and each thread's own slack and I/O priority: state/thread_attrs.h.
#include <sys/prctl.h>
#include <sys/stat.h>

#include <unistd.h>

#include "state/kind.h"

namespace crfs::state {

Status detect_prctl(TaskView& t, Reasons& out) {
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
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
