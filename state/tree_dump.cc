#include "state/tree_dump.h"

#include <algorithm>

#include "common/procfs.h"
#include "common/strfmt.h"
#include "crfs/image_format.h"
#include "state/tree.h"

namespace crfs {
namespace {

// Freezes `pid` with every thread; a process that exited is ESRCH.
Result<FrozenTree::Member> freeze_process(pid_t pid) {
    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    auto threads = FrozenThreads::freeze(pid, status->seccomp != 0);
    if (!threads) return std::unexpected(threads.error());
    // The start time once frozen: it names this process, whatever the pid was before.
    auto st = read_stat(pid);
    if (!st) return std::unexpected(st.error());
    return FrozenTree::Member{pid, st->starttime, std::move(*threads)};
}

}  // namespace

Result<FrozenTree> FrozenTree::freeze(pid_t root) {
    FrozenTree tree;
    auto first = freeze_process(root);
    if (!first) return std::unexpected(first.error());
    tree.members_.push_back(std::move(*first));
    // Bounded: each pass freezes at least one new process, at most kMaxProcesses.
    for (bool added = true; added;) {
        added = false;
        for (size_t i = 0; i < tree.members_.size(); ++i) {
            auto kids = state::list_children(tree.members_[i].pid);
            if (!kids) return std::unexpected(kids.error().context(strfmt("pid {}", root)));
            for (pid_t k : *kids) {
                bool known = std::any_of(tree.members_.begin(), tree.members_.end(),
                                         [&](const Member& m) { return m.pid == k; });
                if (known) continue;
                auto st = read_stat(k);
                if (!st && st.error().code == ESRCH) continue;  // reaped meanwhile
                if (!st) return std::unexpected(st.error());
                if (st->state == 'Z' || st->state == 'X') {  // life: state/zombie.h
                    bool seen = std::any_of(tree.zombies_.begin(), tree.zombies_.end(),
                                            [&](const auto& z) { return z.stat.pid == k; });
                    if (seen || st->state == 'X') continue;
                    if (tree.members_.size() + tree.zombies_.size() >= image::kMaxProcesses)
                        return make_error(
                            EBUSY, strfmt("task {}: more than {} processes in the tree", root,
                                          image::kMaxProcesses));
                    auto z = state::dump_zombie(k);
                    if (!z && z.error().code == ESRCH) continue;
                    if (!z) return std::unexpected(z.error().context(strfmt("pid {}", k)));
                    tree.zombies_.push_back(std::move(*z));
                    continue;
                }
                if (tree.members_.size() + tree.zombies_.size() >= image::kMaxProcesses)
                    return make_error(EBUSY, strfmt("task {}: more than {} processes in the tree",
                                                    root, image::kMaxProcesses));
                auto m = freeze_process(k);
                if (!m && m.error().code == ESRCH) continue;  // exited before we got it
                if (!m) return std::unexpected(m.error().context(strfmt("pid {}", k)));
                tree.members_.push_back(std::move(*m));
                added = true;
            }
        }
    }
    return tree;
}

void add_process_record(ImageWriter& w, const ProcStat& st, bool was_stopped) {
    image::ProcessRecord r{};
    r.pid = st.pid;
    r.ppid = st.ppid;
    r.pgid = st.pgrp;
    r.sid = st.session;
    r.flags = was_stopped ? image::kProcessWasStopped : 0;
    w.add(image::RecordType::kProcess, Payload().add(r));
}

void add_zombie_records(ImageWriter& w, const state::ZombieDump& z) {
    image::ProcessRecord r{};
    r.pid = z.stat.pid;
    r.ppid = z.stat.ppid;
    r.pgid = z.stat.pgrp;
    r.sid = z.stat.session;
    r.flags = image::kProcessZombie;
    w.add(image::RecordType::kProcess, Payload().add(r));
    w.add(image::RecordType::kZombie, Payload().add(z.rec));
}

Status FrozenTree::release() {
    Status first;
    for (size_t i = members_.size(); i-- > 0;)
        if (auto r = members_[i].threads.release(); !r && first) first = r;
    return first;
}

}  // namespace crfs
