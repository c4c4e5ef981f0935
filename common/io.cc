#include "common/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

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
    std::string out;
    char chunk[4096];
    for (;;) {
        ssize_t n = ::read(fd->get(), chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + path);
        }
        if (n == 0) break;
        if (out.size() + static_cast<size_t>(n) > max)
            return make_error(EFBIG,
                              "read " + path + ": larger than " + std::to_string(max) + " bytes");
        out.append(chunk, static_cast<size_t>(n));
    }
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

}  // namespace crfs
