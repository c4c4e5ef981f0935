#include "common/thread_stacks.h"

#include <pthread.h>
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
            n = {tid, {start, end}};
            forget.tid = tid;
            return;
        }
}

ThreadStacksHold::ThreadStacksHold() : lock_(noted_mu()) {}

std::vector<StackRange> ThreadStacksHold::others() const {
    std::vector<StackRange> out;
    pid_t self = gettid();
    for (const auto& n : noted)
        if (n.tid && n.tid != self) out.push_back(n.range);
    return out;
}

}  // namespace crfs
