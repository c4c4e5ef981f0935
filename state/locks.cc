// File locks (flock, POSIX and OFD locks, leases) held through the task's
// fds, from the "lock:" lines of /proc/<pid>/fdinfo/<fd>. Not captured yet:
// a restored task would hold none, so each is a reason.
#include "state/kind.h"

namespace crfs::state {

Status detect_locks(TaskView& t, Reasons& out) {
    auto fds = t.fds();
    if (!fds) return std::unexpected(fds.error());
    for (const FdView& f : **fds) {
        // "lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        for (size_t pos = 0; (pos = f.fdinfo.find("lock:", pos)) != std::string::npos; ++pos) {
            if (pos && f.fdinfo[pos - 1] != '\n') continue;
            size_t eol = f.fdinfo.find('\n', pos);
            std::string line = f.fdinfo.substr(pos, eol == std::string::npos ? eol : eol - pos);
            // Collapse runs of blanks for a readable line.
            std::string brief;
            for (char c : line.substr(5)) {
                if (c == '\t') c = ' ';
                if (c == ' ' && (brief.empty() || brief.back() == ' ')) continue;
                brief += c;
            }
            out.push_back("fd " + std::to_string(f.fd) + ": holds a file lock (" + brief +
                          "); file locks" + std::string(kNotYet));
        }
    }
    return {};
}

}  // namespace crfs::state
