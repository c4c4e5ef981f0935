// Seccomp. Filters are not captured: a restored task would run unfiltered (a
// sandbox silently lifted), so any seccomp mode is a reason.
// Dump/restore: none yet (PTRACE_SECCOMP_GET_FILTER, then reinstall in the blob).
#include "state/kind.h"

namespace crfs::state {

Status detect_seccomp(TaskView& t, Reasons& out) {
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
    if ((*st)->seccomp == 1) out.push_back("seccomp: strict mode" + std::string(kNotYet));
    if ((*st)->seccomp == 2)
        out.push_back("seccomp: " + std::to_string((*st)->seccomp_filters) + " filter(s)" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
