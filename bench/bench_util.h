// Helpers the benchmarks share: a clock, memcpy as the yardstick, reaping a
// child, and an image read into a memfd as the FUSE side would read it.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "restorer/restore.h"

namespace crfs::bench {

inline uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Best of three memcpy of `bytes`; `fresh`: into newly mapped memory each time.
inline uint64_t memcpy_ns(size_t bytes, bool fresh) {
    char* src = static_cast<char*>(
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    std::memset(src, 0x5a, bytes);
    uint64_t best = ~0ull;
    for (int i = 0; i < 3; ++i) {
        char* dst = static_cast<char*>(
            mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (!fresh) std::memset(dst, 0, bytes);
        uint64_t t = now_ns();
        std::memcpy(dst, src, bytes);
        best = std::min(best, now_ns() - t);
        __asm__ volatile("" : : "r"(dst) : "memory");
        munmap(dst, bytes);
    }
    munmap(src, bytes);
    return best;
}

inline void reap(pid_t pid) {
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
}

// The whole image of `snap` in a memfd; an invalid fd on failure.
inline UniqueFd image_memfd(const Snapshot& snap) {
    UniqueFd img(memfd_create("bench-image", MFD_CLOEXEC));
    std::vector<char> buf(4 << 20);
    for (uint64_t off = 0; off < snap.size();) {
        auto n = snap.read(off, buf.data(), buf.size());
        if (!n || !*n || !write_full(img.get(), buf.data(), *n)) return UniqueFd();
        off += *n;
    }
    return img;
}

// restore_image timed from the call (the writer's close) to its return; the
// restored task is killed and reaped. 0 when it failed (the error printed).
inline uint64_t timed_restore(const RestoreRequest& req) {
    uint64_t t0 = now_ns();
    auto r = restore_image(req);
    uint64_t ns = now_ns() - t0;
    if (!r) {
        std::fprintf(stderr, "restore: %s\n", r.error().what.c_str());
        return 0;
    }
    reap(*r);
    reap_restored_children();
    return ns;
}

}  // namespace crfs::bench
