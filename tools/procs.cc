#include "tools/procs.h"

#include <libproc2/pids.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>

namespace crfs::tool {
namespace {

pids_item kItems[] = {PIDS_ID_PID,  PIDS_ID_PPID, PIDS_ID_EUSER,
                      PIDS_CMDLINE, PIDS_CMD,     PIDS_VM_RSS};
enum { kPid, kPpid, kUser, kCmdline, kCmd, kRss };

struct InfoDeleter {
    void operator()(pids_info* p) const { procps_pids_unref(&p); }
};
using Info = std::unique_ptr<pids_info, InfoDeleter>;

Result<Info> new_info() {
    pids_info* info = nullptr;
    int rc = procps_pids_new(&info, kItems, int(std::size(kItems)));
    if (rc < 0) return sys_error(-rc, "procps_pids_new");
    return Info(info);
}

ProcInfo from_stack(pids_stack* s, [[maybe_unused]] pids_info* info) {
    ProcInfo p;
    p.pid = PIDS_VAL(kPid, s_int, s, info);
    p.ppid = PIDS_VAL(kPpid, s_int, s, info);
    p.user = PIDS_VAL(kUser, str, s, info);
    p.command = PIDS_VAL(kCmdline, str, s, info);
    // libproc2 shows an empty command line (kernel threads, zombies) as "-".
    if (p.command.empty() || p.command == "-")
        p.command = std::string("[") + PIDS_VAL(kCmd, str, s, info) + "]";
    p.rss_bytes = uint64_t(PIDS_VAL(kRss, ul_int, s, info)) * 1024;
    return p;
}

}  // namespace

Result<std::vector<ProcInfo>> list_processes() {
    auto info = new_info();
    if (!info) return std::unexpected(info.error());
    pids_fetch* f = procps_pids_reap(info->get(), PIDS_FETCH_TASKS_ONLY);
    if (!f) return errno_error("procps_pids_reap");
    std::vector<ProcInfo> out;
    out.reserve(size_t(f->counts->total));
    for (int i = 0; i < f->counts->total; ++i) out.push_back(from_stack(f->stacks[i], info->get()));
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.pid < b.pid; });
    return out;
}

Result<ProcInfo> process_info(pid_t pid) {
    auto info = new_info();
    if (!info) return std::unexpected(info.error());
    unsigned want = unsigned(pid);
    pids_fetch* f = procps_pids_select(info->get(), &want, 1, PIDS_SELECT_PID);
    if (!f) return errno_error("procps_pids_select");
    if (f->counts->total < 1) return sys_error(ESRCH, "process " + std::to_string(pid));
    return from_stack(f->stacks[0], info->get());
}

std::vector<ProcInfo> process_tree(const std::vector<ProcInfo>& all, pid_t pid) {
    std::set<pid_t> members{pid};
    // Children have larger pids only until pids wrap: repeat until nothing joins.
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto& p : all)
            if (members.contains(p.ppid) && members.insert(p.pid).second) grew = true;
    }
    std::vector<ProcInfo> out;
    for (const auto& p : all)
        if (members.contains(p.pid)) out.push_back(p);
    return out;
}

}  // namespace crfs::tool
