// malloc: with one arena, what a thread freed is given back by the trim
// before a tree's root is cloned, so no member copies it (common/malloc_arena.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

// The anonymous kB tests/unit/malloc_arena_probe.cc has left after its trim.
long probe_kb(const std::string& args, const char* env = "") {
    std::string cmd = std::string("env -u CRFS_TREE_CLONE_ARENAS -u GLIBC_TUNABLES ") + env + " " +
                      MALLOC_ARENA_PROBE + " " + args;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    long kb = -1;
    if (std::fscanf(p, "%ld", &kb) != 1) kb = -1;
    return pclose(p) == 0 ? kb : -1;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcMalloc = false;  // ASan's allocator: no arenas, a quarantine
#else
constexpr bool kGlibcMalloc = true;
#endif

TEST(MallocArena, AThreadsFreedMemoryIsGivenBackWithOneArena) {
    if (!kGlibcMalloc) GTEST_SKIP() << "glibc's malloc only";
    long glibc = probe_kb("");
    long one = probe_kb("one");
    ASSERT_GT(glibc, 0);
    ASSERT_GT(one, 0);
    // The thread's 4 MiB stay at its arena's top with glibc's arenas (the
    // case this is for: if glibc ever gives them back, this says so) ...
    EXPECT_GE(glibc, 4096) << "one arena " << one << " kB";
    // ... and go back with one arena.
    EXPECT_LE(one + 3 * 1024, glibc);
}

TEST(MallocArena, TheOldPathKeepsGlibcsArenas) {
    if (!kGlibcMalloc) GTEST_SKIP() << "glibc's malloc only";
    long old = probe_kb("one", "CRFS_TREE_CLONE_ARENAS=1");
    ASSERT_GT(old, 0);
    EXPECT_GE(old, 4096);
}

}  // namespace
