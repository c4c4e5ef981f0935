// malloc: the case common/malloc_arena.h is for, in a fresh process (its
// arenas are the process's from its start, so not in unit_tests itself):
// `malloc_arena_probe [one]` frees a large block (glibc's trim threshold
// rises to twice its size, as after a decode), then a thread allocates
// 4 MiB in 64 KiB blocks, touches and frees them and ends; the process gives
// back its free memory as tree_spawn does before the root's clone
// (`malloc_trim(0)`) and prints the anonymous kB it still has. With `one`
// it calls use_one_malloc_arena() first, as crfsd does.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "common/malloc_arena.h"

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "one") == 0) crfs::use_one_malloc_arena();
    {
        auto* big = static_cast<volatile char*>(std::malloc(8 << 20));
        for (size_t i = 0; i < (8 << 20); i += 4096) big[i] = 1;
        std::free(const_cast<char*>(big));
    }
    std::thread([] {
        constexpr int kBlocks = 64;
        volatile char* blocks[kBlocks];
        for (auto& b : blocks) {
            b = static_cast<volatile char*>(std::malloc(64 << 10));
            for (size_t i = 0; i < (64 << 10); i += 4096) b[i] = 1;
        }
        for (int i = kBlocks - 1; i >= 0; --i) std::free(const_cast<char*>(blocks[i]));
    }).join();
    (void)malloc_trim(0);
    std::ifstream smaps("/proc/self/smaps");
    unsigned long long kb = 0;
    for (std::string line; std::getline(smaps, line);)
        if (line.starts_with("Anonymous:")) kb += std::strtoull(line.c_str() + 10, nullptr, 10);
    std::printf("%llu\n", kb);
    return 0;
}
