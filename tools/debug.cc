// Debugging subcommands that bypass the mount:
//   crfs checkpoint PID       checkpoint PID directly, image to stdout; needs
//                             the right to ptrace PID
//   crfs restore-direct FILE|- [--pid N] [--writer UID:GID]
//                             restore directly, as crfsd would; prints the new
//                             pid. Exit status: 0, or the errno.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "restorer/restore.h"
#include "tools/commands.h"

namespace crfs::tool {
namespace {

// A pipe on stdin is spooled to a memfd (restore_image needs a seekable image).
Result<UniqueFd> spool_stdin() {
    UniqueFd fd(memfd_create("crfs-image", MFD_CLOEXEC));
    if (!fd) return errno_error("memfd_create");
    std::vector<char> buf(1 << 20);
    for (;;) {
        auto n = read_full(0, buf.data(), buf.size());
        if (!n) return std::unexpected(n.error().context("stdin"));
        if (*n == 0) return fd;
        if (auto w = write_full(fd.get(), buf.data(), *n); !w) return std::unexpected(w.error());
    }
}

}  // namespace

int cmd_checkpoint_direct(const std::string& arg) {
    pid_t pid = parse_pid("checkpoint", arg);
    if (!pid) return 2;
    auto st = read_task_stat(pid);
    if (!st) {
        fmt::print(stderr, "crfs checkpoint: {}\n", st.error().what);
        return 1;
    }
    auto snap = checkpoint_task(pid, st->starttime);
    if (!snap) return 1;  // checkpoint_task logged why
    // Serve it the way the FUSE read does: by offset, in chunks.
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < (*snap)->size();) {
        auto n = (*snap)->read(off, buf.data(), buf.size());
        if (!n || *n == 0) return 1;
        if (auto w = write_full(1, buf.data(), *n); !w) {
            fmt::print(stderr, "crfs checkpoint: {}\n", w.error().what);
            return 1;
        }
        off += *n;
    }
    return 0;
}

int cmd_restore_direct(const RestoreDirectOptions& o) {
    uid_t writer_uid = getuid();
    gid_t writer_gid = getgid();
    if (!o.writer.empty()) {
        // As the daemon would for a non-root FUSE writer.
        unsigned u, g;
        char extra;
        if (std::sscanf(o.writer.c_str(), "%u:%u%c", &u, &g, &extra) != 2) {
            fmt::print(stderr, "crfs restore-direct: bad --writer {} (UID:GID)\n", o.writer);
            return 2;
        }
        writer_uid = u, writer_gid = g;
    }
    if (o.pid < 0) {
        fmt::print(stderr, "crfs restore-direct: bad pid {}\n", o.pid);
        return 2;
    }
    Result<UniqueFd> fd = o.file == "-" ? spool_stdin() : open_fd(o.file, O_RDONLY);
    if (!fd) {
        fmt::print(stderr, "crfs restore-direct: {}\n", fd.error().what);
        return fd.error().code;
    }
    RestoreRequest req;
    req.image_fd = fd->get();
    req.want_pid = pid_t(o.pid);
    req.writer_uid = writer_uid;
    req.writer_gid = writer_gid;
    req.writer_is_root = o.writer.empty() && getuid() == 0;
    req.may_choose_pid = req.writer_is_root;
    auto pid = restore_image(req);
    if (!pid) {
        fmt::print(stderr, "crfs restore-direct: {}\n", pid.error().what);
        int code = pid.error().code;
        return code > 0 && code < 126 ? code : 1;
    }
    fmt::print("{}\n", *pid);
    return 0;
}

}  // namespace crfs::tool
