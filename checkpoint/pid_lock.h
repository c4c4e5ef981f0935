// One checkpoint per pid at a time in this process; others wait (not fail).
// Held from before the freeze until after the thaw, and for a live snapshot
// (checkpoint/live_snapshot.h) until its stream ends: the task's memory is
// under that snapshot's write protection meanwhile, and until its worker
// exited (the release of its userfaultfd, after the last byte).
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

namespace crfs {

class PidLock {
  public:
    explicit PidLock(pid_t pid) : pid_(pid) {
        std::unique_lock l(st().mu);
        st().cv.wait(l, [&] { return !st().busy.contains(pid_); });
        st().busy.insert(pid_);
    }
    // Waits at most `limit`; null if the pid stayed busy that long.
    template <class Duration>
    static std::unique_ptr<PidLock> try_for(pid_t pid, Duration limit) {
        std::unique_lock l(st().mu);
        if (!st().cv.wait_for(l, limit, [&] { return !st().busy.contains(pid); })) return nullptr;
        st().busy.insert(pid);
        return std::unique_ptr<PidLock>(new PidLock(pid, Taken{}));
    }
    ~PidLock() {
        {
            std::lock_guard l(st().mu);
            st().busy.erase(pid_);
            st().releasing.erase(pid_);
        }
        st().cv.notify_all();
    }
    // A live snapshot's stream has ended and only the release of its
    // userfaultfd is left (the worker does it after the reader's last byte):
    // the task runs unprotected, but its areas are still registered, which
    // the detection would report ("userfaultfd (write-protect)").
    void releasing() {
        std::lock_guard l(st().mu);
        st().releasing.insert(pid_);
    }
    // Waits at most `limit` while the pid is releasing; whether it is done.
    template <class Duration>
    static bool wait_released(pid_t pid, Duration limit) {
        std::unique_lock l(st().mu);
        return st().cv.wait_for(l, limit, [&] { return !st().releasing.contains(pid); });
    }
    // Waits at most `limit` while `root` or a descendant of it is releasing:
    // a tree's checkpoint or reason looks at every descendant, whose pids
    // the daemon does not know before (a child's image read just before its
    // parent's: `cp` of the child returns before the release). Only those:
    // a release elsewhere (a worker its user stopped mid-release) never
    // stalls another task's reason. Bounded: milliseconds each. Whether
    // none is left.
    template <class Duration>
    static bool wait_released_below(pid_t root, Duration limit) {
        std::unique_lock l(st().mu);
        return st().cv.wait_for(l, limit, [&] {
            for (pid_t p : st().releasing)
                if (below(p, root)) return false;
            return true;
        });
    }
    PidLock(const PidLock&) = delete;
    PidLock& operator=(const PidLock&) = delete;

    // Whether a checkpoint of `pid` or of an ancestor of it (whose tree
    // image holds it) is in progress (crfsd: state/memory.h
    // set_ours_to_protect).
    static bool busy_at_or_above(pid_t pid) {
        std::lock_guard l(st().mu);
        for (pid_t b : st().busy)
            if (below(pid, b)) return true;
        return false;
    }
    // The pids whose checkpoint is in progress that hold `pid` or a
    // descendant of it (its tree's members): what busy_at_or_above asks of
    // them, for a worker that detects the tree's reasons (checkpoint/worker.h
    // WorkerRequest::busy).
    static std::vector<pid_t> busy_around(pid_t pid) {
        std::lock_guard l(st().mu);
        std::vector<pid_t> out;
        for (pid_t b : st().busy)
            if (below(pid, b) || below(b, pid)) out.push_back(b);
        return out;
    }

  private:
    // Whether `pid` is `root` or below it (its parents' chain, from /proc).
    static bool below(pid_t pid, pid_t root);
    struct Taken {};
    PidLock(pid_t pid, Taken) : pid_(pid) {}
    pid_t pid_;
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::set<pid_t> busy;       // guarded by mu
        std::set<pid_t> releasing;  // guarded by mu; a subset of busy
    };
    // Never destroyed: a lock released by a thread that outlives main's
    // return (checkpoint/piped_image.cc's detached wait for a worker) still
    // finds it while exit() runs the destructors of statics.
    static State& st() {
        static State* s = new State;
        return *s;
    }
};

}  // namespace crfs
