#include "state/shared_desc.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "state/fds.h"
#include "state/kcmp_cache.h"
#include "state/tty.h"

namespace crfs::state {
namespace {

bool exempt(const FdView& f) {
    // tty: a shell job's terminal fds come back on a new terminal, by design
    // no longer the shell's (state/tty.h).
    return stateless_char_device(f) || (f.info.flags & O_PATH) != 0 || on_shell_terminal(f);
}

// The offset is what a regular file's or a directory's sharers see move.
std::string consequence(const FdView& f) {
    return S_ISREG(f.st.st_mode) || S_ISDIR(f.st.st_mode)
               ? "its offset would no longer be shared"
               : "restored, it would be another object, no longer shared";
}

std::string holder(const HeldFd& h) {
    return Holders::names({h.pid}) + " fd " + std::to_string(h.fd);
}

}  // namespace

void shared_description_reasons(TaskView& t, std::span<const FdView> fds,
                                std::span<const pid_t> inside,
                                const std::map<int, std::string>& refused, Holders& holders,
                                std::map<int, std::string>& lines) {
    std::set<std::string> links;
    for (const FdView& f : fds)
        if (!refused.count(f.fd) && !exempt(f)) links.insert(f.link);
    if (links.empty()) return;
    auto held = holders.fds_of(links);
    auto outside = [&](pid_t pid) {
        return pid != t.self_tgid() && std::find(inside.begin(), inside.end(), pid) == inside.end();
    };
    KcmpCache& kcmp = *t.kcmp();  // a tree's members ask it again: answered once
    for (const FdView& f : fds) {
        if (refused.count(f.fd) || exempt(f)) continue;
        auto it = held.find(f.link);
        if (it == held.end()) continue;
        std::vector<HeldFd> same;
        std::string unknown;
        for (const HeldFd& h : it->second) {
            if (!outside(h.pid)) continue;
            int r = kcmp.order(KCMP_FILE, kcmp_fd(t.pid(), f.fd), kcmp_fd(h.pid, h.fd));
            if (r == 0) {
                same.push_back(h);
            } else if (r < 0 && r != -ESRCH && r != -EBADF && unknown.empty()) {
                // ESRCH, EBADF: that process or fd is gone meanwhile.
                unknown = "cannot tell whether " + holder(h) +
                          ", outside the image, holds the same open file description (kcmp: " +
                          std::strerror(-r) + ")";
            }
        }
        if (!same.empty()) {
            std::string more;
            if (same.size() > 1) more = " (and " + std::to_string(same.size() - 1) + " more)";
            lines[f.fd] = "the same open file description is held by " + holder(same[0]) + more +
                          ", outside the image; " + consequence(f);
        } else if (!unknown.empty()) {
            lines[f.fd] = unknown;
        }
    }
}

}  // namespace crfs::state
