// A paused child to checkpoint, and its checkpoint read into a memfd as the
// FUSE side serves it: shared by the restore tests (tests/cr) and the benches
// (bench/bench_util.h). Header-only: the benches link no test library.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs::test {

// Forks a child that runs `setup` (which builds the state to checkpoint),
// puts /dev/null on its stdio, closes every other fd and pauses. Returns once
// it sleeps after closing them (a state, waited for at most 5 s).
inline pid_t spawn_paused_child(const std::function<void()>& setup) {
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

// Reads the whole snapshot, as FUSE reads do, into a new memfd.
inline Result<UniqueFd> drain_to_memfd(const Snapshot& snap) {
    UniqueFd img(memfd_create("crfs-image", MFD_CLOEXEC));
    if (!img) return errno_error("memfd_create");
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < snap.size();) {
        auto n = snap.read(off, buf.data(), buf.size());
        if (!n) return std::unexpected(n.error().context("image at " + std::to_string(off)));
        if (*n == 0) return make_error(EIO, "image shorter than its size");
        if (auto w = write_full(img.get(), buf.data(), *n); !w) return std::unexpected(w.error());
        off += *n;
    }
    return img;
}

// checkpoint_task of `pid` (the task as it is now), drained into a memfd;
// `image_bytes`: the image's size.
inline Result<UniqueFd> checkpoint_to_memfd(pid_t pid, uint64_t* image_bytes = nullptr) {
    auto st = read_task_stat(pid);
    if (!st) return std::unexpected(st.error());
    auto snap = checkpoint_task(pid, st->starttime);
    if (!snap) return std::unexpected(snap.error().context("checkpoint " + std::to_string(pid)));
    if (image_bytes) *image_bytes = (*snap)->size();
    return drain_to_memfd(**snap);
}

}  // namespace crfs::test
