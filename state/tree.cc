// The process tree: `reason` of a task covers every descendant (each kind's
// detect runs on each descendant; its lines are named `pid N (source): ...`),
// and what members share that cannot be restored is a reason naming both
// pids (state/tree_share.h decides: descriptions and pipes shared between
// members are restored). Sockets with ends in two members, and clones sharing
// memory, files, fs or signal handlers, are the socket and threads kinds'
// reasons, there named with the other pid. Dump: state/tree_dump.cc (freeze of the whole
// tree), checkpoint/checkpoint.cc (one section per process).
#include "state/tree.h"

#include <dirent.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <memory>

#include "crfs/image_format.h"
#include "state/fs.h"
#include "state/holders.h"
#include "state/kcmp_cache.h"
#include "state/kind.h"
#include "state/locks.h"
#include "state/registry.h"
#include "state/tree_groups.h"
#include "state/tree_share.h"
#include "state/tree_share_task.h"
#include "state/unix_tree.h"
#include "state/zombie.h"

namespace crfs::state {
namespace {

// "fd 3: text" of a descendant becomes "pid 4312 (fd 3): text".
std::string name_line(pid_t pid, const std::string& line) {
    size_t colon = line.find(": ");
    if (colon == std::string::npos) return "pid " + std::to_string(pid) + ": " + line;
    return "pid " + std::to_string(pid) + " (" + line.substr(0, colon) + ")" + line.substr(colon);
}

// Every kind but this one on a descendant (its own descendants are ours to
// list); a zombie or kernel thread has nothing more to look at (as in
// registry.cc). Lines are escaped once, by the root's detect_reasons.
Status detect_member(TaskView& v, Reasons& out) {
    if (auto st = v.stat(); st && (*st)->state == 'Z') return detect_zombie(v, out);  // life
    for (const StateKind& k : state_kinds()) {
        if (k.detect == detect_tree) continue;
        if (auto r = k.detect(v, out); !r) return r;
        if (k.detect == detect_task && !out.empty()) {
            auto st = v.stat();
            if (!st) return std::unexpected(st.error());
            if (((*st)->flags & kPfKthread) || (*st)->state == 'Z' || (*st)->state == 'X')
                return {};
        }
    }
    return {};
}

// What members share (state/tree_share.h): restored, or a reason naming both.
Status shared_between_members(std::vector<TaskView*>& members, Reasons& out) {
    std::vector<pid_t> pids;
    std::vector<std::vector<MemberFd>> fds;
    for (TaskView* m : members) {
        auto f = member_fds(*m);
        if (!f) {  // gone, or not the caller's to read: its own reasons say so
            int e = f.error().code;
            if (e != ESRCH && e != EACCES && e != EPERM) return std::unexpected(f.error());
        }
        pids.push_back(m->pid());
        fds.push_back(f ? std::move(*f) : std::vector<MemberFd>{});
    }
    if (!members.empty()) unix_dgram_anchors(pids, members.front()->self_tgid(), fds);
    std::vector<ShareRef> refs;
    classify_sharing(pids, fds, refs, out,
                     members.empty() ? nullptr : members.front()->kcmp().get());
    return {};
}

// A view of descendant `k`: in a tree checkpoint, the one already made for
// it (t.member_views(), filled here), so its /proc files are read once.
std::shared_ptr<TaskView> member_view(TaskView& t, pid_t k) {
    if (!t.member_views()) return std::make_shared<TaskView>(k, t.self_tgid());
    auto& v = (*t.member_views())[k];
    if (!v) v = std::make_shared<TaskView>(k, t.self_tgid());
    v->set_member_views(t.member_views());
    v->set_tree_checked();  // the checkpoint does not check it again
    return v;
}

}  // namespace

Result<std::vector<pid_t>> list_children(pid_t pid) {
    TaskView view(pid, 0);
    auto kids = view.children();
    if (!kids) return std::unexpected(kids.error());
    return **kids;
}

std::vector<pid_t> tree_pids(pid_t pid) {
    std::vector<pid_t> out{pid};
    for (size_t i = 0; i < out.size() && out.size() <= image::kMaxProcesses; ++i)
        if (auto kids = list_children(out[i])) out.insert(out.end(), kids->begin(), kids->end());
    return out;
}

Status detect_tree(TaskView& t, Reasons& out) {
    // Every descendant, parents first.
    std::vector<std::shared_ptr<TaskView>> views;
    std::vector<TaskView*> members{&t};
    for (size_t i = 0; i < members.size(); ++i) {
        auto kids = members[i]->children();  // kept: each member's detect asks its parent's
        if (!kids) {
            if (kids.error().code == ESRCH) continue;  // exited meanwhile
            return std::unexpected(kids.error());
        }
        for (pid_t k : **kids) {
            if (members.size() > image::kMaxProcesses) {
                out.push_back("task: more than " + std::to_string(image::kMaxProcesses) +
                              " processes in the tree");
                return {};
            }
            views.push_back(member_view(t, k));
            members.push_back(views.back().get());
        }
    }
    // Descriptions shared with a process outside the image (the fds kind,
    // state/shared_desc.h) count every member as inside.
    // A member's own check at the checkpoint (its view names the whole image):
    // the whole image is inside, not only its subtree.
    std::vector<pid_t> image_pids = t.image_pids();
    if (image_pids.empty())
        for (TaskView* m : members) image_pids.push_back(m->pid());
    for (auto& v : views) {
        v->set_image_pids(image_pids);
        v->set_holder_scan(t.holder_scan());  // one walk of /proc/*/fd for the whole tree
        v->set_kcmp(t.kcmp());                // each kcmp asked once (state/kcmp_cache.h)
        v->set_sysv_tables(t.sysv_tables());  // each table read once (state/sysv_tables.h)
    }
    for (auto& v : views) {
        Reasons lines;
        if (auto r = detect_member(*v, lines); !r) {
            if (r.error().code == ESRCH) continue;  // exited and reaped meanwhile
            if (r.error().code != EACCES && r.error().code != EPERM) return r;
            lines.push_back("task: cannot be inspected with the caller's rights (" +
                            r.error().what + ")");
        }
        for (const auto& l : lines) out.push_back(name_line(v->pid(), l));
    }
    if (auto r = detect_tree_groups(members, out); !r) return r;  // state/tree_groups.cc
    std::vector<pid_t> live, ppids;  // share: fd tables and fs (state/tree_share_task.h)
    std::vector<TaskView*> live_views;
    for (TaskView* m : members)
        if (auto st = m->stat(); st && (*st)->state != 'Z' && (*st)->state != 'X')
            live.push_back(m->pid()), ppids.push_back((*st)->ppid), live_views.push_back(m);
    std::vector<image::ShareTaskRecord> recs;
    classify_task_sharing(live, ppids, recs, out, *t.kcmp());
    for (size_t i = 0; i < recs.size(); ++i)  // the checkpoint refuses these (checkpoint.cc)
        if (recs[i].files_pid)
            if (auto locks = dump_locks(*live_views[i]); locks && !locks->empty())
                out.push_back(share_lock_reason(live[i], recs[i].files_pid));
    detect_deleted_cwd_shared(members, out);  // delcwd: state/fs.h
    return shared_between_members(members, out);
}

}  // namespace crfs::state
