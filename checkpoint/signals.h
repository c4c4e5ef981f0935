// Signal state of a frozen task: dispositions of all 64 signals and the
// alternate stack (read with rt_sigaction / sigaltstack run inside the task:
// /proc does not show them), the blocked mask, and the pending signals of both
// queues with their siginfo (PTRACE_PEEKSIGINFO).
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/parasite.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

struct TaskSignals {
    image::SigactionsRecord actions{};
    image::SigstateRecord state{};
    std::vector<image::SiginfoRecord> pending;
};

// From the parasite's output and the ptrace queues; `blocked` is the mask saved
// before the injection blocked everything.
Result<TaskSignals> read_signals(pid_t pid, const ParasiteOutput& p, uint64_t blocked);

// Pending signals of one queue (private: the thread's; shared: the process's).
Result<std::vector<image::SiginfoRecord>> peek_pending(pid_t pid, bool shared);

}  // namespace crfs
