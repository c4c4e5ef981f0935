// Tasks looked up through the tree, each held by a pidfd.
//
// A pidfd names one process for its whole life, so a cached task is checked
// with one poll() instead of re-reading /proc, and the daemon's exit watcher
// (fs/exit_watcher.h) learns of every exit at once. That lets the kernel cache /crfs/<pid>
// dentries: when a task exits, the watcher tells the kernel to forget its name
// (fuse_lowlevel_notify_inval_entry), so `kill -9 1234; ls /crfs/1234` never
// shows a dead task and a later `mkdir /crfs/1234` reaches the daemon.
//
// Lock order: mu_ is never held while calling on_exit (the kernel's
// invalidation waits for in-flight lookups of the same directory, which may
// be waiting for mu_), nor while cancelling a watch (its callback takes it).
#pragma once

#include <functional>
#include <mutex>
#include <unordered_map>

#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/exit_watcher.h"
#include "fs/tasks.h"

namespace crfs::fs {

class TaskCache {
  public:
    // `capacity` bounds the pidfds held; tasks past it are looked up uncached.
    // `exits` must outlive the cache.
    explicit TaskCache(ExitWatcher& exits, size_t capacity = 8192);
    ~TaskCache();
    TaskCache(const TaskCache&) = delete;
    TaskCache& operator=(const TaskCache&) = delete;

    // Starts caching; `on_exit(pid)` runs on the exit watcher's thread for
    // each cached task that exits, after the task left the cache.
    void start(std::function<void(pid_t)> on_exit);

    // Like find_task(pid). `cached` tells whether the task is now watched
    // (so the kernel may cache its name: its exit will be reported).
    Result<Task> find(pid_t pid, bool* cached = nullptr);
    // Like find_task(pid, start_low).
    Result<Task> find(pid_t pid, uint64_t start_low, bool* cached = nullptr);

    // True while `id` lives and is not a zombie: one poll() for a watched task.
    bool alive(const TaskId& id);

    size_t size() const;

  private:
    struct Entry {
        TaskId id;
        UniqueFd pidfd;
        ExitWatcher::Id watch = 0;
    };
    void forget_exited(pid_t pid, ExitWatcher::Id id);

    ExitWatcher& exits_;
    size_t capacity_;
    mutable std::mutex mu_;
    bool started_ = false;                // guarded by mu_
    std::function<void(pid_t)> on_exit_;  // set with started_, constant after
    std::unordered_map<pid_t, Entry> tasks_;
};

}  // namespace crfs::fs
