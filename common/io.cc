#include "common/io.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace crfs {

Result<UniqueFd> open_fd(const std::string& path, int flags, mode_t mode) {
    int fd;
    do {
        fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno_error("open " + path);
    return UniqueFd(fd);
}

Result<size_t> read_full(int fd, void* buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::read(fd, static_cast<char*>(buf) + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read");
        }
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    return done;
}

Status pread_exact(int fd, void* buf, size_t len, uint64_t offset) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, static_cast<char*>(buf) + done, len - done, off_t(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("pread");
        if (n == 0) return sys_error(EIO, "pread: short file");
        done += static_cast<size_t>(n);
    }
    return {};
}

Status write_full(int fd, const void* buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::write(fd, static_cast<const char*>(buf) + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("write");
        }
        done += static_cast<size_t>(n);
    }
    return {};
}

Result<std::string> read_file(const std::string& path, size_t max) {
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::unexpected(fd.error());
    auto too_big = [&] {
        return make_error(EFBIG,
                          "read " + path + ": larger than " + std::to_string(max) + " bytes");
    };
    // perf: first into a buffer on the stack, and a file that fits (most of
    // /proc: stat, status, fdinfo, timers) is returned as a string of its own
    // size. A string of 4 KiB per file, zeroed, was fresh memory faulted in
    // for each file a checkpoint keeps (~12 us a page on this VM).
    char first[8192];
    size_t used = 0;
    while (used < sizeof first) {
        ssize_t n = ::read(fd->get(), first + used, sizeof first - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + path);
        }
        if (n == 0) {
            if (used > max) return too_big();
            return std::string(first, used);
        }
        used += static_cast<size_t>(n);
    }
    // Longer: straight into the string, in reads that grow with it:
    // /proc/<pid>/smaps of a task with 60,000 areas is 40 MB, and each read of
    // a seq_file costs a walk back to where the last one stopped.
    std::string out(first, used);
    const size_t cap = max < SIZE_MAX ? max + 1 : max;  // one byte past max tells "larger"
    if (used > max) return too_big();
    for (;;) {
        if (out.size() - used < 4096)
            out.resize(std::min(std::max<size_t>(4096, out.size() * 2), cap));
        size_t room = out.size() - used;
        if (room == 0) return too_big();
        ssize_t n = ::read(fd->get(), out.data() + used, room);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + path);
        }
        if (n == 0) break;
        used += static_cast<size_t>(n);
        if (used > max) return too_big();
    }
    out.resize(used);
    return out;
}

Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
    std::string tmp = path + ".tmp";
    auto fd = open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!fd) return std::unexpected(fd.error());
    if (auto w = write_full(fd->get(), data.data(), data.size()); !w)
        return std::unexpected(w.error().context(tmp));
    if (::fsync(fd->get()) < 0) return errno_error("fsync " + tmp);
    fd->reset();
    if (::rename(tmp.c_str(), path.c_str()) < 0) return errno_error("rename " + tmp);
    return {};
}

void presize_fd_table(int fds) {
    const char* cold = getenv("CRFS_FD_TABLE_COLD");
    if (cold && *cold && *cold != '0') return;
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY &&
        r.rlim_cur < rlim_t(fds))
        fds = int(r.rlim_cur);
    if (fds < 2) return;
    int any = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (any < 0) return;
    // The lowest free fd from fds - 1 on: the table grows to hold it.
    if (int high = ::fcntl(any, F_DUPFD_CLOEXEC, fds - 1); high >= 0) ::close(high);
    ::close(any);
}

}  // namespace crfs
