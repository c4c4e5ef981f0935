// The fingerprint cache (common/hash_cache.h): a hit only for the very
// identity and range it was computed for; a file changed in place, however
// quickly, is hashed again; the daemon/worker exchange keeps whole entries.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "common/file_hash.h"
#include "common/hash_cache.h"
#include "common/unique_fd.h"

namespace crfs {
namespace {

class HashCache : public ::testing::Test {
  protected:
    void SetUp() override {
        hash_cache_clear();
        char tmpl[] = "/var/tmp/crfs-hash-cache-XXXXXX";
        int fd = mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        path_ = tmpl;
        fd_.reset(fd);
        fill('a');
    }
    void TearDown() override {
        ::unlink(path_.c_str());
        hash_cache_clear();
    }
    void fill(char c) {
        std::string data(3 * 4096, c);
        ASSERT_EQ(pwrite(fd_.get(), data.data(), data.size(), 0), ssize_t(data.size()));
    }
    struct stat st() {
        struct stat s;
        EXPECT_EQ(fstat(fd_.get(), &s), 0);
        return s;
    }
    uint64_t cached(uint64_t off = 0, uint64_t len = 3 * 4096) {
        auto h = hash_file_cached(fd_.get(), st(), off, len);
        EXPECT_TRUE(h.has_value());
        return h.value_or(0);
    }
    uint64_t fresh(uint64_t off = 0, uint64_t len = 3 * 4096) {
        return hash_file_range(fd_.get(), off, len).value_or(0);
    }
    std::string path_;
    UniqueFd fd_;
};

TEST_F(HashCache, SecondLookUpOfAnUnchangedFileIsAHit) {
    uint64_t h = cached();
    EXPECT_EQ(h, fresh());
    EXPECT_EQ(hash_cache_stats().misses, 1u);
    EXPECT_EQ(cached(), h);
    EXPECT_EQ(hash_cache_stats().hits, 1u);
    // Another range of the same file is its own entry.
    EXPECT_EQ(cached(4096, 4096), fresh(4096, 4096));
    EXPECT_EQ(hash_cache_stats().misses, 2u);
}

TEST_F(HashCache, AFileChangedInPlaceAtOnceIsHashedAgain) {
    // Same size, rewritten right after the look-up (within one clock tick):
    // the ctime that was looked at moves on (multigrain timestamps), so the
    // identity differs and the new bytes are hashed. Many rounds, to catch a
    // coarse timestamp that would let a rewrite keep the old identity.
    for (int i = 0; i < 200; ++i) {
        uint64_t before = cached();
        fill(char('b' + i % 20));
        uint64_t after = cached();
        ASSERT_EQ(after, fresh()) << "round " << i << ": a stale hash from the cache";
        ASSERT_NE(after, before) << "round " << i;
    }
}

TEST_F(HashCache, AnyOtherIdentityIsAMiss) {
    struct stat s = st();
    uint64_t h = cached();
    for (int field = 0; field < 5; ++field) {
        struct stat o = s;
        if (field == 0) o.st_dev ^= 1;
        if (field == 1) o.st_ino ^= 1;
        if (field == 2) o.st_size = 2 * 4096;
        if (field == 3) o.st_mtim.tv_nsec ^= 1;
        if (field == 4) o.st_ctim.tv_nsec ^= 1;
        uint64_t misses = hash_cache_stats().misses;
        auto got = hash_file_cached(fd_.get(), o, 0, 2 * 4096);
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(*got, fresh(0, 2 * 4096)) << "field " << field;
        EXPECT_EQ(hash_cache_stats().misses, misses + 1) << "field " << field;
    }
    EXPECT_EQ(cached(), h);
}

TEST_F(HashCache, ExportImportAndMergeCarryWholeEntries) {
    uint64_t h = cached();
    // Worker side: what it computed goes into a pipe; the daemon merges it.
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    UniqueFd rd(p[0]), wr(p[1]);
    hash_cache_send_new(wr.get());
    // A worker killed mid-entry leaves a partial one: dropped.
    HashCacheEntry junk{};
    ASSERT_EQ(write(wr.get(), &junk, 17), 17);
    wr.reset();
    hash_cache_clear();
    hash_cache_merge(rd.get());
    auto exported = hash_cache_export();
    ASSERT_TRUE(exported.has_value());
    struct stat ms;
    ASSERT_EQ(fstat(exported->get(), &ms), 0);
    EXPECT_EQ(ms.st_size, off_t(sizeof(HashCacheEntry)));
    // Sealed: nobody writes into the daemon's copy through a worker's fd.
    EXPECT_LT(write(exported->get(), "x", 1), 0);
    // A fresh worker imports it and hits.
    hash_cache_clear();
    hash_cache_import(exported->get());
    EXPECT_EQ(cached(), h);
    EXPECT_EQ(hash_cache_stats().hits, 1u);
    EXPECT_EQ(hash_cache_stats().misses, 0u);
}

}  // namespace
}  // namespace crfs
