// The daemon's threads' stacks (session 15, s15-clonecost). A tree's root is
// cloned from one daemon thread and every other member from the root
// (state/tree_restore.h): each copies, with its page tables, every stack of
// the daemon, and its blob unmaps them again. A member runs on the copy of
// the restoring thread's stack only; the others' stacks (the frames of other
// requests, another restore's or checkpoint's, other users' data among them)
// are no member's. So each daemon thread notes its stack here, and the root
// marks the others' MADV_DONTFORK in its own memory before it clones anyone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace crfs {

struct StackRange {
    uint64_t start = 0, end = 0;  // page-aligned, [start, end): the stack and the thread's TLS
};

// Notes the calling thread's stack (its pthread stack block; the first call of
// each thread, later ones return at once). A thread forgets its stack when it
// ends, before its stack is freed. The main thread is never noted (its stack
// grows; nothing but the kernel knows where it ends).
void note_thread_stack();

// member: the whole pages of [data, data + size), the bytes of a FUSE write
// request in the calling worker's libfuse receive buffer (`fuse_buf`, one per
// worker of fuse_session_loop_mt: 1 MiB + 4 KiB, malloc'd at its first
// request, freed only after the worker is joined, so after it forgot it;
// crfsd takes no splice read: ops.cc op_init). Noted with the thread's stack:
// the first write's `data` and the largest extent seen; a write whose data
// lies elsewhere (a buffer that is not the worker's own) forgets the
// thread's buffer for good. A tree's root marks the other threads' buffers
// MADV_DONTFORK as their stacks: no member runs libfuse.
void note_request_buffer(const void* data, size_t size);

inline constexpr uint64_t kDeadStackMargin = 64 << 10;

// While one is alive no thread forgets its stack, so none of the ranges it
// gave is freed (or mapped again for something else) until it goes: hold it
// across the clone that copies them.
class ThreadStacksHold {
  public:
    ThreadStacksHold();
    // Every noted stack but the calling thread's, and with `buffers` every
    // noted request buffer but the calling thread's.
    std::vector<StackRange> others(bool buffers = true) const;

    // member: gives the calling thread's stack below its current frame (less
    // kDeadStackMargin, for the calls it makes meanwhile) back to the kernel:
    // frames of calls that returned, dead. So a process cloned next copies
    // only the frames live at the clone. Nothing for a thread not noted.
    void drop_dead_stack() const;

  private:
    std::unique_lock<std::mutex> lock_;
};

}  // namespace crfs
