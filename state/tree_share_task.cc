// Clones sharing their fd table or fs with another member of the tree:
// state/tree_share_task.h (the design), docs/trees.md (the rules).
#include "state/tree_share_task.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "restorer/child.h"
#include "restorer/restore.h"
#include "state/check.h"
#include "state/kcmp_cache.h"
#include "state/tree_restore.h"

namespace crfs::state {
namespace {

struct Resource {
    int type;
    const char* what;
};
constexpr Resource kResources[] = {{KCMP_FILES, "its fd table (CLONE_FILES)"},
                                   {KCMP_FS, "cwd, root and umask (CLONE_FS)"}};

}  // namespace

void classify_task_sharing(std::span<const pid_t> pids, std::span<const pid_t> ppids,
                           std::vector<image::ShareTaskRecord>& recs, Reasons& why,
                           KcmpCache& kcmp) {
    recs.assign(pids.size(), image::ShareTaskRecord{});
    // Each type's groups told by sorting the members (state/kcmp_cache.h)
    // when that asks less than every pair; else, or when a kcmp fails, pair
    // by pair (whose error names the pair).
    std::vector<KcmpItem> items;
    for (pid_t p : pids) items.push_back({p, 0});
    std::optional<std::vector<int>> classes[2];
    if (KcmpCache::worth_sorting(pids.size(), uint64_t(pids.size()) * (pids.size() - 1) / 2))
        for (size_t k = 0; k < 2; ++k) classes[k] = kcmp.classes(kResources[k].type, items);
    // 0: the same object, 1: not, -errno: kcmp cannot tell.
    auto same = [&](size_t a, size_t b, size_t k) {
        if (classes[k]) return (*classes[k])[a] == (*classes[k])[b] ? 0 : 1;
        int r = kcmp.order(kResources[k].type, pids[a], pids[b]);
        return r < 0 ? r : r == 0 ? 0 : 1;
    };
    for (size_t i = 1; i < pids.size(); ++i) {
        // A process made in a shared table that is not in it (its stage-1 fds
        // would stay in the table: not supported yet).
        for (size_t p = 0; p < i; ++p)
            if (pids[p] == ppids[i] && recs[p].files_pid != 0 && same(i, p, 0) != 0)
                why.push_back(
                    strfmt("pid {}: a child of pid {}, which shares the fd table of pid "
                           "{}, with a table of its own:{}",
                           pids[i], pids[p], recs[p].files_pid, kNotYet));
        bool shares[2] = {false, false};
        for (size_t k = 0; k < 2; ++k) {
            for (size_t j = 0; j < i; ++j) {
                int r = same(i, j, k);
                if (r == -ESRCH) break;  // gone meanwhile: its own reasons say so
                if (r < 0) {
                    why.push_back(
                        strfmt("pid {}: whether it shares {} with pid {} is unknown "
                               "(kcmp: {})",
                               pids[i], kResources[k].what, pids[j], std::strerror(-r)));
                    break;
                }
                if (r != 0) continue;
                shares[k] = true;
                (k == 0 ? recs[i].files_pid : recs[i].fs_pid) = pids[j];
                break;
            }
        }
        if (!shares[0] && !shares[1]) continue;
        // The same credentials as the group's first: its files, cwd and umask
        // are restored once, as that process's (restore refuses other images).
        pid_t firsts[2] = {recs[i].files_pid,
                           recs[i].fs_pid != recs[i].files_pid ? recs[i].fs_pid : 0};
        for (pid_t with : firsts) {
            if (!with) continue;
            auto a = read_status(pids[i]);
            auto b = read_status(with);
            if (a && b &&
                (!std::equal(std::begin(a->uid), std::end(a->uid), std::begin(b->uid)) ||
                 !std::equal(std::begin(a->gid), std::end(a->gid), std::begin(b->gid)) ||
                 a->groups != b->groups))
                why.push_back(
                    strfmt("pid {}: shares its fd table or cwd with pid {}, which has "
                           "other credentials;{}",
                           pids[i], with, kNotYet));
        }
        // Its maker: its parent, or an earlier sibling, sharing all it shares.
        auto makes = [&](size_t m) {
            if (recs[m].files_pid != 0 && recs[m].files_pid != recs[i].files_pid) return false;
            for (size_t k = 0; k < 2; ++k)
                if (shares[k] && same(i, m, k) != 0) return false;
            return true;
        };
        bool found = false;
        for (size_t m = 0; m < i && !found; ++m)
            found = (pids[m] == ppids[i] || (m > 0 && ppids[m] == ppids[i])) && makes(m);
        if (found) continue;
        pid_t with = recs[i].files_pid ? recs[i].files_pid : recs[i].fs_pid;
        why.push_back(
            strfmt("pid {}: shares {} with pid {}, but neither its parent nor an "
                   "earlier sibling shares {}: a clone shares only what its maker "
                   "has, so it cannot be made again;{}",
                   pids[i], kResources[recs[i].files_pid ? 0 : 1].what, with,
                   shares[0] && shares[1] ? "both" : "it", kNotYet));
    }
}

std::string share_lock_reason(pid_t pid, pid_t files_pid) {
    return strfmt("pid {}: shares the fd table of pid {} and holds file locks;{}", pid, files_pid,
                  kNotYet);
}

}  // namespace crfs::state

