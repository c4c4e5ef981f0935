#include "checkpoint/pid_lock.h"

#include "common/procfs.h"

namespace crfs {

bool PidLock::below(pid_t pid, pid_t root) {
    // Up the parents' chain to init; bounded against a chain that changes
    // under the walk (a parent that ends: its child is re-parented up).
    for (int depth = 0; pid > 1 && depth < 4096; ++depth) {
        if (pid == root) return true;
        auto st = read_stat(pid);
        if (!st) return false;  // gone: its release is no one's state now
        pid = st->ppid;
    }
    return pid == root;
}

}  // namespace crfs
