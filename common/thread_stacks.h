// The daemon's threads' stacks (session 15, s15-clonecost). A tree's root is
// cloned from one daemon thread and every other member from the root
// (state/tree_restore.h): each copies, with its page tables, every stack of
// the daemon, and its blob unmaps them again. A member runs on the copy of
// the restoring thread's stack only; the others' stacks (the frames of other
// requests, another restore's or checkpoint's, other users' data among them)
// are no member's. So each daemon thread notes its stack here, and the root
// marks the others' MADV_DONTFORK in its own memory before it clones anyone.
#pragma once

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

// While one is alive no thread forgets its stack, so none of the ranges it
// gave is freed (or mapped again for something else) until it goes: hold it
// across the clone that copies them.
class ThreadStacksHold {
  public:
    ThreadStacksHold();
    // Every noted stack but the calling thread's.
    std::vector<StackRange> others() const;

  private:
    std::unique_lock<std::mutex> lock_;
};

}  // namespace crfs