namespace crfs {
namespace {

// The member of pid `pid` that `i` shares with: earlier, live, first of its group.
Result<int> group_first(const TreeRestore& tree, size_t i, int32_t pid,
                        int TreeRestore::Member::*with, const char* what) {
    for (size_t j = 0; j < tree.members.size(); ++j) {
        if (tree.members[j].pid != pid) continue;
        if (j >= i)
            return check::bad_image(
                strfmt("process {} shares {} with process {}, which is not an earlier "
                       "process of the tree",
                       tree.members[i].pid, what, pid));
        if (tree.members[j].zombie || tree.members[j].*with >= 0)
            return check::bad_image(
                strfmt("process {} shares {} with process {}, which is a zombie or "
                       "itself shares another's",
                       tree.members[i].pid, what, pid));
        return int(j);
    }
    return check::bad_image(strfmt("process {} shares {} with pid {}, not in the image",
                                   tree.members[i].pid, what, pid));
}

bool in_group(const TreeRestore& tree, size_t m, int first, int TreeRestore::Member::*with) {
    return first < 0 || int(m) == first || tree.members[m].*with == first;
}

}  // namespace

Status plan_share_tasks(const DecodedImage& root, TreeRestore& tree) {
    for (const auto& [at, r] : root.share_tasks) {
        if (at == 0 || at >= tree.members.size())
            return check::bad_image(strfmt("share-task record of process index {}", at));
        auto& m = tree.members[at];
        if (r.flags != 0 || r.reserved != 0 || (r.files_pid == 0 && r.fs_pid == 0))
            return check::bad_image(
                strfmt("process {}: share-task record (flags 0x{:x}, files {}, fs {})", m.pid,
                       r.flags, r.files_pid, r.fs_pid));
        if (r.files_pid) {
            auto j = group_first(tree, at, r.files_pid, &TreeRestore::Member::files_with,
                                 "its fd table");
            if (!j) return std::unexpected(j.error());
            m.files_with = *j;
        }
        if (r.fs_pid) {
            auto j =
                group_first(tree, at, r.fs_pid, &TreeRestore::Member::fs_with, "cwd and umask");
            if (!j) return std::unexpected(j.error());
            m.fs_with = *j;
        }
    }
    for (size_t i = 0; i < tree.members.size(); ++i) {
        auto& m = tree.members[i];
        if (m.files_with < 0 && m.fs_with < 0) continue;
        auto fits = [&](size_t k) {
            return !tree.members[k].zombie &&
                   (tree.members[k].files_with < 0 || tree.members[k].files_with == m.files_with) &&
                   in_group(tree, k, m.files_with, &TreeRestore::Member::files_with) &&
                   in_group(tree, k, m.fs_with, &TreeRestore::Member::fs_with);
        };
        if (fits(size_t(m.parent))) {
            m.maker = m.parent;
        } else {
            for (size_t k = 0; k < i && m.maker < 0; ++k)
                if (k > 0 && tree.members[k].parent == m.parent && fits(k)) m.maker = int(k);
            if (m.maker < 0)
                return check::bad_image(
                    strfmt("process {} shares its fd table or cwd with process {}, but "
                           "neither its parent nor an earlier sibling does: it cannot be "
                           "made",
                           m.pid, tree.members[size_t(std::max(m.files_with, m.fs_with))].pid));
            m.clone_flags |= CLONE_PARENT;
        }
        if (m.files_with >= 0) m.clone_flags |= CLONE_FILES;
        if (m.fs_with >= 0) m.clone_flags |= CLONE_FS;
    }
    // A process made in a shared table is in it (classify_task_sharing).
    for (const auto& m : tree.members) {
        int maker = m.maker >= 0 ? m.maker : m.parent;
        if (maker >= 0 && tree.members[size_t(maker)].files_with >= 0 &&
            tree.members[size_t(maker)].files_with != m.files_with)
            return check::bad_image(
                strfmt("process {} is made by process {}, which shares another's fd "
                       "table, but has a table of its own",
                       m.pid, tree.members[size_t(maker)].pid));
    }
    return {};
}

Status tree_task_share_check(const RestoreRequest& req, const DecodedImage& img, int& max_fd) {
    if (!req.tree) return {};
    TreeRestore& tree = *req.tree;
    auto& me = tree.members[req.tree_index];
    auto same_creds = [&](const DecodedImage& o) {
        return std::memcmp(o.creds.uid, img.creds.uid, sizeof img.creds.uid) == 0 &&
               std::memcmp(o.creds.gid, img.creds.gid, sizeof img.creds.gid) == 0 &&
               o.groups == img.groups;
    };
    for (int with : {me.files_with, me.fs_with}) {
        if (with < 0) continue;
        const DecodedImage* o = tree.members[size_t(with)].img;
        if (!o) return make_error(EIO, strfmt("process {}: its group's image", me.pid));
        if (!same_creds(*o))
            return check::bad_image(
                strfmt("process {} shares its fd table or cwd with process {}, which has "
                       "other credentials",
                       me.pid, tree.members[size_t(with)].pid));
    }
    if (me.files_with >= 0 && (!img.fds.empty() || !img.file_locks.empty()))
        return check::bad_image(
            strfmt("process {} shares the fd table of process {} but has fd records of "
                   "its own",
                   me.pid, tree.members[size_t(me.files_with)].pid));
    if (me.fs_with >= 0) {
        const DecodedImage& o = *tree.members[size_t(me.fs_with)].img;
        if (o.cwd != img.cwd || o.fs.umask != img.fs.umask)
            return check::bad_image(
                strfmt("process {} shares cwd and umask with process {}, but its cwd or "
                       "umask differs",
                       me.pid, tree.members[size_t(me.fs_with)].pid));
    }
    // Its stage-1 fds go above every fd its group's first restores.
    if (me.files_with >= 0) max_fd = std::max(max_fd, tree.members[size_t(me.files_with)].max_fd);
    me.max_fd = max_fd;
    if (me.files_with < 0) return {};
    // Its gate: made with the table while its maker is still root, it waits
    // until the maker's fds are in place (tree_open_gates).
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return errno_error("restore: gate pipe");
    UniqueFd r(p[0]), w(p[1]);
    UniqueFd gr(fcntl(r.get(), F_DUPFD_CLOEXEC, max_fd + 1));
    UniqueFd gw(fcntl(w.get(), F_DUPFD_CLOEXEC, max_fd + 1));
    if (!gr || !gw) return errno_error("restore: gate pipe");
    me.gate_r = gr.get();
    me.gate_w = gw.get();
    tree.share_fds.push_back(std::move(gr));  // closed in the daemon once the root is cloned
    tree.share_fds.push_back(std::move(gw));
    return {};
}

void tree_task_share_keep(const RestoreRequest& req, std::span<const int> keep) {
    if (!req.tree) return;
    TreeRestore& tree = *req.tree;
    int with = tree.members[req.tree_index].files_with;
    if (with < 0) return;
    auto& owner = tree.members[size_t(with)].share_keep;  // closes all but these
    owner.insert(owner.end(), keep.begin(), keep.end());
    owner.push_back(tree.members[req.tree_index].gate_r);
    owner.push_back(tree.members[req.tree_index].gate_w);
    std::sort(owner.begin(), owner.end());
    owner.erase(std::unique(owner.begin(), owner.end()), owner.end());
}

bool tree_files_taker(const TreeRestore* tree, uint32_t index) {
    return tree && tree->members[index].files_with >= 0;
}

void tree_open_gates(const TreeRestore* tree, uint32_t index, int status_fd) {
    if (!tree) return;
    for (const auto& m : tree->members)
        if ((m.clone_flags & CLONE_FILES) && m.maker == int(index))
            if (syscall(SYS_write, m.gate_w, "g", 1) != 1)
                child_fail(status_fd, CRFS_RA_STEP_CHILD, errno, uint64_t(m.pid));
}

void tree_wait_gate(const TreeRestore* tree, uint32_t index, int status_fd) {
    if (!tree || tree->members[index].gate_r < 0) return;
    const auto& m = tree->members[index];
    char g;
    long n;
    while ((n = syscall(SYS_read, m.gate_r, &g, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) child_fail(status_fd, CRFS_RA_STEP_CHILD, n < 0 ? errno : EPIPE, uint64_t(m.pid));
    syscall(SYS_close, m.gate_r);
    syscall(SYS_close, m.gate_w);
}

}  // namespace crfs
