#include "state/tree_dump.h"

#include <algorithm>
#include <future>
#include <optional>

#include "common/log.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "crfs/image_format.h"
#include "state/tree.h"

namespace crfs {
namespace {

// What a pass's freeze found of a process: frozen, or (`state` 'Z' or 'X',
// `member` none) a zombie or a dead one, which its status showed, not seized.
struct Found {
    std::optional<FrozenTree::Member> member;
    char state = 0;
};

// Freezes `pid` with every thread; a process that exited is ESRCH.
// `child`: one a pass found, told apart if a zombie or dead (the root is
// seized whatever its state, and the seize says).
Result<Found> freeze_process(pid_t pid, bool child) {
    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    if (child && (status->state == 'Z' || status->state == 'X'))
        return Found{std::nullopt, status->state};
    auto threads = FrozenThreads::freeze(pid, status->seccomp != 0);
    if (!threads) return std::unexpected(threads.error());
    // The start time once frozen: it names this process, whatever the pid was before.
    auto st = read_stat(pid);
    if (!st) return std::unexpected(st.error());
    const uint64_t starttime = st->starttime;
    return Found{FrozenTree::Member{pid, starttime, std::move(*threads), 0, 0, std::move(*st), {}},
                 0};
}

}  // namespace

Result<FrozenTree> FrozenTree::freeze(pid_t root, Tracers* tracers) {
    FrozenTree tree;
    tree.tracers_ = tracers;
    size_t seized = 0;  // tracer keys handed out: the root's is 0
    // Freezes the children found in one pass, each on its own tracer, together;
    // those frozen join the tree in the order found, those gone meanwhile are
    // skipped (`gone`: the next pass lists their parents again, which may hold
    // them as zombies by then). The first other failure is returned (the
    // others still join: the tree releases them).
    // A child its status shows a zombie (life: state/zombie.h) joins the
    // tree's zombies, not its members (a dead one neither); it stays listed
    // by its parent, and the next passes skip it.
    // perf: told by the status each freeze reads first, on the child's
    // tracer; the pass no longer reads each new child's stat before, one
    // after the other on its parent's (~1.2 ms for the 63 of the 64 x 1 MiB
    // bench tree).
    bool gone = false;
    auto freeze_batch = [&](const std::vector<std::pair<pid_t, size_t>>& batch) -> Status {
        std::vector<std::optional<Result<Found>>> got(batch.size());
        std::vector<std::future<void>> done;
        size_t first = seized;
        for (size_t j = 0; j < batch.size(); ++j, ++seized)
            done.push_back(tree.post(first + j, [&got, &batch, j] {
                got[j].emplace(freeze_process(batch[j].first, true));
            }));
        for (auto& d : done) d.get();
        Status status;
        for (size_t j = 0; j < batch.size(); ++j) {
            Result<Found>& f = *got[j];
            const pid_t k = batch[j].first;
            if (!f && f.error().code == ESRCH) {  // exited before we got it
                gone = true;
                continue;
            }
            if (!f) {
                if (status) status = std::unexpected(f.error().context(strfmt("pid {}", k)));
                continue;
            }
            if (f->state == 'Z') {
                auto z = state::dump_zombie(k);
                if (!z && z.error().code == ESRCH) continue;  // reaped meanwhile
                if (!z) {
                    if (status) status = std::unexpected(z.error().context(strfmt("pid {}", k)));
                    continue;
                }
                tree.zombies_.push_back(std::move(*z));
                continue;
            }
            if (!f->member) continue;  // dead ('X')
            f->member->depth = batch[j].second + 1;
            f->member->tracer = first + j;
            tree.members_.push_back(std::move(*f->member));
        }
        return status;
    };
    {
        std::optional<Result<Found>> first;
        tree.post(seized++, [&] { first.emplace(freeze_process(root, false)); }).get();
        if (!*first) return std::unexpected(first->error());
        tree.members_.push_back(std::move(*(*first)->member));
    }
    // Bounded: each pass freezes at least one new process, at most kMaxProcesses,
    // or finds one that exited meanwhile (which is a zombie or gone by the next).
    size_t passes = 0;
    for (bool again = true; again; ++passes) {
        if (passes > 2 * image::kMaxProcesses)
            return make_error(EBUSY, strfmt("task {}: its tree keeps changing", root));
        again = false;
        gone = false;
        std::vector<std::pair<pid_t, size_t>> batch;  // a new child, its parent's depth
        std::vector<pid_t> members_now;
        for (const Member& m : tree.members_) members_now.push_back(m.pid);
        std::sort(members_now.begin(), members_now.end());
        // perf: each member's children listed on its tracer, together.
        std::vector<std::optional<Result<std::vector<pid_t>>>> listed(tree.members_.size());
        {
            std::vector<std::future<void>> done;
            for (size_t i = 0; i < tree.members_.size(); ++i)
                done.push_back(tree.post(tree.members_[i].tracer, [&, i] {
                    listed[i].emplace(state::list_children(tree.members_[i].pid));
                }));
            for (auto& d : done) d.get();
        }
        for (size_t i = 0; i < tree.members_.size(); ++i) {
            auto& kids = *listed[i];
            if (!kids) return std::unexpected(kids.error().context(strfmt("pid {}", root)));
            tree.members_[i].children = *kids;  // the last pass's stay
            for (pid_t k : *kids) {
                if (std::binary_search(members_now.begin(), members_now.end(), k)) continue;
                bool known = std::any_of(batch.begin(), batch.end(),
                                         [&](const auto& b) { return b.first == k; }) ||
                             std::any_of(tree.zombies_.begin(), tree.zombies_.end(),
                                         [&](const auto& z) { return z.stat.pid == k; });
                if (known) continue;
                if (tree.members_.size() + batch.size() + tree.zombies_.size() >=
                    image::kMaxProcesses)
                    return make_error(EBUSY, strfmt("task {}: more than {} processes in the tree",
                                                    root, image::kMaxProcesses));
                batch.emplace_back(k, tree.members_[i].depth);
            }
        }
        size_t before = tree.members_.size();
        if (auto r = freeze_batch(batch); !r) return std::unexpected(r.error());
        again = tree.members_.size() > before || gone;
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

std::future<void> FrozenTree::post(size_t tracer, std::function<void()> fn) {
    static Tracers none(0);  // no workers: every job runs on the caller's thread
    return (tracers_ ? *tracers_ : none).post(tracer, std::move(fn));
}

Status FrozenTree::release() {
    // Children first: the deepest members together, each on its tracer (a
    // detach waits for nothing), then the next level up.
    Status first;
    size_t deepest = 0;
    for (const Member& m : members_) deepest = std::max(deepest, m.depth);
    std::vector<Status> got(members_.size());
    for (size_t d = deepest + 1; d-- > 0;) {
        std::vector<std::future<void>> done;
        for (size_t i = members_.size(); i-- > 0;)
            if (members_[i].depth == d)
                done.push_back(post(members_[i].tracer,
                                    [this, &got, i] { got[i] = members_[i].threads.release(); }));
        for (auto& f : done) f.get();
    }
    for (size_t i = members_.size(); i-- > 0;)
        if (!got[i] && first) first = got[i];
    return first;
}

FrozenTree::~FrozenTree() {
    if (auto r = release(); !r)
        log_error("checkpoint: release the tree: %s", r.error().what.c_str());
}

}  // namespace crfs
