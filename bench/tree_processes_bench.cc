// A 16-process tree of 16 MiB each (issue 10): checkpoint and restore time
// against memcpy of the same bytes, printed as ratios, and the cost per
// process beyond its memory: (time - memcpy of the image's bytes) / processes,
// the figure the aim bounds (a tree costs its memory plus 1 ms per process).
// Not a test (root: the tree comes back with its pids, clone3 set_tid).
//
//   tree_processes_bench [PROCESSES [MiB_PER_PROCESS [ROUNDS]]]   (default 16 16 3)
//
// Each round makes a fresh tree, checkpoints it into a memfd (as the mount
// serves it), kills it and restores it; best and median over the rounds.
// `64 1` isolates the per-process cost (little memory, many processes).
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/bench_util.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "restorer/restore.h"
#include "state/tree.h"

using namespace crfs;
using namespace crfs::bench;

namespace {

void touch(size_t bytes) {
    char* p = static_cast<char*>(
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < bytes; i += 8) *reinterpret_cast<uint64_t*>(p + i) = i * 2654435761u + 1;
}

// Kills `root`'s children and then `root`, and reaps them all (we are a subreaper).
void kill_tree(pid_t root) {
    auto kids = state::list_children(root);
    if (kids)
        for (pid_t k : *kids) kill(k, SIGKILL);
    kill(root, SIGKILL);
    while (waitpid(-1, nullptr, __WALL) > 0 || errno == EINTR) {
    }
}

// Grows the main thread's stack now: a restore maps its blob area, in the
// daemon, where the image has room, and the tree's processes are forks of
// this one, so that room can be just below our own stack, which then cannot
// grow (a guard gap only keeps mmap(NULL) away). Each process of a tree
// nests a restore_image call (state/tree_restore.h): 64 need more than the
// few pages the stack had. crfsd restores on a thread of a fixed stack.
// The pages are given back (the area stays): the tree's processes, forks of
// this one, would otherwise each hold them, and be checkpointed with them.
__attribute__((noinline)) void grow_stack() {
    volatile char pad[4 << 20];
    for (size_t i = 0; i < sizeof pad; i += 4096) pad[i] = 0;
    uintptr_t lo = (reinterpret_cast<uintptr_t>(pad) + 4095) & ~uintptr_t(4095);
    uintptr_t hi = (reinterpret_cast<uintptr_t>(pad) + sizeof pad) & ~uintptr_t(4095);
    madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

struct Round {
    uint64_t checkpoint = 0, restore = 0, image_bytes = 0;
};

// One tree checkpointed, killed and restored; false (the error printed) on failure.
bool one_round(int procs, size_t bytes, Round& out) {
    // The root forks procs-1 children, each with its own /dev/null stdio (a
    // shared description would be a reason) and its own memory; each sleeps
    // before its spawn_paused_child returns.
    pid_t root = spawn_paused_child([&] {
        for (int i = 1; i < procs; ++i) spawn_paused_child([&] { touch(bytes); });
        touch(bytes);
    });
    auto st = read_task_stat(root);
    uint64_t t0 = now_ns();
    auto snap = st ? checkpoint_task(root, st->starttime) : decltype(checkpoint_task(0, 0)){};
    if (!st || !snap) {
        std::fprintf(stderr, "checkpoint of %d failed: %s\n", root,
                     snap ? "" : snap.error().what.c_str());
        kill_tree(root);
        return false;
    }
    auto drained = test::drain_to_memfd(**snap);
    if (!drained) {
        std::fprintf(stderr, "reading the image: %s\n", drained.error().what.c_str());
        kill_tree(root);
        return false;
    }
    UniqueFd img = std::move(*drained);
    out.checkpoint = now_ns() - t0;
    out.image_bytes = (*snap)->size();
    snap->reset();
    kill_tree(root);

    RestoreRequest req;
    req.image_fd = img.get();
    req.writer_is_root = true;
    req.may_choose_pid = true;
    req.want_pid = root;
    t0 = now_ns();
    auto r = restore_image(req);
    out.restore = now_ns() - t0;
    if (!r) {
        std::fprintf(stderr, "restore: %s\n", r.error().what.c_str());
        return false;
    }
    release_restored_child(*r);
    kill_tree(*r);
    reap_restored_children();
    return true;
}

// "best 12.3 ms (1.20 x memcpy, 0.31 ms/process), median ...".
void report(const char* what, std::vector<uint64_t> ns, uint64_t mc, int procs) {
    std::sort(ns.begin(), ns.end());
    auto line = [&](const char* which, uint64_t t) {
        double per = (double(t) - double(mc)) / 1e6 / procs;
        std::printf(" %s %.1f ms (%.2f x memcpy, %.2f x (memcpy + 1 ms/process), %+.2f ms/process)",
                    which, t / 1e6, double(t) / double(mc), double(t) / (double(mc) + 1e6 * procs),
                    per);
    };
    std::printf("%s:", what);
    line("best", ns.front());
    std::printf(";");
    line("median", ns[ns.size() / 2]);
    std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
    int procs = argc > 1 ? std::atoi(argv[1]) : 16;
    size_t bytes = (argc > 2 ? size_t(std::atoi(argv[2])) : 16) << 20;
    int rounds = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    grow_stack();
    std::vector<uint64_t> checkpoint, restore;
    uint64_t image_bytes = 0;
    for (int i = 0; i < rounds; ++i) {
        Round r;
        if (!one_round(procs, bytes, r)) return 1;
        checkpoint.push_back(r.checkpoint);
        restore.push_back(r.restore);
        image_bytes = r.image_bytes;
    }
    uint64_t mc = memcpy_ns(image_bytes, true);
    std::printf("%d processes x %zu MiB, %d rounds: image %.1f MiB, memcpy %.1f ms\n", procs,
                bytes >> 20, rounds, double(image_bytes) / (1 << 20), mc / 1e6);
    report("checkpoint (incl. reading the image)", checkpoint, mc, procs);
    report("restore", restore, mc, procs);
    return 0;
}
