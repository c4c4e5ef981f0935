#include "state/tree_leaders.h"

#include <linux/futex.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "common/strfmt.h"
#include "restorer/child.h"

namespace crfs {
namespace {

constexpr int64_t kLeaderWaitNs = 60'000'000'000;  // a group to be made, or joined
constexpr uint32_t kMade = 1, kFailed = 2;

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void wake(uint32_t* word) {
    syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// Waits until *word satisfies `done`, at most kLeaderWaitNs; returns its value.
template <class Done>
uint32_t wait_word(uint32_t* word, Done done) {
    int64_t until = now_ns() + kLeaderWaitNs;
    for (;;) {
        uint32_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (done(v)) return v;
        int64_t left = until - now_ns();
        if (left <= 0) return v;
        timespec ts{left / 1'000'000'000, left % 1'000'000'000};
        syscall(SYS_futex, word, FUTEX_WAIT, v, &ts, nullptr, 0);
    }
}

}  // namespace

TreeGroups::~TreeGroups() {
    if (sync_) munmap(sync_, 2 * kSlots * sizeof(uint32_t));
}

Status TreeGroups::plan(const std::vector<image::ProcessRecord>& procs) {
    std::vector<state::TreeIds> ids;
    for (const auto& p : procs) ids.push_back({p.pid, p.ppid, p.pgid, p.sid});
    auto problems = state::tree_group_problems(ids);
    if (!problems.empty())
        return make_error(EOPNOTSUPP,
                          strfmt("process {}: {}", problems[0].first, problems[0].second));
    root_ = procs[0].pid;
    joins_.assign(procs.size(), {});
    for (const auto& p : procs) pgids_.push_back(p.pgid);
    for (size_t i = 1; i < procs.size(); ++i) {
        Join& j = joins_[i];
        j.source = state::group_source(ids, i);
        pid_t g = procs[i].pgid;
        if (j.source == state::GroupSource::kMember) {
            for (size_t m = 0; m < procs.size(); ++m)
                if (procs[m].pid == g) j.slot = int(m);
        } else if (j.source == state::GroupSource::kPlaceholder) {
            auto it = std::find_if(placeholders_.begin(), placeholders_.end(),
                                   [&](const Placeholder& h) { return h.pid == g; });
            if (it == placeholders_.end()) {
                int parent = -1;
                for (size_t m = 0; m < i; ++m)
                    if (procs[m].pid == procs[i].ppid) parent = int(m);
                placeholders_.push_back({g, parent, 0});
                it = placeholders_.end() - 1;
            }
            ++it->joiners;
            j.slot = int(procs.size() + size_t(it - placeholders_.begin()));
        }
    }
    if (procs.size() + placeholders_.size() > size_t(kSlots))
        return make_error(EOPNOTSUPP, "too many processes and placeholder leaders");
    void* p = mmap(nullptr, 2 * kSlots * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return errno_error("restore: the tree's group page");
    sync_ = static_cast<uint32_t*>(p);
    return {};
}

Status TreeGroups::check_free() const {
    for (const auto& h : placeholders_)
        if (::kill(h.pid, 0) == 0 || errno == EPERM)
            return make_error(EBUSY, strfmt("pid {} is in use (it would be the placeholder "
                                            "leader of process group {}, whose leader is gone)",
                                            h.pid, h.pid));
    return {};
}

void TreeGroups::made(uint32_t index) const {
    __atomic_store_n(made_word(int(index)), kMade, __ATOMIC_RELEASE);
    wake(made_word(int(index)));
}

void TreeGroups::placeholder_main(size_t k, int status_fd) const {
    int slot = int(joins_.size() + k);
    child_hold_on_fail(-1);  // it has no children: it ends, as it does once its group is joined
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // the tree is killed: so is it
    if (syscall(SYS_setpgid, 0, 0) < 0) {
        int err = errno;
        __atomic_store_n(made_word(slot), kFailed, __ATOMIC_RELEASE);
        wake(made_word(slot));
        child_fail(status_fd, CRFS_RA_STEP_SESSION, err, uint64_t(placeholders_[k].pid));
    }
    __atomic_store_n(made_word(slot), kMade, __ATOMIC_RELEASE);
    wake(made_word(slot));
    uint32_t want = placeholders_[k].joiners;
    uint32_t got = wait_word(joined_word(slot), [&](uint32_t v) { return v >= want; });
    syscall(SYS_exit_group, got >= want ? 0 : 1);
    __builtin_unreachable();
}

void TreeGroups::spawn_placeholders(uint32_t index, int status_fd) const {
    for (size_t k = 0; k < placeholders_.size(); ++k) {
        if (placeholders_[k].parent != int(index)) continue;
        clone_args ca{};
        ca.exit_signal = 0;  // its exit signals nobody: only this stage 1 waits for it
        pid_t want = placeholders_[k].pid;
        ca.set_tid = reinterpret_cast<uint64_t>(&want);
        ca.set_tid_size = 1;
        long pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) placeholder_main(k, status_fd);
        if (pid < 0) child_fail(status_fd, CRFS_RA_STEP_CHILD, errno, uint64_t(want));
    }
}

void TreeGroups::join(uint32_t index, int status_fd) const {
    const Join& j = joins_[index];
    pid_t g = pgids_[index];
    switch (j.source) {
        case state::GroupSource::kOwn:
            return;  // the session step made it
        case state::GroupSource::kRoot:
            g = pid_t(syscall(SYS_getpgid, root_));  // wherever the root's group went
            if (g < 0) child_fail(status_fd, CRFS_RA_STEP_SESSION, errno, uint64_t(root_));
            break;
        case state::GroupSource::kMember:
        case state::GroupSource::kPlaceholder:
            if (wait_word(made_word(j.slot), [](uint32_t v) { return v != 0; }) != kMade)
                child_fail(status_fd, CRFS_RA_STEP_SESSION, ETIMEDOUT, uint64_t(g));
            break;
    }
    if (syscall(SYS_getpgid, 0) != g && syscall(SYS_setpgid, 0, g) < 0)
        child_fail(status_fd, CRFS_RA_STEP_SESSION, errno, uint64_t(g));
    if (j.source == state::GroupSource::kPlaceholder) {
        __atomic_add_fetch(joined_word(j.slot), 1, __ATOMIC_ACQ_REL);
        wake(joined_word(j.slot));
    }
}

void TreeGroups::reap_placeholders(uint32_t index, int status_fd) const {
    for (const auto& h : placeholders_) {
        if (h.parent != int(index)) continue;
        int st = 0;
        while (syscall(SYS_wait4, h.pid, &st, __WALL, nullptr) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            child_fail(status_fd, CRFS_RA_STEP_SESSION, ETIMEDOUT, uint64_t(h.pid));
    }
}

}  // namespace crfs
