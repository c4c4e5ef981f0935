// Signal state of a frozen task: dispositions of all 64 signals and the
// alternate stack (read with rt_sigaction / sigaltstack run inside the task:
// /proc does not show them), the blocked mask, and the pending signals of both
// queues with their siginfo (PTRACE_PEEKSIGINFO).
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/remote_syscall.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

struct TaskSignals {
    image::SigactionsRecord actions{};
    image::SigstateRecord state{};
    std::vector<image::SiginfoRecord> pending;
};

// `rs` must be prepared on the frozen task; its saved mask is the blocked mask.
Result<TaskSignals> read_signals(pid_t pid, RemoteSyscall& rs);

// Pending signals of one queue (private: the thread's; shared: the process's).
Result<std::vector<image::SiginfoRecord>> peek_pending(pid_t pid, bool shared);

}  // namespace crfs
