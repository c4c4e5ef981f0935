// The threads that trace a tree's members during its checkpoint
// (docs/performance.md, "Trees: members captured together").
//
// ptrace belongs to the thread that seized a task: every ptrace call on a
// member, from its seize to its detach, must run on that one thread. Member 0
// (the root) is traced by the thread that made the Tracers; member i > 0 by
// worker (i - 1) % workers, started on its first use. Several workers let the
// members' ptrace stops, each a wait for the tracee to be scheduled, overlap.
// With no workers every member is traced by the caller, one after another.
//
// A worker that exits detaches whatever it still traces (the kernel's
// exit_ptrace), as checkpoint_task's own thread does: the destructor lets the
// queued work run, then every worker exits.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace crfs {

class Tracers {
  public:
    explicit Tracers(size_t workers) : workers_(workers) {}
    Tracers(const Tracers&) = delete;
    Tracers& operator=(const Tracers&) = delete;
    ~Tracers();

    // Queues `fn` on the thread that traces `member`; the future is ready once
    // it ran. On the caller's thread (member 0, or no workers) it runs at once.
    std::future<void> post(size_t member, std::function<void()> fn);
    // Runs `fn` on the thread that traces `member` and waits for it.
    void run(size_t member, std::function<void()> fn) { post(member, std::move(fn)).get(); }
    // Whether members other than the root are traced by workers.
    bool parallel() const { return workers_ > 0; }

    // The number of workers for a checkpoint: CRFS_TREE_TRACERS=N in crfsd's
    // environment (0..16), 0 with CRFS_TREE_CAPTURE_SERIAL=1 (the old path),
    // else kDefaultWorkers.
    static size_t configured();
    static constexpr size_t kDefaultWorkers = 4;

  private:
    struct Worker {
        std::thread thread;
        std::mutex mu;
        std::condition_variable cv;
        std::deque<std::packaged_task<void()>> queue;
        bool stop = false;
        void loop();
    };
    size_t workers_;
    std::vector<std::unique_ptr<Worker>> started_;  // by index, null until first used
};

}  // namespace crfs
