// Delta images (issue 13, docs/incremental.md) against the complete image and
// memcpy: a child holds N MiB of non-zero memory and writes 1% of its pages
// (every 100th) between checkpoints. Timed: a complete image of it
// (checkpoint_task, copied while frozen), and a delta after each round
// (checkpoint_task_tracked, as /crfs/<pid>/delta does), each drained into
// /dev/null as FUSE reads would; and a memcpy of the 1% of bytes.
// Targets at 1024 MiB: a delta <= 50 ms, its size ~1% of the complete image.
// --tree: the child forks two children after filling its memory (so three
// processes of N MiB each, copy-on-write, every one writing its 1%), and the
// deltas are of the tree (docs/incremental.md "Trees").
//
//   delta_bench [--tree] [MiB ...]   (default 1024)
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/uio.h>

#include <cstdio>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "checkpoint/incremental.h"

using namespace crfs;
using namespace crfs::bench;

namespace {

constexpr size_t kPage = 4096;
char* g_mem;
size_t g_bytes;
volatile uint64_t g_round;  // the child's rounds done, read by the parent

void write_one_percent(int) {
    uint64_t r = g_round + 1;
    for (size_t off = 0; off < g_bytes; off += 100 * kPage)
        *reinterpret_cast<volatile uint64_t*>(g_mem + off) = r;
    g_round = r;
}

uint64_t child_round(pid_t pid) {
    uint64_t v = 0;
    iovec local{&v, sizeof v}, remote{const_cast<uint64_t*>(&g_round), sizeof v};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof v ? v : 0;
}

// The child and, with --tree, its children (which die with it).
std::vector<pid_t> tree_of(pid_t pid) {
    std::vector<pid_t> out{pid};
    FILE* f = std::fopen(
        ("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children").c_str(),
        "r");
    for (int c; f && std::fscanf(f, "%d", &c) == 1;) out.push_back(c);
    if (f) std::fclose(f);
    return out;
}

// Each process of the tree writes its 1% for round `round`; true once all did.
bool next_round(pid_t pid, uint64_t round, size_t members) {
    auto all = tree_of(pid);
    if (all.size() != members) return false;
    for (pid_t p : all) kill(p, SIGUSR1);
    for (pid_t p : all)
        for (int i = 0; i < 100000 && child_round(p) < round; ++i) usleep(100);
    for (pid_t p : all)
        if (child_round(p) < round) return false;
    return true;
}

// Drains an image into /dev/null; its size, or 0 on failure.
uint64_t drain(ImageSource& img) {
    UniqueFd p[2];
    int fds[2];
    if (pipe(fds) != 0) return 0;
    p[0].reset(fds[0]);
    p[1].reset(fds[1]);
    uint64_t size = 0;
    std::thread reader([&] {
        char buf[1 << 16];
        for (ssize_t n; (n = read(p[0].get(), buf, sizeof buf)) > 0;) size += uint64_t(n);
    });
    bool ok = img.write_to(p[1].get()).has_value();
    p[1].reset();
    reader.join();
    return ok ? size : 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<size_t> sizes;
    static bool tree = false;
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--tree")
            tree = true;
        else
            sizes.push_back(std::strtoul(argv[i], nullptr, 10));
    size_t members = tree ? 3 : 1;
    if (tree) std::printf("a tree of 3 processes, each of:\n");
    if (sizes.empty()) sizes = {1024};
    std::printf("%6s | %9s %9s | %9s %9s %7s | %9s %8s\n", "MiB", "full ms", "full MB", "delta ms",
                "delta MB", "size%", "memcpy1%", "d/mcp");
    int bad = 0;
    for (size_t mib : sizes) {
        g_bytes = mib << 20;
        pid_t pid = spawn_paused_child([] {
            g_mem = static_cast<char*>(
                mmap(nullptr, g_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
            for (size_t i = 0; i < g_bytes; i += 8)
                *reinterpret_cast<uint64_t*>(g_mem + i) = i * 2654435761u + 1;
            signal(SIGUSR1, write_one_percent);
            for (int i = 0; tree && i < 2; ++i)
                if (fork() == 0) {
                    prctl(PR_SET_PDEATHSIG, SIGKILL);
                    int n = open("/dev/null", O_RDWR);
                    for (int fd = 0; fd < 3; ++fd) dup2(n, fd);
                    for (int fd = 3; fd < 1024; ++fd) close(fd);
                    for (;;) pause();
                }
        });
        for (int i = 0; i < 100000 && tree_of(pid).size() < members; ++i) usleep(100);
        uint64_t start = read_task_stat(pid).value().starttime;

        uint64_t t0 = now_ns();
        auto full = checkpoint_task(pid, start);
        uint64_t full_bytes = full ? (*full)->size() : 0;
        uint64_t full_ns = now_ns() - t0;
        full = decltype(full)(nullptr);

        ChainTracking track;
        image::ChainRecord chain{1, 0};
        auto base = checkpoint_task_tracked(pid, start, track, chain);
        bool ok = full_bytes && base && drain(**base);
        uint64_t best_ns = UINT64_MAX, delta_bytes = 0;
        for (uint64_t round = 1; ok && round <= 3; ++round) {
            if (!next_round(pid, round, members)) {
                std::fprintf(stderr, "the tree did not write its round %lu\n", round);
                ok = false;
                break;
            }
            track.delta = true;
            chain = {round + 1, round};
            uint64_t t = now_ns();
            auto d = checkpoint_task_tracked(pid, start, track, chain);
            uint64_t n = d ? drain(**d) : 0;
            uint64_t took = now_ns() - t;
            if (!n) {
                std::fprintf(stderr, "delta failed: %s\n", d ? "stream" : d.error().what.c_str());
                ok = false;
                break;
            }
            if (took < best_ns) best_ns = took, delta_bytes = n;
        }
        reap(pid);
        if (!ok) {
            ++bad;
            continue;
        }
        uint64_t mc = memcpy_ns(g_bytes / 100, false);
        std::printf("%6zu | %9.2f %9.1f | %9.2f %9.2f %6.2f%% | %9.2f %8.1f\n", mib, ms(full_ns),
                    full_bytes / 1e6, ms(best_ns), delta_bytes / 1e6,
                    100.0 * double(delta_bytes) / double(full_bytes), ms(mc),
                    double(best_ns) / double(mc));
    }
    std::printf("targets at 1024 MiB: delta ms <= 50, size%% ~ 1%%\n");
    return bad ? 1 : 0;
}
