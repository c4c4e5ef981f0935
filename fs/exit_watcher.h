// The daemon's one pidfd exit watcher (STYLE.md 16): one thread, one epoll
// set, a callback per registration. MarkStore (drops the marks of exited
// tasks), TaskCache (forgets their names) and Reaper (reaps restored tasks)
// all wait on it.
//
// A registration watches a pidfd the caller owns: the watcher keeps its own
// duplicate, so the caller may keep polling or waitid()ing on its fd. The
// callback runs once, on the watcher thread, when the process has exited (the
// pidfd is readable: a zombie counts); the registration is gone by then.
// watch_until() keeps its registration until its callback says it is done:
// the kernel wakes a pidfd again when a zombie's tracer lets go of it (the
// zombie is its parent's to wait for only from then on), so a reaper that
// found nothing to wait for at the exit hears of it again.
//
// Locks: mu_ is never held while a callback runs, so a callback may call
// watch() and cancel(). cancel() waits for a callback of that registration
// that is running on another thread: never call it holding a lock that
// callback takes.
//
// fork: registrations and the epoll set survive a fork (crfsd daemonizes after
// loading its marks), the thread does not: start() it after the fork.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs::fs {

class ExitWatcher {
  public:
    using Id = uint64_t;  // 0 is never a registration
    // Gets its own registration's id (a client that replaced a registration
    // tells a stale callback from the current one by it).
    using OnExit = std::function<void(Id)>;

    // `capacity` bounds the registrations (each holds one fd).
    explicit ExitWatcher(size_t capacity = 32768);
    ~ExitWatcher();  // stop()
    ExitWatcher(const ExitWatcher&) = delete;
    ExitWatcher& operator=(const ExitWatcher&) = delete;

    // Starts the thread. Registrations made before are served from then on.
    Status start();
    // Ends the thread: after it returns no callback runs, and pending
    // registrations are dropped without their callback. Idempotent.
    void stop();

    // Calls `on_exit` once when the process of `pidfd` has exited (at once,
    // from the thread, if it already has). EMFILE at capacity.
    Result<Id> watch(int pidfd, OnExit on_exit);
    // Calls `until` when the process of `pidfd` has exited and again at each
    // later wake-up of the pidfd (a traced zombie's tracer letting go), until
    // it returns true. Edge-triggered: an exited process is called once at
    // once, then only on a new wake-up, never in a loop.
    using Until = std::function<bool(Id)>;
    Result<Id> watch_until(int pidfd, Until until);
    // Drops a registration: after it returns its callback is not running (or
    // is the caller) and will not run. Unknown or finished ids are fine.
    void cancel(Id id);

    size_t size() const;

  private:
    Status open_locked();
    Result<Id> add(int pidfd, Until until, bool once);
    void loop();

    struct Registration {
        UniqueFd fd;  // our duplicate of the caller's pidfd
        Until until;
        bool once;  // watch(): gone before its callback runs
    };

    size_t capacity_;
    mutable std::mutex mu_;
    std::condition_variable idle_;  // running_ went back to 0
    std::unordered_map<Id, Registration> regs_;
    Id next_ = 1;
    Id running_ = 0;  // the registration whose callback runs now
    UniqueFd epoll_, stop_;
    std::thread thread_;
};

}  // namespace crfs::fs
