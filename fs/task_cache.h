// Tasks looked up through the tree, each held by a pidfd.
//
// A pidfd names one process for its whole life, so a cached task is checked
// with one poll() instead of re-reading /proc, and a watcher thread learns of
// every exit at once. That lets the kernel cache /crfs/<pid> dentries:
// when a task exits, the watcher tells the kernel to forget its name
// (fuse_lowlevel_notify_inval_entry), so `kill -9 1234; ls /crfs/1234` never
// shows a dead task and a later `mkdir /crfs/1234` reaches the daemon.
//
// Lock order: mu_ is never held while calling on_exit (the kernel's
// invalidation waits for in-flight lookups of the same directory, which may
// be waiting for mu_).
#pragma once

#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/tasks.h"

namespace crfs::fs {

class TaskCache {
  public:
    // `capacity` bounds the pidfds held; tasks past it are looked up uncached.
    explicit TaskCache(size_t capacity = 8192);
    ~TaskCache();
    TaskCache(const TaskCache&) = delete;
    TaskCache& operator=(const TaskCache&) = delete;

    // Starts the exit watcher; `on_exit(pid)` runs on its thread for each
    // cached task that exits, after the task left the cache.
    Status start(std::function<void(pid_t)> on_exit);

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
    };
    void watcher_loop();

    size_t capacity_;
    std::function<void(pid_t)> on_exit_;
    mutable std::mutex mu_;
    std::unordered_map<pid_t, Entry> tasks_;
    UniqueFd epoll_, stop_;
    std::thread watcher_;
};

}  // namespace crfs::fs
