#include "common/thread_stacks.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>

namespace crfs {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kMaxNoted = 256;  // more threads than this: the rest are copied as before

struct Noted {
    pid_t tid = 0;  // 0: a free entry
    StackRange range;
    StackRange buffer;       // member: its request buffer's whole pages, empty: none
    uint64_t buffer_at = 0;  // the data address of its first noted write
    bool no_buffer = false;  // a write's data lay elsewhere: none noted again
};

// Never destroyed: a thread may end (and forget) after static destruction began.
std::mutex& noted_mu() {
    static auto* mu = new std::mutex;
    return *mu;
}
std::array<Noted, kMaxNoted> noted;  // guarded by noted_mu()

struct Forget {
    pid_t tid = 0;
    ~Forget() {
        if (!tid) return;
        std::lock_guard lock(noted_mu());
        for (auto& n : noted)
            if (n.tid == tid) n.tid = 0;
    }
};

}  // namespace

void note_thread_stack() {
    thread_local bool tried = false;
    if (tried) return;
    tried = true;
    pid_t tid = gettid();
    if (tid == getpid()) return;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
    void* addr = nullptr;
    size_t size = 0;
    int err = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (err != 0 || !addr || !size) return;
    // Whole pages of the block only: a stack the creator gave (pthread_attr_setstack)
    // may share its first and last pages with other memory.
    uint64_t start = (uint64_t(addr) + kPage - 1) & ~(kPage - 1);
    uint64_t end = (uint64_t(addr) + size) & ~(kPage - 1);
    if (end <= start) return;
    thread_local Forget forget;  // its destructor runs at the thread's end, before the stack goes
    std::lock_guard lock(noted_mu());
    for (auto& n : noted)
        if (!n.tid) {
            n = {tid, {start, end}, {}, 0, false};
            forget.tid = tid;
            return;
        }
}

void note_request_buffer(const void* data, size_t size) {
    note_thread_stack();
    pid_t tid = gettid();
    uint64_t at = uint64_t(data);
    uint64_t start = (at + kPage - 1) & ~(kPage - 1);
    uint64_t end = (at + size) & ~(kPage - 1);
    std::lock_guard lock(noted_mu());
    for (auto& n : noted) {
        if (n.tid != tid) continue;
        if (n.no_buffer) return;
        if (n.buffer_at && n.buffer_at != at) {  // not one buffer of its own: none
            n.no_buffer = true;
            n.buffer = {};
            return;
        }
        n.buffer_at = at;
        if (end > start && end > n.buffer.end) n.buffer = {start, end};
        return;
    }
}

ThreadStacksHold::ThreadStacksHold() : lock_(noted_mu()) {}

std::vector<StackRange> ThreadStacksHold::others(bool buffers) const {
    std::vector<StackRange> out;
    pid_t self = gettid();
    for (const auto& n : noted) {
        if (!n.tid || n.tid == self) continue;
        out.push_back(n.range);
        if (buffers && n.buffer.end > n.buffer.start) out.push_back(n.buffer);
    }
    return out;
}

__attribute__((noinline)) void ThreadStacksHold::drop_dead_stack() const {
    // The frame of this call: every live frame of the thread is above it.
    uint64_t frame = uint64_t(__builtin_frame_address(0));
    pid_t self = gettid();
    for (const auto& n : noted) {
        if (n.tid != self || frame < n.range.start || frame >= n.range.end) continue;
        if (frame < n.range.start + kDeadStackMargin) return;
        uint64_t end = (frame - kDeadStackMargin) & ~(kPage - 1);
        if (end > n.range.start)
            (void)madvise(reinterpret_cast<void*>(n.range.start), end - n.range.start,
                          MADV_DONTNEED);
        return;
    }
}

}  // namespace crfs
