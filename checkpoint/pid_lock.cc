#include "checkpoint/pid_lock.h"

#include "common/procfs.h"

namespace crfs {

bool PidLock::below(pid_t pid, pid_t root) {
    return pid_at_or_below(pid, root);  // a pid gone: its release is no one's state now
}

}  // namespace crfs
