#include "fs/reaper.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/own_children.h"
#include "restorer/restore.h"

namespace crfs::fs {
namespace {

// The test hooks below: wait while PATH's existence is `exists` (at most
// 60 s); no PATH, no wait.
void test_hold_while(const char* path, bool exists) {
    if (!path) return;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while ((::access(path, F_OK) == 0) == exists && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// Test only: CRFS_TEST_REAP_HOLD=PATH in crfsd's environment keeps every
// restored task whose end was just told to its adopter a zombie until PATH
// exists (at most 60 s), so a test can look at the tree in the window
// between the slot's `ended` and the reap (tests/fs/roundtrip_mount_test.py
// `SameNameAfterTheEnd`). It stalls the exit watcher's thread meanwhile.
void test_hold_before_reap() {
    static const char* path = std::getenv("CRFS_TEST_REAP_HOLD");
    test_hold_while(path, false);
}

// Test only: CRFS_TEST_ADOPT_HOLD=PATH in crfsd's environment: while PATH
// exists (at most 60 s), adopt() waits before it watches its task, so a test
// can end that task, and others (whose sweeps must not reap it), in the window
// between the restore and the adoption (tests/fs/roundtrip_mount_test.py
// `EndBeforeAdoption`). It stalls the close(2) that restored the task.
void test_hold_before_adopt() {
    static const char* path = std::getenv("CRFS_TEST_ADOPT_HOLD");
    test_hold_while(path, true);
}

}  // namespace

Reaper::~Reaper() {
    std::vector<ExitWatcher::Id> ids;
    {
        std::lock_guard lock(mu_);
        for (auto& [pid, w] : watched_) ids.push_back(w.watch);
    }
    for (auto id : ids) exits_.cancel(id);
}

void Reaper::adopt(pid_t pid, OnExit on_exit) {
    test_hold_before_adopt();
    // A restored task is held (restore.h) until ended() told its adopter: one
    // that exited already is a zombie under its pid, so the pidfd can always
    // be had, and the watch fires at once (a pidfd is readable once its task
    // ended).
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        log_error("reaper: pidfd of restored pid %d: %s", pid, std::strerror(errno));
        release_restored_child(pid);  // not watched: reaped at the next sweep
        reap_restored_children();
        return;
    }
    std::lock_guard lock(mu_);
    auto& w = watched_[pid];
    w.pidfd.reset(fd);
    w.on_exit = std::move(on_exit);
    // Any restored task's exit sweeps them all: one whose own registration
    // failed is still reaped at the next. The registration stays until its
    // task is told: a task that exited while another process traced it
    // cannot be waited for until the tracer lets go, and the kernel wakes its
    // pidfd again then.
    auto id = exits_.watch_until(fd, [this, pid](ExitWatcher::Id self) {
        sweep();
        std::lock_guard lock(mu_);
        auto it = watched_.find(pid);
        return it == watched_.end() || it->second.watch != self;
    });
    if (!id)
        log_error("reaper: watch pid %d: %s", pid, id.error().what.c_str());
    else
        w.watch = *id;
}

bool Reaper::ended(pid_t pid) {
    OnExit on_exit;
    siginfo_t si{};
    ExitWatcher::Id watch = 0;
    {
        std::lock_guard lock(mu_);
        auto it = watched_.find(pid);
        if (it == watched_.end()) return false;
        if (::waitid(P_PIDFD, static_cast<id_t>(it->second.pidfd.get()), &si,
                     WEXITED | WNOWAIT | WNOHANG) < 0 ||
            si.si_pid == 0)
            return false;  // not ended yet
        on_exit = std::move(it->second.on_exit);
        watch = it->second.watch;
        watched_.erase(it);
    }
    exits_.cancel(watch);  // ended before its own event came (on the watcher thread: no wait)
    if (on_exit) on_exit(si.si_code, si.si_status);
    release_restored_child(pid);  // its end is known: sweep() may reap it now
    return true;
}

bool Reaper::adopt_orphan(pid_t pid, UniqueFd pidfd) {
    auto fd = std::make_shared<UniqueFd>(std::move(pidfd));
    // Until it is reaped: a zombie another process traces is ours to wait for
    // only once the tracer lets go (the pidfd wakes again then).
    auto id = exits_.watch_until(fd->get(), [pid, fd](ExitWatcher::Id) {
        siginfo_t si{};
        if (own_children::waitid_pidfd(pid, fd->get(), &si, WNOHANG | __WALL) < 0)
            return true;  // reaped by another (a failed tree's cleanup)
        if (si.si_pid == 0) return false;
        log_debug("reaped adopted orphan pid %d", pid);
        return true;
    });
    if (!id) log_error("reaper: watch adopted orphan pid %d: %s", pid, id.error().what.c_str());
    return bool(id);
}

void Reaper::sweep() {
    // Every watched task, not only the one whose exit woke us: one whose own
    // event is late is told now.
    std::vector<pid_t> pids;
    {
        std::lock_guard lock(mu_);
        for (auto& [pid, w] : watched_) pids.push_back(pid);
    }
    bool told = false;
    for (pid_t pid : pids) told = ended(pid) || told;
    if (told) test_hold_before_reap();
    // Only the released: those told above (and earlier), and those whose
    // adoption failed; a watched task is never reaped before it is told.
    for (pid_t pid : reap_restored_children()) log_debug("reaped restored pid %d", pid);
}

}  // namespace crfs::fs
