// One process with 8 threads x 128 MiB (issue 10): checkpoint and restore
// time against memcpy of the same bytes, printed as ratios. Not a test (GiBs,
// root: the threads come back with their tids, clone3 set_tid).
//
//   threads_bench [THREADS [MiB_PER_THREAD]]   (default 8 128)
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/bench_util.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "restorer/restore.h"

using namespace crfs;
using namespace crfs::bench;

namespace {

size_t g_bytes;
std::atomic<int> g_ready;

void* toucher(void*) {
    char* p = static_cast<char*>(
        mmap(nullptr, g_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < g_bytes; i += 8)
        *reinterpret_cast<uint64_t*>(p + i) = i * 2654435761u + 1;
    g_ready++;
    for (;;) pause();
}

// A child with `threads` threads, each holding `bytes` of non-zero memory.
pid_t spawn_holder(int threads, size_t bytes) {
    return spawn_paused_child([threads, bytes] {
        g_bytes = bytes;
        for (int i = 0; i < threads; ++i) {
            pthread_t t;
            if (pthread_create(&t, nullptr, toucher, nullptr) != 0) _exit(1);
        }
        while (g_ready < threads) usleep(1000);
    });
}

}  // namespace

int main(int argc, char** argv) {
    int threads = argc > 1 ? std::atoi(argv[1]) : 8;
    size_t mib = argc > 2 ? size_t(std::atoi(argv[2])) : 128;
    pid_t pid = spawn_holder(threads, mib << 20);
    auto ckpt = checkpoint_and_reap(pid);
    if (!ckpt.image) return 1;
    uint64_t checkpoint = ckpt.ns, image_bytes = ckpt.bytes;

    RestoreRequest req;
    req.image_fd = ckpt.image.get();
    req.writer_is_root = true;
    req.may_choose_pid = true;
    req.want_pid = pid;
    uint64_t restore = timed_restore(req);
    if (!restore) return 1;
    uint64_t mc = memcpy_ns(image_bytes, true);
    std::printf("%d threads x %zu MiB: image %.1f MiB, memcpy %.1f ms\n", threads, mib,
                double(image_bytes) / (1 << 20), mc / 1e6);
    std::printf("checkpoint (incl. reading the image) %.1f ms = %.2f x memcpy\n", checkpoint / 1e6,
                double(checkpoint) / double(mc));
    std::printf("restore %.1f ms = %.2f x memcpy\n", restore / 1e6, double(restore) / double(mc));
    return 0;
}
