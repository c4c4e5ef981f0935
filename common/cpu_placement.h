// Where the daemon serves an image stream from (perf, docs/performance.md
// "Session 39": a stream's reads on the reader's CPU).
//
// A read of /crfs/PID/image is a round trip: the reader's request wakes a
// daemon thread, the reply wakes the reader. Across CPUs each wakeup may
// have to bring an idle CPU back, which on this VM costs ~80 us: the FUSE
// floor (fuse_limit, 258 MiB in 1 MiB reads) takes 61 ms with the reader and
// the daemon on one CPU, 103 ms on two. Meanwhile the checkpoint worker,
// which copies the task's memory into the stream, wants a CPU of its own.
// So a thread serving a stream's read runs it on the CPU the reader last ran
// on (RunOn), and the worker is kept off that CPU (keep_off) while another
// is allowed to it. Nothing here is needed for correctness: each call does
// what the kernel allows and otherwise leaves the placement to it.
#pragma once

#include <sched.h>
#include <sys/types.h>

namespace crfs {

// The CPU thread `tid` last ran on (/proc/<tid>/stat, field 39), or -1.
int last_cpu_of(pid_t tid);

// While it lives the calling thread runs on `cpu` only (when it may and is
// not there already); then it gets its own CPUs back.
class RunOn {
  public:
    explicit RunOn(int cpu);
    ~RunOn();
    RunOn(const RunOn&) = delete;
    RunOn& operator=(const RunOn&) = delete;
    bool moved() const { return moved_; }

  private:
    cpu_set_t own_;
    bool moved_ = false;
};

// Thread `tid` (another process's main thread: its pid) may run on the CPUs
// of `allowed` but `cpu` (all of `allowed` when `cpu` is its only one, or
// not in it). False if the kernel refused.
bool keep_off(pid_t tid, const cpu_set_t& allowed, int cpu);

}  // namespace crfs
