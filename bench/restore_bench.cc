// Restore time against plain memcpy (issue 4).
//
// For 16, 256 and 1024 MiB of non-zero memory in a child: checkpoint it into a
// memfd (checkpoint_task + reads, as the FUSE side does), kill it, and time
// restore_image from the call (the writer's close) to the report the blob
// sends right before its rt_sigreturn (the task's first instruction). In the
// same run, time a memcpy of the image's bytes: into pre-faulted memory (the
// bandwidth bound) and into fresh memory (what a restore has to do: every page
// is new). Target: restore <= 2 x memcpy + 10 ms. Needs root.
//
// Each image is restored twice: "full" decodes the spool in a pass of its own
// (as a restore without a write-time hash does: `crfs restore-direct`), and
// "streamed" as a slot restores it, with the checksum computed while the
// bytes were written ("hash": that work, done here in 1 MiB pieces as the
// FUSE writes arrive; not part of the streamed time, the writes carry it).
//
//   restore_bench [MiB ...]   (default 16 256 1024)
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
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

int main(int argc, char** argv) {
    std::vector<size_t> sizes;
    for (int i = 1; i < argc; ++i) sizes.push_back(size_t(std::atoi(argv[i])));
    if (sizes.empty()) sizes = {16, 256, 1024};
    std::printf("%6s %9s %9s %11s %8s %9s %8s %7s %7s %s\n", "MiB", "image MiB", "full ms",
                "streamed ms", "hash ms", "memcpy ms", "fresh ms", "ratio", "fresh",
                "target (2x memcpy + 10 ms, streamed)");
    int failed = 0;
    for (size_t mib : sizes) {
        auto ckpt = checkpoint_and_reap(spawn_holder(mib << 20));
        if (!ckpt.image) return 1;
        uint64_t image_bytes = ckpt.bytes;

        RestoreRequest req;
        req.image_fd = ckpt.image.get();
        req.writer_is_root = true;
        uint64_t full = timed_restore(req);
        if (!full) return 1;
        uint64_t hash_ns = 0;
        req.image_hash = hash_as_written(req.image_fd, &hash_ns);
        if (!hash_ns) return 1;
        uint64_t restore = timed_restore(req);
        if (!restore) return 1;
        uint64_t mc = memcpy_ns(image_bytes, false), fresh = memcpy_ns(image_bytes, true);
        bool ok = restore <= 2 * mc + 10000000;
        failed += !ok;
        std::printf("%6zu %9.1f %9.2f %11.2f %8.2f %9.2f %8.2f %7.2f %7.2f %s\n", mib,
                    double(image_bytes) / (1 << 20), full / 1e6, restore / 1e6, hash_ns / 1e6,
                    mc / 1e6, fresh / 1e6, double(restore) / double(mc),
                    double(restore) / double(fresh), ok ? "met" : "MISSED");
    }
    return failed ? 2 : 0;
}
