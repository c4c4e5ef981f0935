// A 16-process tree of 16 MiB each (issue 10): checkpoint and restore time
// against memcpy of the same bytes, printed as ratios, and the cost per
// process beyond its memory. Not a test (root: the tree comes back with its
// pids, clone3 set_tid).
//
//   tree_processes_bench [PROCESSES [MiB_PER_PROCESS]]   (default 16 16)
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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

}  // namespace

int main(int argc, char** argv) {
    int procs = argc > 1 ? std::atoi(argv[1]) : 16;
    size_t bytes = (argc > 2 ? size_t(std::atoi(argv[2])) : 16) << 20;
    prctl(PR_SET_CHILD_SUBREAPER, 1);
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
        return 1;
    }
    auto drained = test::drain_to_memfd(**snap);
    if (!drained) {
        std::fprintf(stderr, "reading the image: %s\n", drained.error().what.c_str());
        kill_tree(root);
        return 1;
    }
    UniqueFd img = std::move(*drained);
    uint64_t checkpoint = now_ns() - t0;
    uint64_t image_bytes = (*snap)->size();
    snap->reset();
    kill_tree(root);

    RestoreRequest req;
    req.image_fd = img.get();
    req.writer_is_root = true;
    req.may_choose_pid = true;
    req.want_pid = root;
    t0 = now_ns();
    auto r = restore_image(req);
    uint64_t restore = now_ns() - t0;
    if (!r) {
        std::fprintf(stderr, "restore: %s\n", r.error().what.c_str());
        return 1;
    }
    kill_tree(*r);
    reap_restored_children();
    uint64_t mc = memcpy_ns(image_bytes, true);
    double per = 1e6 * procs;  // ns of 1 ms per process
    std::printf("%d processes x %zu MiB: image %.1f MiB, memcpy %.1f ms\n", procs, bytes >> 20,
                double(image_bytes) / (1 << 20), mc / 1e6);
    std::printf(
        "checkpoint (incl. reading the image) %.1f ms = %.2f x memcpy = %.2f x "
        "(memcpy + 1 ms per process)\n",
        checkpoint / 1e6, double(checkpoint) / double(mc), double(checkpoint) / (double(mc) + per));
    std::printf("restore %.1f ms = %.2f x memcpy = %.2f x (memcpy + 1 ms per process)\n",
                restore / 1e6, double(restore) / double(mc), double(restore) / (double(mc) + per));
    return 0;
}
