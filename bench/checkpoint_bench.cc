// Checkpoint throughput and frozen time against plain memcpy bandwidth.
//
// For 16, 256 and 1024 MiB of non-zero dirty memory in a child process:
// checkpoint it (checkpoint_task, as the FUSE open does) and drain the
// snapshot (as FUSE reads do) into /dev/null and into a file; in the same run
// time a memcpy of the same bytes. Targets (issue 3): end-to-end throughput at
// least 40% of memcpy bandwidth at 1 GiB; frozen time at most 2x the memcpy
// time of the stored bytes.
//
//   checkpoint_bench [MiB ...] [--dir DIR]   (default 16 256 1024, DIR /tmp)
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/freeze.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "crfs/image_format.h"

using namespace crfs;
using namespace crfs::bench;

namespace {

double gbps(uint64_t bytes, uint64_t ns) {
    return ns ? double(bytes) / double(ns) : 0;
}

struct Run {
    uint64_t total_ns = 0;  // checkpoint_task + draining every byte
    uint64_t frozen_ns = 0;
    uint64_t image_bytes = 0;
    uint64_t stored_bytes = 0;
};

bool checkpoint_into(pid_t pid, uint64_t start, int out_fd, Run& r) {
    std::vector<char> buf(1 << 20);
    uint64_t t = monotonic_ns();
    auto snap = checkpoint_task(pid, start);
    if (!snap) {
        std::fprintf(stderr, "checkpoint failed: %s\n", snap.error().what.c_str());
        return false;
    }
    for (uint64_t off = 0; off < (*snap)->size();) {
        auto n = (*snap)->read(off, buf.data(), buf.size());
        if (!n || *n == 0) return false;
        if (!write_full(out_fd, buf.data(), *n)) return false;
        off += *n;
    }
    r.total_ns = monotonic_ns() - t;
    r.image_bytes = (*snap)->size();
    // The stats record sits right before the trailer.
    image::StatsRecord st;
    uint64_t at = r.image_bytes - sizeof(image::RecordHeader) - sizeof(image::Trailer) - sizeof st;
    if ((*snap)->read(at, &st, sizeof st).value_or(0) != sizeof st) return false;
    r.frozen_ns = st.frozen_ns;
    r.stored_bytes = st.pages_stored * image::kPageSize;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<size_t> sizes;
    std::string dir = "/tmp";
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--dir" && i + 1 < argc)
            dir = argv[++i];
        else
            sizes.push_back(std::strtoul(argv[i], nullptr, 10));
    }
    if (sizes.empty()) sizes = {16, 256, 1024};

    std::printf("%6s %10s %10s | %9s %9s %8s | %9s %8s | %9s %8s | %8s %8s\n", "MiB", "image MB",
                "stored MB", "frozen ms", "memcpy ms", "memcpyGB", "null ms", "null GB/s",
                "file ms", "file GB/s", "thr/mcp", "frz/mcp");
    int bad = 0;
    for (size_t mib : sizes) {
        size_t bytes = mib << 20;
        pid_t pid = spawn_holder(bytes);
        uint64_t start = read_task_stat(pid).value().starttime;

        UniqueFd null_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
        Run to_null, to_file;
        // One warm-up checkpoint, then the measured ones.
        bool ok = checkpoint_into(pid, start, null_fd.get(), to_null) &&
                  checkpoint_into(pid, start, null_fd.get(), to_null);
        std::string path = dir + "/crfs-bench.img";
        UniqueFd file_fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        ok = ok && checkpoint_into(pid, start, file_fd.get(), to_file);
        unlink(path.c_str());
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        if (!ok) {
            ++bad;
            continue;
        }
        uint64_t mc = memcpy_ns(to_null.stored_bytes ? to_null.stored_bytes : bytes, false);
        double mc_bw = gbps(to_null.stored_bytes, mc);
        double thr = gbps(to_null.image_bytes, to_null.total_ns);
        std::printf(
            "%6zu %10.1f %10.1f | %9.2f %9.2f %8.2f | %9.2f %8.2f | %9.2f %8.2f | %7.0f%% %8.2f\n",
            mib, to_null.image_bytes / 1e6, to_null.stored_bytes / 1e6, ms(to_null.frozen_ns),
            ms(mc), mc_bw, ms(to_null.total_ns), thr, ms(to_file.total_ns),
            gbps(to_file.image_bytes, to_file.total_ns), 100 * thr / mc_bw,
            double(to_null.frozen_ns) / double(mc));
    }
    std::printf("targets at 1024 MiB: thr/mcp >= 40%%, frz/mcp <= 2.0\n");
    return bad ? 1 : 0;
}
