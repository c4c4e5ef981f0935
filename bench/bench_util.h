// Helpers shared by the benches: a clock, a child that holds memory, reaping,
// a checkpoint into a memfd (as the FUSE side serves it), memcpy as the
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
#include "common/image_prehash.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "restorer/restore.h"
#include "tests/support/image_child.h"

namespace crfs::bench {

inline uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline double ms(uint64_t ns) {
    return double(ns) / 1e6;
}

// A child that runs `setup` and pauses with only /dev/null open
// (tests/support/image_child.h).
using test::spawn_paused_child;

// A child holding `bytes` of non-zero anonymous memory.
inline pid_t spawn_holder(size_t bytes) {
    return spawn_paused_child([bytes] {
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

// A checkpoint of `pid` read into a memfd (as the FUSE side serves it), then
// the task killed and reaped. `image` is empty when the checkpoint failed
// (the error printed); `ns` covers the checkpoint and the reads.
struct Checkpointed {
    UniqueFd image;
    uint64_t bytes = 0;
    uint64_t ns = 0;
};
inline Checkpointed checkpoint_and_reap(pid_t pid) {
    Checkpointed out;
    auto fail = [&](const Error& e) {
        std::fprintf(stderr, "checkpoint of %d failed: %s\n", pid, e.what.c_str());
        reap(pid);
        return Checkpointed{};
    };
    auto st = read_task_stat(pid);
    if (!st) return fail(st.error());
    uint64_t t0 = now_ns();
    auto snap = checkpoint_task(pid, st->starttime);
    if (!snap) return fail(snap.error());
    auto img = test::drain_to_memfd(**snap);
    out.ns = now_ns() - t0;
    if (!img) return fail(img.error());
    out.image = std::move(*img);
    out.bytes = (*snap)->size();
    snap->reset();
    reap(pid);
    return out;
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
    release_restored_child(*r);
    reap(*r);
    reap_restored_children();
    return ns;
}

// The image in `fd` hashed as a slot hashes its writes (1 MiB pieces, as the
// FUSE writes arrive); `ns` the time the hashing took (not the reads), 0 on
// error.
inline StreamHash hash_as_written(int fd, uint64_t* ns) {
    ImagePrehash hash;
    std::vector<char> buf(1 << 20);
    *ns = 0;
    for (off_t off = 0;;) {
        ssize_t n = pread(fd, buf.data(), buf.size(), off);
        if (n <= 0) break;
        uint64_t t0 = now_ns();
        hash.update(buf.data(), size_t(n));
        *ns += now_ns() - t0;
        off += n;
    }
    auto r = hash.result();
    if (!r) *ns = 0;
    return r.value_or(StreamHash{});
}

}  // namespace crfs::bench
