// perf: anonymous memory that may use transparent huge pages. A fresh page
// faulted in costs ~2-4 us on the development VM (5 MiB in 4 KiB faults:
// ~5 ms; MADV_POPULATE_WRITE ~2.4 ms; on huge pages ~1 ms): buffers of a
// MiB or more that every checkpoint maps anew go here (docs/performance.md
// "Small tasks: where a 1 MiB dump's time goes (session 18)").
#pragma once

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

}  // namespace crfs
