// Dump and restore time against the number of memory areas (issue 13: linear
// in VMAs and page records). For each N (default 1000 10000 30000 60000) a
// child maps N adjacent one-page areas with alternating protections (so they
// cannot merge), each holding one non-zero page; the bench checkpoints it
// (checkpoint_task and a full read, as the FUSE side does), kills it and
// restores the image (restore_image, as a slot's close does). Best of
// `rounds` (default 3) after a warm-up round. Prints time per VMA too: a
// linear cost keeps that column flat. Needs root; N near 65530
// (vm.max_map_count) fails.
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

struct Times {
    uint64_t dump = ~0ull, restore = ~0ull, image = 0;
};

bool one_round(size_t n, Times& t) {
    auto ckpt = checkpoint_and_reap(spawn_areas(n));
    if (!ckpt.image) return false;
    uint64_t dump = ckpt.ns;
    t.image = ckpt.bytes;

    RestoreRequest req;
    req.image_fd = ckpt.image.get();
    req.writer_is_root = true;
    uint64_t t0 = now_ns();
    auto r = restore_image(req);
    uint64_t restore = now_ns() - t0;
    if (!r) {
        std::fprintf(stderr, "restore of %zu areas: %s\n", n, r.error().what.c_str());
        return false;
    }
    reap(*r);
    reap_restored_children();
    t.dump = std::min(t.dump, dump);
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
    std::printf("%8s %10s %10s %12s %12s %12s\n", "VMAs", "image MiB", "dump ms", "dump us/VMA",
                "restore ms", "rest us/VMA");
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
        std::printf("%8zu %10.1f %10.1f %12.2f %12.1f %12.2f\n", n, double(t.image) / (1 << 20),
                    ms(t.dump), double(t.dump) / 1e3 / double(n), ms(t.restore),
                    double(t.restore) / 1e3 / double(n));
    }
    return failed ? 2 : 0;
}
