// Signals (docs/state.md "signals"; detect: nothing is refused), both halves.
//
// Dump: the signal state of a frozen task: dispositions of all 64 signals and
// the alternate stack (read with rt_sigaction / sigaltstack run inside the
// task by the parasite, checkpoint/parasite.cc: /proc does not show them), the
// blocked mask, and the pending signals of both queues with their siginfo
// (PTRACE_PEEKSIGINFO).
//
// Restore: the signal state for the blob (restorer/blob/blob.c): the 64
// dispositions, the pending signals of both queues (re-queued to the task
// itself while everything is blocked, so they stay pending in order). The
// interval timers, saved by the parasite with the dispositions, are
// state/itimers.h's. The
// blocked mask and the alternate stack travel in the signal frame
// (state/regs.h).
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/parasite.h"
#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "crfs/restorer_args.h"

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

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

// --- restore -----------------------------------------------------------------

void fill_sigactions(const DecodedImage& img, crfs_restorer_args& a);
std::vector<crfs_ra_siginfo> pending_signals(const DecodedImage& img);

// --- check (hostile images) --------------------------------------------------

// Dispositions (known sa_flags, none for SIGKILL and SIGSTOP), pending signals
// (a number and queue the kernel has) and the alternate stack's flags.
Status check_signals(const DecodedImage& img);
Status check_pending(const image::SiginfoRecord& p, const std::string& who);

}  // namespace crfs
