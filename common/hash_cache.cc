#include "common/hash_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/file_hash.h"
#include "common/io.h"

namespace crfs {

namespace {

HashCacheEntry key_of(const struct stat& st, uint64_t off, uint64_t len) {
    return {uint64_t(st.st_dev),
            uint64_t(st.st_ino),
            uint64_t(st.st_size),
            int64_t(st.st_mtim.tv_sec),
            int64_t(st.st_mtim.tv_nsec),
            int64_t(st.st_ctim.tv_sec),
            int64_t(st.st_ctim.tv_nsec),
            off,
            len,
            0};
}

bool same_key(const HashCacheEntry& a, const HashCacheEntry& b) {
    return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_sec == b.mtime_sec &&
           a.mtime_nsec == b.mtime_nsec && a.ctime_sec == b.ctime_sec &&
           a.ctime_nsec == b.ctime_nsec && a.off == b.off && a.len == b.len;
}

bool same_identity(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

struct Cache {
    std::mutex mu;
    // By (dev, ino); a file has few ranges (one per mapping of it).
    std::unordered_multimap<uint64_t, HashCacheEntry> map;
    std::vector<HashCacheEntry> fresh;  // computed here, not yet sent
    HashCacheStats stats;
    UniqueFd exported;  // the last export, while nothing was added since

    static uint64_t bucket(const HashCacheEntry& e) {
        return e.dev * 0x9e3779b97f4a7c15ull ^ e.ino;
    }

    std::optional<uint64_t> find(const HashCacheEntry& k) {
        auto [lo, hi] = map.equal_range(bucket(k));
        for (auto it = lo; it != hi; ++it)
            if (same_key(it->second, k)) return it->second.hash;
        return std::nullopt;
    }

    void add(const HashCacheEntry& e) {
        if (find(e)) return;
        if (map.size() >= kHashCacheMax) map.clear();
        // An older identity of the same file is dead: drop it.
        auto [lo, hi] = map.equal_range(bucket(e));
        for (auto it = lo; it != hi;) {
            const HashCacheEntry& o = it->second;
            bool stale =
                o.dev == e.dev && o.ino == e.ino &&
                !(o.size == e.size && o.mtime_sec == e.mtime_sec && o.mtime_nsec == e.mtime_nsec &&
                  o.ctime_sec == e.ctime_sec && o.ctime_nsec == e.ctime_nsec);
            it = stale ? map.erase(it) : std::next(it);
        }
        map.emplace(bucket(e), e);
        exported.reset();
    }
};

Cache& cache() {
    static Cache c;
    return c;
}

Result<UniqueFd> export_locked();

}  // namespace

Result<uint64_t> hash_file_cached(int fd, const struct stat& st, uint64_t off, uint64_t len) {
    HashCacheEntry k = key_of(st, off, len);
    Cache& c = cache();
    {
        std::lock_guard l(c.mu);
        if (auto h = c.find(k)) {
            ++c.stats.hits;
            return *h;
        }
        ++c.stats.misses;
    }
    auto h = hash_file_range(fd, off, len);
    if (!h) return h;
    // Kept only if nothing changed the file while it was read.
    struct stat after;
    if (fstat(fd, &after) == 0 && same_identity(st, after)) {
        k.hash = *h;
        std::lock_guard l(c.mu);
        c.add(k);
        if (c.fresh.size() < kHashCacheMax) c.fresh.push_back(k);
    }
    return h;
}

HashCacheStats hash_cache_stats() {
    std::lock_guard l(cache().mu);
    return cache().stats;
}

Result<UniqueFd> hash_cache_export() {
    std::lock_guard l(cache().mu);
    if (!cache().exported) {
        auto fd = export_locked();
        if (!fd) return std::unexpected(fd.error());
        cache().exported = std::move(*fd);
    }
    UniqueFd dup(fcntl(cache().exported.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup) return errno_error("dup the fingerprint cache memfd");
    return dup;
}

namespace {

// The cache as a sealed memfd (mu held).
Result<UniqueFd> export_locked() {
    std::vector<HashCacheEntry> all;
    all.reserve(cache().map.size());
    for (const auto& [b, e] : cache().map) all.push_back(e);
    UniqueFd fd(memfd_create("crfs-hash-cache", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) return errno_error("memfd for the fingerprint cache");
    if (auto w = write_full(fd.get(), reinterpret_cast<const char*>(all.data()),
                            all.size() * sizeof(HashCacheEntry));
        !w)
        return std::unexpected(w.error().context("fill the fingerprint cache memfd"));
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return errno_error("seal the fingerprint cache memfd");
    return fd;
}

}  // namespace

void hash_cache_merge(int fd) {
    std::vector<char> buf;
    char tmp[16 * sizeof(HashCacheEntry)];
    while (buf.size() < kHashCacheMax * sizeof(HashCacheEntry)) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        buf.insert(buf.end(), tmp, tmp + n);
    }
    std::lock_guard l(cache().mu);
    for (size_t off = 0; off + sizeof(HashCacheEntry) <= buf.size();
         off += sizeof(HashCacheEntry)) {
        HashCacheEntry e;
        std::memcpy(&e, buf.data() + off, sizeof e);
        cache().add(e);
    }
}

void hash_cache_import(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) return;
    size_t n = std::min<size_t>(size_t(st.st_size) / sizeof(HashCacheEntry), kHashCacheMax);
    std::vector<HashCacheEntry> all(n);
    auto got = pread(fd, all.data(), n * sizeof(HashCacheEntry), 0);
    if (got < 0) return;
    all.resize(size_t(got) / sizeof(HashCacheEntry));
    std::lock_guard l(cache().mu);
    for (const HashCacheEntry& e : all) cache().add(e);
}

void hash_cache_send_new(int fd) {
    std::vector<HashCacheEntry> fresh;
    {
        std::lock_guard l(cache().mu);
        fresh.swap(cache().fresh);
    }
    // Whole entries only; a full pipe drops the rest (they are computed again next time).
    for (const HashCacheEntry& e : fresh) {
        ssize_t n;
        do n = write(fd, &e, sizeof e);
        while (n < 0 && errno == EINTR);
        if (n != ssize_t(sizeof e)) break;
    }
}

void hash_cache_clear() {
    std::lock_guard l(cache().mu);
    cache().map.clear();
    cache().fresh.clear();
    cache().stats = {};
    cache().exported.reset();
}

}  // namespace crfs
