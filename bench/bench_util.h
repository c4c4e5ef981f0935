// Helpers shared by the benches: a clock, a child that holds memory, reaping,
// draining a snapshot into a memfd (as the FUSE side serves it), memcpy as the
// yardstick and a timed restore.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "restorer/restore.h"

namespace crfs::bench {

inline uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline double ms(uint64_t ns) {
    return double(ns) / 1e6;
}

// A child that runs `setup` (which builds the memory to checkpoint), puts
// /dev/null on its stdio, closes everything else and pauses. Returns once it
// sleeps.
inline pid_t spawn_child(const std::function<void()>& setup) {
    int ready[2];
    if (pipe(ready) != 0) std::abort();
    pid_t pid = fork();
    if (pid == 0) {
        setup();
        int n = open("/dev/null", O_RDWR);
        dup2(n, 0);
        dup2(n, 1);
        dup2(n, 2);
        char x = 1;
        if (write(ready[1], &x, 1) != 1) _exit(1);
        for (int fd = 3; fd < 1024; ++fd) close(fd);
        for (;;) pause();
    }
    close(ready[1]);
    char x;
    if (read(ready[0], &x, 1) != 1) std::abort();
    close(ready[0]);
    // Wait until the child closed its descriptors (it pauses right after).
    for (int i = 0; i < 5000; ++i) {
        auto st = read_task_stat(pid);
        if (st && st->state == 'S') break;
        usleep(1000);
    }
    return pid;
}

// A child holding `bytes` of non-zero anonymous memory.
inline pid_t spawn_holder(size_t bytes) {
    return spawn_child([bytes] {
        char* p = static_cast<char*>(
            mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        for (size_t i = 0; i < bytes; i += 8)
            *reinterpret_cast<uint64_t*>(p + i) = i * 2654435761u + 1;
    });
}

inline void reap(pid_t pid) {
    kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
}

// Reads the whole snapshot, as FUSE reads do, into a new memfd.
inline UniqueFd drain_to_memfd(const Snapshot& snap) {
    UniqueFd img(memfd_create("bench-image", MFD_CLOEXEC));
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < snap.size();) {
        auto n = snap.read(off, buf.data(), buf.size());
        if (!n || !*n || !write_full(img.get(), buf.data(), *n)) std::abort();
        off += *n;
    }
    return img;
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
