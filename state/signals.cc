// Signals: handlers, blocked mask, pending signals (private and shared) and
// the alternate stack are captured (checkpoint/signals.cc,
// checkpoint/parasite.cc) and restored by the blob (restorer/signals.cc,
// restorer/blob/blob.c). A task inside a mask-swapping wait (sigsuspend,
// ppoll) round-trips with its real mask too: the freeze makes the syscall
// restart, and it swaps the mask again after restore (probes
// signals/sigsuspend, signals/ppoll). Nothing here is refused.
#include "state/kind.h"

namespace crfs::state {

Status detect_signals(TaskView&, Reasons&) {
    return {};
}

}  // namespace crfs::state
