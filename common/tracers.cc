#include "common/tracers.h"

#include <cstdlib>

#include "common/ptrace_wait.h"

namespace crfs {

void Tracers::Worker::loop() {
    set_ptrace_wait_spins(false);
    for (;;) {
        std::packaged_task<void()> job;
        {
            std::unique_lock lock(mu);
            cv.wait(lock, [&] { return stop || !queue.empty(); });
            if (queue.empty()) return;  // stopped, and nothing left to run
            job = std::move(queue.front());
            queue.pop_front();
        }
        job();
    }
}

std::future<void> Tracers::post(size_t member, std::function<void()> fn) {
    std::packaged_task<void()> job(std::move(fn));
    std::future<void> done = job.get_future();
    if (member == 0 || workers_ == 0) {
        job();
        return done;
    }
    size_t i = (member - 1) % workers_;
    if (started_.size() <= i) started_.resize(i + 1);
    if (!started_[i]) {
        started_[i] = std::make_unique<Worker>();
        Worker* w = started_[i].get();
        w->thread = std::thread([w] { w->loop(); });
    }
    Worker& w = *started_[i];
    {
        std::lock_guard lock(w.mu);
        w.queue.push_back(std::move(job));
    }
    w.cv.notify_one();
    return done;
}

Tracers::~Tracers() {
    for (auto& w : started_) {
        if (!w) continue;
        {
            std::lock_guard lock(w->mu);
            w->stop = true;
        }
        w->cv.notify_one();
    }
    for (auto& w : started_)
        if (w) w->thread.join();
}

size_t Tracers::configured() {
    if (const char* s = getenv("CRFS_TREE_CAPTURE_SERIAL"); s && *s && *s != '0') return 0;
    if (const char* n = getenv("CRFS_TREE_TRACERS"); n && *n) {
        char* end = nullptr;
        unsigned long v = strtoul(n, &end, 10);
        if (end && *end == '\0' && v <= 16) return v;
    }
    return kDefaultWorkers;
}

}  // namespace crfs
