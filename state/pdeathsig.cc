// pdeathsig: the signal a task gets when its parent dies (PR_SET_PDEATHSIG).
//
// It shows nowhere in /proc, so `reason` (which reads /proc) cannot see it;
// the checkpoint asks the frozen task (a remote prctl(PR_GET_PDEATHSIG)) and
// refuses a non-zero one with EBUSY: the parent of an image's root task is
// outside the image (a restored task's parent is a crfsd thread, whose exit
// would fire the signal), so it cannot be restored exactly. The first
// checkpoint is where it is learnt (docs/state.md).
// TODO(trees): a member of a restored tree has its parent in the image and
// could get it back (prctl(PR_SET_PDEATHSIG) in stage 1, after the fork).
#include "state/pdeathsig.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstring>

#include "common/strfmt.h"

namespace crfs::state {

Status check_pdeathsig(pid_t pid, const InTask& in) {
    auto r = in.call(SYS_prctl, PR_GET_PDEATHSIG, in.scratch);
    if (!r) return std::unexpected(r.error());
    if (*r < 0) return sys_error(int(-*r), strfmt("PR_GET_PDEATHSIG in task {}", pid));
    int sig = 0;
    if (auto s = in.read_scratch(&sig, sizeof sig); !s) return s;
    if (sig == 0) return {};
    const char* name = sig > 0 && sig < NSIG ? sigabbrev_np(sig) : nullptr;
    return make_error(EBUSY, strfmt("prctl: parent-death signal {}{}{} (PR_SET_PDEATHSIG): the "
                                    "task's parent is not in the image, so it cannot be restored "
                                    "exactly; not supported yet",
                                    sig, name ? " SIG" : "", name ? name : ""));
}

}  // namespace crfs::state
