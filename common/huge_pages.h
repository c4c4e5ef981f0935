// perf: anonymous memory that may use transparent huge pages. A fresh page
// faulted in costs ~2-4 us on the development VM (5 MiB in 4 KiB faults:
// ~5 ms; MADV_POPULATE_WRITE ~2.4 ms; on huge pages ~1 ms): buffers of a
// MiB or more that every checkpoint maps anew go here (docs/performance.md
// "Small tasks: where a 1 MiB dump's time goes (session 18)").
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

namespace crfs {

inline constexpr size_t kHugePage = 2 << 20;

// `bytes` (a multiple of kHugePage) of private anonymous memory starting on a
// huge-page boundary, MADV_HUGEPAGE (transparent_hugepage "madvise" or
// "always"), nothing faulted in yet; null when it cannot be mapped. munmap()
// it as usual.
inline char* map_huge_aligned(size_t bytes) {
    void* p = mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) return nullptr;
    auto* base = static_cast<char*>(p);
    auto* start = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(base) + kHugePage - 1) &
                                          ~uintptr_t(kHugePage - 1));
    if (start > base) munmap(base, size_t(start - base));
    munmap(start + bytes, kHugePage - size_t(start - base));
    madvise(start, bytes, MADV_HUGEPAGE);
    return start;
}

// Faults the pages of [p, p + bytes) in, each with a write that changes
// nothing it holds: a locked OR of 0, atomic against another thread writing
// the same byte meanwhile. Not MADV_POPULATE_WRITE, which holds the mmap lock
// throughout: every mmap of the process (a new thread's stack) waits for it,
// and every page fault queued behind that mmap (seen: a tree's freeze took
// 30-185 ms instead of 10 while fresh memory was faulted in). A write fault
// takes only its area's lock. A huge page is faulted in whole by its first.
inline void fault_in_by_writes(char* p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 4096) asm volatile("lock orb $0, %0" : "+m"(p[off]));
}

// From now on the calling thread runs only on a CPU nothing else wants
// (SCHED_IDLE): for work done ahead that the work it helps does itself if
// it has to.
inline void run_when_idle() {
    sched_param none{};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);
}

}  // namespace crfs
