#include "state/file_policy.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "common/file_hash.h"
#include "common/hash_cache.h"
#include "common/io.h"
#include "state/memory_dump.h"

namespace crfs {

namespace {

// Opened as the caller; O_NOATIME where the caller owns the file, so that a
// checkpoint does not touch atimes it can avoid touching.
Result<UniqueFd> open_for_hash(const std::string& path) {
    constexpr int kFlags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    auto f = open_fd(path, kFlags | O_NOATIME);
    if (!f && f.error().code == EPERM) f = open_fd(path, kFlags);
    return f;
}

image::FileIdentity identity(const struct stat& st) {
    return {st.st_dev, st.st_ino, uint64_t(st.st_size), st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

// At most this many files kept open per checkpoint (the worker's fd limit is the caller's).
constexpr size_t kMaxOpenedFiles = 256;

}  // namespace

int OpenedFiles::get(const std::string& path, UniqueFd& spare) {
    if (auto it = fds_.find(path); it != fds_.end()) return it->second.get();
    auto f = open_for_hash(path);
    if (fds_.size() >= kMaxOpenedFiles) {
        spare = f ? std::move(*f) : UniqueFd();
        return spare.get();
    }
    return fds_.emplace(path, f ? std::move(*f) : UniqueFd()).first->second.get();
}

bool OpenedFiles::stat(const std::string& path, int fd, struct stat& st) {
    auto kept = fds_.find(path);
    if (kept == fds_.end() || kept->second.get() != fd) return ::fstat(fd, &st) == 0;  // a spare
    auto [it, fresh] = stats_.try_emplace(path);
    if (fresh) {
        struct stat now;
        if (::fstat(fd, &now) == 0) it->second = now;
    }
    if (!it->second) return false;
    st = *it->second;
    return true;
}

Fingerprints fingerprint_files(const std::vector<TaskFd>& fds, const std::vector<MapsEntry>& maps,
                               OpenedFiles* opened) {
    Fingerprints out;
    OpenedFiles own;
    if (!opened) opened = &own;
    UniqueFd spare;
    for (const TaskFd& t : fds) {
        const auto& r = t.rec;
        if (!fd_content_checked(r) || r.size > kMaxFingerprintBytes) continue;
        int f = opened->get(t.path, spare);
        struct stat st;
        if (f < 0 || !opened->stat(t.path, f, st)) continue;
        // Still the file the task held, unchanged since the freeze.
        if (st.st_dev != r.dev || st.st_ino != r.ino || uint64_t(st.st_size) != r.size ||
            st.st_mtim.tv_sec != r.mtime_sec || st.st_mtim.tv_nsec != r.mtime_nsec)
            continue;
        auto h = hash_file_cached(f, st, 0, r.size);  // perf: cached by identity
        if (h) out.fds.push_back({r.fd, 0, r.size, *h, identity(st)});
    }
    for (const MapsEntry& m : maps) {
        auto r = vma_record(m);
        if (!vma_content_checked(r)) continue;
        int f = opened->get(m.path, spare);
        struct stat st;
        // maps gives the inode; its device numbers are not always st_dev (overlayfs, btrfs).
        if (f < 0 || !opened->stat(m.path, f, st) || !S_ISREG(st.st_mode) || st.st_ino != m.ino)
            continue;
        uint64_t off = m.pgoff * image::kPageSize;
        uint64_t bytes = mapped_file_bytes(uint64_t(st.st_size), off, m.end - m.start);
        if (bytes > kMaxFingerprintBytes) continue;
        auto h = hash_file_cached(f, st, off, bytes);
        if (h) out.vmas.push_back({m.start, bytes, *h, identity(st)});
    }
    return out;
}

}  // namespace crfs
