// The entry point of the checkpoint side: freeze a task, capture everything a
// restore needs, thaw it, and hand back the finished image to serve by offset.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// A finished checkpoint: the whole image, served by offset (FUSE read) after
// the task was thawed. read() is const and safe to call from several threads.
class Snapshot {
  public:
    virtual ~Snapshot() = default;
    virtual uint64_t size() const = 0;
    // Copies up to `len` bytes at `offset`; 0 at or past the end.
    virtual Result<size_t> read(uint64_t offset, void* buf, size_t len) const = 0;
};

// Freezes pid (whose start time must equal `starttime`, else ESRCH), captures,
// thaws. Checkpoints of one pid are serialized: a second one waits for the first
// to let go of the task. On any failure the task is left as it was (running,
// not traced, not stopped unless it was), a line saying why is logged to
// stderr, and the error's code is ESRCH (task gone), EBUSY (traced, or state
// not supported), EACCES (no ptrace right), EIO (memory unreadable, ...).
//
// The caller must have checked the ptrace right of whoever asks, and `reason`.
Result<std::unique_ptr<Snapshot>> checkpoint_task(pid_t pid, uint64_t starttime);

// An image written once, front to back, into an fd (a pipe: the worker's
// stream) or into several in stripes (ImageSink: the worker's pipes).
class ImageSource {
  public:
    virtual ~ImageSource() = default;
    // Fails with EAGAIN when the task unmapped, discarded or otherwise took
    // away memory that was not yet sent (the reader may try again; through
    // the tree it gets EBUSY), ESRCH when it exited meanwhile.
    // `fds`: stripe k of the stream (ImageSink::kStripe bytes) into fds[k % size].
    virtual Status write_stripes(std::span<const int> fds) = 0;
    Status write_to(int fd) { return write_stripes(std::span<const int>(&fd, 1)); }
    // Whether memory is streamed from the task (live) or was copied while frozen.
    virtual bool live() const = 0;
    // Whether the thread that writes the stream is the one that copies the
    // task's memory into it (a live snapshot's), so that it wants a CPU of
    // its own (common/cpu_placement.h); a plain tree's copies are another
    // thread's.
    virtual bool copies_as_it_streams() const { return live(); }
    // Write faults the task took on memory not yet sent, answered by a fault
    // thread so far (a live snapshot's: LiveMemory::faults; for tests).
    virtual uint64_t faults_answered() const { return 0; }
};

// As checkpoint_task, but a live snapshot (checkpoint/live_snapshot.h) where
// the kernel gives the task a userfaultfd that handles every fault: frozen only
// while metadata is collected, pages streamed after the thaw, the image as of
// the freeze. Where it does not, memory is copied while frozen.
Result<std::unique_ptr<ImageSource>> checkpoint_task_live(pid_t pid, uint64_t starttime);

// incr (checkpoint/incremental.h, docs/incremental.md): an image of a chain,
// `chain` its record 0. Memory is copied while frozen, and only what changed
// since the previous image where `track.delta`; the tracking is armed again
// for the next one. A tree: every process, each with its own tracking; one
// whose processes changed gives a complete image (`track.delta` and
// `chain.base_id` cleared).
struct ChainTracking;
Result<std::unique_ptr<ImageSource>> checkpoint_task_tracked(pid_t pid, uint64_t starttime,
                                                             ChainTracking& track,
                                                             image::ChainRecord& chain);

}  // namespace crfs
