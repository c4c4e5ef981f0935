// Dump and restore time against the number of memory areas (issue 13: linear
// in VMAs and page records). For each N (default 1000 10000 30000 60000) a
// child maps N adjacent one-page areas with alternating protections (so they
// cannot merge), each holding one non-zero page; the bench checkpoints it
// (checkpoint_task and a full read, as the FUSE side does), kills it and
// restores the image twice: "full" decodes it in a pass of its own, "streamed"
// as a slot's close does, with the checksum computed as the bytes were
// written (not timed here: the writes carry it). Best of
// `rounds` (default 3) after a warm-up round. Prints time per VMA too: a
// linear cost keeps that column flat; and the ratio to CRIU's figures in
// issue 13 (CRIU 4.2, another run) where the issue has that N. Needs root;
// N near 65530 (vm.max_map_count) fails. Through the mount:
// bench/mount_vma_bench.py.
//
//   vma_bench [--rounds R] [N ...]
#include <cstdio>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "restorer/restore.h"

using namespace crfs;
using namespace crfs::bench;

namespace {

pid_t spawn_areas(size_t n) {
    return spawn_paused_child([n] {
        constexpr size_t kPage = 4096;
        char* base = static_cast<char*>(
            mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (base == MAP_FAILED) _exit(3);
        // Adjacent pages with alternating protections: the kernel cannot merge them.
        for (size_t i = 0; i < n; ++i) {
            char* p = base + i * kPage;
            std::memset(p, int(i % 251) + 1, 64);
            if (i % 2 && mprotect(p, kPage, PROT_READ) != 0) _exit(5);
        }
    });
}

// Issue 13's CRIU 4.2 figures: areas, dump ms, restore ms.
constexpr struct {
    size_t n;
    double dump, restore;
} kCriu[] = {{1000, 111, 62}, {8000, 248, 132}, {30000, 760, 245}};

struct Times {
    uint64_t dump = ~0ull, full = ~0ull, restore = ~0ull, image = 0;
};

bool one_round(size_t n, Times& t) {
    auto ckpt = checkpoint_and_reap(spawn_areas(n));
    if (!ckpt.image) return false;
    uint64_t dump = ckpt.ns;
    t.image = ckpt.bytes;

    RestoreRequest req;
    req.image_fd = ckpt.image.get();
    req.writer_is_root = true;
    uint64_t full = timed_restore(req);
    uint64_t hash_ns = 0;
    req.image_hash = hash_as_written(req.image_fd, &hash_ns);
    uint64_t restore = hash_ns ? timed_restore(req) : 0;
    if (!full || !restore) {
        std::fprintf(stderr, "restore of %zu areas failed\n", n);
        return false;
    }
    t.dump = std::min(t.dump, dump);
    t.full = std::min(t.full, full);
    t.restore = std::min(t.restore, restore);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 3;
    std::vector<size_t> counts;
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--rounds" && i + 1 < argc)
            rounds = std::atoi(argv[++i]);
        else
            counts.push_back(size_t(std::atol(argv[i])));
    }
    if (counts.empty()) counts = {1000, 10000, 30000, 60000};
    std::printf("%8s %10s %10s %12s %10s %12s %12s %10s %10s\n", "VMAs", "image MiB", "dump ms",
                "dump us/VMA", "full ms", "streamed ms", "rest us/VMA", "dump/CRIU", "rest/CRIU");
    Times warm;
    one_round(counts.front(), warm);
    int failed = 0;
    for (size_t n : counts) {
        Times t;
        bool ok = true;
        for (int r = 0; r < rounds && ok; ++r) ok = one_round(n, t);
        if (!ok) {
            ++failed;
            continue;
        }
        std::printf("%8zu %10.1f %10.1f %12.2f %10.1f %12.1f %12.2f", n,
                    double(t.image) / (1 << 20), ms(t.dump), double(t.dump) / 1e3 / double(n),
                    ms(t.full), ms(t.restore), double(t.restore) / 1e3 / double(n));
        bool criu = false;
        for (const auto& c : kCriu)
            if (c.n == n) {
                std::printf(" %9.2fx %9.2fx", ms(t.dump) / c.dump, ms(t.restore) / c.restore);
                criu = true;
            }
        if (!criu) std::printf(" %10s %10s", "-", "-");
        std::printf("\n");
    }
    return failed ? 2 : 0;
}
