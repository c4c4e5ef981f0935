// Sessions and process groups of a tree: the classification both `reason`
// and the restore (state/tree_leaders.cc) use. A process other than the
// root either leads its session (setsid) or is in its parent's (a session
// cannot be joined, only inherited); its group is its own, one a member
// leads, the root's (led from outside the tree, restored as the root's is),
// or one whose leader is gone, which a placeholder with the leader's pid
// makes and leaves. A group whose number is still held outside the tree (its
// leader alive, or members outside) cannot be made again: a reason naming
// the holder. The root keeps the single-process rule (docs/restore.md).
#include "state/tree_groups.h"

#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>

#include "common/procfs.h"

namespace crfs::state {
namespace {

int index_of(const std::vector<TreeIds>& m, pid_t pid) {
    for (size_t j = 0; j < m.size(); ++j)
        if (m[j].pid == pid) return int(j);
    return -1;
}

std::string num(long v) {
    return std::to_string(v);
}

// A process outside `m` whose group or session is `g` (its number is held),
// or 0. Reads every /proc/<pid>/stat the caller can.
pid_t outside_holder(const std::vector<TreeIds>& m, pid_t g) {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc"), ::closedir);
    if (!dir) return 0;
    while (dirent* de = ::readdir(dir.get())) {
        pid_t p = 0;
        const char* end = de->d_name + std::strlen(de->d_name);
        if (auto [e, ec] = std::from_chars(de->d_name, end, p); ec != std::errc() || e != end)
            continue;
        if (index_of(m, p) >= 0) continue;
        auto st = read_stat(p);
        if (st && (st->pgrp == g || st->session == g)) return p;
    }
    return 0;
}

std::string comm_of(pid_t pid) {
    auto st = read_stat(pid);
    return st ? " (" + st->comm + ")" : "";
}

}  // namespace

GroupSource group_source(const std::vector<TreeIds>& m, size_t i) {
    pid_t g = m[i].pgid;
    if (g == m[i].pid) return GroupSource::kOwn;
    if (index_of(m, g) >= 0) return GroupSource::kMember;
    if (g == m[0].pgid) return GroupSource::kRoot;
    return GroupSource::kPlaceholder;
}

std::vector<std::pair<pid_t, std::string>> tree_group_problems(const std::vector<TreeIds>& m) {
    std::vector<std::pair<pid_t, std::string>> out;
    if (m.empty()) return out;
    for (pid_t id : {m[0].pgid, m[0].sid})
        if (id != m[0].pid && index_of(m, id) > 0)
            out.emplace_back(m[0].pid, "its process group or session " + num(id) +
                                           " is led by its descendant pid " + num(id) + ";" +
                                           std::string(kNotYet));
    for (size_t i = 1; i < m.size(); ++i) {
        const TreeIds& p = m[i];
        int parent = index_of(m, p.ppid);
        pid_t parent_sid = parent >= 0 ? m[size_t(parent)].sid : -1;
        // 0 is a session or group led from outside this pid namespace (a
        // container's, a CI runner's): only the root's can be such, and a
        // session 0 is then inherited like any other (checked below).
        if (p.pgid < 0 || p.sid < 0 || (p.pgid == 0 && m[0].pgid != 0)) {
            out.emplace_back(p.pid, "process group " + num(p.pgid) + ", session " + num(p.sid) +
                                        " (0: led from outside this pid namespace, and not the "
                                        "root's)");
            continue;
        }
        if (p.sid == p.pid) {
            if (p.pgid != p.pid)
                out.emplace_back(p.pid, "leads session " + num(p.sid) + " but not its group (" +
                                            num(p.pgid) + ")");
            continue;
        }
        if (p.sid != parent_sid) {
            out.emplace_back(p.pid, "session " + num(p.sid) +
                                        " is neither its own nor its parent's (" + num(parent_sid) +
                                        "): a session is only inherited; a process that left its "
                                        "parent's session after the fork," +
                                        std::string(kNotYet));
            continue;
        }
        switch (group_source(m, i)) {
            case GroupSource::kOwn:
                break;
            case GroupSource::kMember: {
                const TreeIds& leader = m[size_t(index_of(m, p.pgid))];
                if (leader.pgid != leader.pid || leader.sid != p.sid)
                    out.emplace_back(p.pid, "process group " + num(p.pgid) + " is not led by pid " +
                                                num(leader.pid) + " of the tree in its session");
                break;
            }
            case GroupSource::kRoot:
                if (m[0].sid != p.sid)
                    out.emplace_back(p.pid, "process group " + num(p.pgid) +
                                                " is the root's, in another session");
                break;
            case GroupSource::kPlaceholder:
                for (size_t j = 1; j < i; ++j)
                    if (m[j].pgid == p.pgid && m[j].sid != p.sid) {
                        out.emplace_back(p.pid,
                                         "process group " + num(p.pgid) + " spans two sessions");
                        break;
                    }
                break;
        }
    }
    return out;
}

Status detect_tree_groups(const std::vector<TaskView*>& members, Reasons& out) {
    std::vector<TreeIds> m;
    for (TaskView* v : members) {
        auto st = v->stat();
        if (!st) {
            if (st.error().code == ESRCH) continue;  // exited and reaped meanwhile
            return std::unexpected(st.error());
        }
        m.push_back({(*st)->pid, (*st)->ppid, (*st)->pgrp, (*st)->session});
    }
    if (m.empty() || m[0].pid != members[0]->pid()) return {};
    auto line = [&](pid_t pid, const std::string& text) {
        out.push_back(pid == m[0].pid ? "task: " + text : "pid " + num(pid) + " (task): " + text);
    };
    for (const auto& [pid, text] : tree_group_problems(m)) line(pid, text);
    std::vector<pid_t> seen;
    for (size_t i = 1; i < m.size(); ++i) {
        pid_t g = m[i].pgid;
        if (group_source(m, i) != GroupSource::kPlaceholder ||
            std::find(seen.begin(), seen.end(), g) != seen.end())
            continue;
        seen.push_back(g);
        if (::kill(g, 0) == 0 || errno == EPERM)
            line(m[i].pid, "process group " + num(g) + " is led by pid " + num(g) + comm_of(g) +
                               ", outside the tree: a restored tree cannot join it");
        else if (pid_t h = outside_holder(m, g))
            line(m[i].pid, "process group " + num(g) + " (its leader gone) also holds pid " +
                               num(h) + comm_of(h) +
                               ", outside the tree: a restored tree cannot make it again");
    }
    return {};
}

}  // namespace crfs::state
