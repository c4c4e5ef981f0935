// Anonymous pipes (state/pipe.h). The task is frozen while the pipe is read,
// and every end is the task's (or, unseen, a process the caller cannot
// inspect: docs/state.md), so nothing writes or reads the pipe meanwhile.
#include "state/pipe.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>

#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/check.h"
#include "state/fds.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
// What an end of a pipe may hold and be restored with: its access mode,
// O_NONBLOCK and O_DIRECT (packet mode); O_LARGEFILE when it was reopened
// through /proc.
constexpr uint32_t kPipeFlags = O_ACCMODE | O_NONBLOCK | O_DIRECT | kOLargefile;

std::string end_name(const std::string& link, uint32_t flags) {
    uint32_t acc = flags & O_ACCMODE;
    return link + (acc == O_RDONLY ? " (read end)" : acc == O_WRONLY ? " (write end)" : "");
}

using check::bad;

// "/proc/self/fd/<fd>" into `buf` without allocating (stage 1).
const char* self_fd_path(char (&buf)[32], int fd) {
    std::memcpy(buf, "/proc/self/fd/", 14);
    auto [end, ec] = std::to_chars(buf + 14, buf + sizeof buf - 1, fd);
    *end = '\0';
    return buf;
}

// Moves `fd` above min_fd.
int hold(int fd, int min_fd) {
    int h = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
    int err = errno;
    ::close(fd);
    return h < 0 ? -err : h;
}

// Opens the FIFO at `path` as the writer (O_NONBLOCK: never waits for the
// other end); it must be the FIFO the image names (dev, inode).
int open_fifo_at(const char* path, uint64_t dev, uint64_t ino, int flags) {
    int fd = ::open(path, flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode) || st.st_dev != dev || st.st_ino != ino) {
        ::close(fd);
        return -ESTALE;
    }
    return fd;
}

int open_fifo(const PipePlan& p, int flags) {
    return open_fifo_at(p.fifo.c_str(), p.dev, p.ino, flags);
}

// Puts the freshly opened `fd` (or -errno) at `target`; 0 or an errno.
int place(int fd, int target, bool cloexec) {
    if (fd < 0) return -fd;
    if (fd == target) return !cloexec && fcntl(fd, F_SETFD, 0) < 0 ? errno : 0;
    int r = dup3(fd, target, cloexec ? O_CLOEXEC : 0);
    int err = errno;
    ::close(fd);
    return r < 0 ? err : 0;
}

// Makes the pipe of `p` above min_fd, sized, holding its buffers. A FIFO is
// opened O_RDWR through its path (both ends in one) and must be empty.
int make_pipe(const PipePlan& p, int min_fd) {
    if (!p.fifo.empty()) {
        int fd = open_fifo(p, O_RDWR);
        if (fd < 0) return -fd;
        int queued = 0;
        if (ioctl(fd, FIONREAD, &queued) < 0 || queued) {
            ::close(fd);
            return EBUSY;  // someone else's bytes
        }
        if (p.packet && fcntl(fd, F_SETFL, O_NONBLOCK | O_DIRECT) < 0) return errno;
        p.end[0] = p.end[1] = hold(fd, min_fd);
        if (p.end[0] < 0) return -p.end[0];
    } else {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK | (p.packet ? O_DIRECT : 0)) < 0) return errno;
        for (int i = 0; i < 2; ++i) p.end[i] = hold(fds[i], min_fd);
        for (int e : p.end)
            if (e < 0) return -e;
    }
    if (fcntl(p.end[1], F_GETPIPE_SZ) != p.size) {
        int got = fcntl(p.end[1], F_SETPIPE_SZ, p.size);
        if (got < 0) return errno;
        if (got != p.size) return ERANGE;
    }
    // One buffer per saved one. Packet mode: a write each (O_DIRECT). Else
    // every buffer but the last goes through tee(2) from a spare pipe, which
    // gives a buffer that later writes do not merge into; the last one is
    // written plainly and takes merging writes as the saved one did.
    int tmp[2] = {-1, -1};
    if (!p.packet && p.lens.size() > 1 && pipe2(tmp, O_CLOEXEC | O_NONBLOCK) < 0) return errno;
    int err = 0;
    char* d = p.data.data();
    for (size_t i = 0; i < p.lens.size() && !err; ++i) {
        ssize_t want = ssize_t(p.lens[i]), n;
        if (p.packet || i + 1 == p.lens.size()) {
            n = ::write(p.end[1], d, size_t(want));
        } else {
            n = ::write(tmp[1], d, size_t(want));
            if (n == want) n = tee(tmp[0], p.end[1], size_t(want), SPLICE_F_NONBLOCK);
            if (n == want && ::read(tmp[0], d, size_t(want)) != want) n = -1;  // same bytes back
        }
        if (n != want) err = n < 0 ? errno : EAGAIN;
        d += want;
    }
    if (tmp[0] >= 0) ::close(tmp[0]), ::close(tmp[1]);
    return err;
}

// True when the kernel says no process holds a write end of the anonymous
// pipe whose read end is `f` (POLLHUP on a read end: no writers, ever again:
// a pipe is reopened only through a /proc fd of an end).
bool write_end_closed(TaskView& t, const FdView& f) {
    auto fd = open_fd(t.path("fd/" + std::to_string(f.fd)), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (!fd) return false;
    struct stat st;
    pollfd p{fd->get(), POLLIN, 0};
    return fstat(fd->get(), &st) == 0 && st.st_dev == f.st.st_dev && st.st_ino == f.st.st_ino &&
           ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

// fifo: a FIFO whose bytes an earlier process of the tree restores
// (state/tree_share_restore.cc finds it there): reopened by its own path with
// its own flags; this image holds neither its bytes nor another kind of fd of it.
Status check_fifo_join(const DecodedImage& img, const FdEntry& f) {
    uint32_t acc = f.rec.open_flags & O_ACCMODE;
    if ((f.rec.open_flags & ~kPipeFlags) || acc == O_ACCMODE || !f.kobj.empty())
        return bad(strfmt("fd {}: FIFO open flags 0{:o}, or records", f.rec.fd, f.rec.open_flags));
    if (f.path.empty() || f.path[0] != '/' || f.path.find('\0') != std::string::npos)
        return bad(strfmt("fd {}: FIFO path not absolute or holds a NUL", f.rec.fd));
    for (const auto& o : img.fds)
        if (o.rec.kind == uint32_t(image::FdKind::kFifo) && o.rec.ino == f.rec.ino &&
            o.rec.dev == f.rec.dev)
            return bad(
                strfmt("fd {}: FIFO {} restored by another process of the tree, and by "
                       "this one at fd {}",
                       f.rec.fd, f.rec.ino, o.rec.fd));
    return {};
}

}  // namespace

bool is_pipe(const FdView& f) {
    return f.link.starts_with("pipe:[");
}

bool is_fifo(const FdView& f) {
    return S_ISFIFO(f.st.st_mode) && f.link.starts_with("/");
}

std::optional<std::string> fifo_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    // Restore reopens the path: it must still name this FIFO.
    struct stat now {};
    if (f.link.ends_with(" (deleted)") || ::stat(f.link.c_str(), &now) != 0 ||
        now.st_dev != f.st.st_dev || now.st_ino != f.st.st_ino)
        return "FIFO " + f.link + " is no longer the FIFO at that path; such a FIFO" +
               std::string(kNotYet);
    return pipe_reason(t, f, ctx);
}

std::optional<std::string> pipe_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    std::string what = (is_fifo(f) ? "FIFO " : "") + end_name(f.link, f.info.flags);
    if (f.info.flags & ~(kPipeFlags | O_CLOEXEC))
        return what + strfmt(" with open flags 0{:o}", f.info.flags) + std::string(kNotYet);
    // Ends held by other processes of the image are restored with it
    // (state/tree_share.h); any other holder is a reason.
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    std::vector<pid_t> outside, members;
    for (pid_t p : ctx.holders.of(f.link))
        (std::find(inside.begin(), inside.end(), p) != inside.end() ? members : outside)
            .push_back(p);
    if (!outside.empty())
        return what + " is also open in " + Holders::names(outside) +
               ", outside the image; a pipe shared with another process" + std::string(kNotYet);
    bool ends[2] = {false, false};
    auto add_ends = [&](TaskView& v) {
        if (auto fds = v.fds(); fds)
            for (const FdView& o : **fds)
                if (o.st.st_dev == f.st.st_dev && o.st.st_ino == f.st.st_ino) {
                    uint32_t acc = o.info.flags & O_ACCMODE;
                    ends[0] |= acc != O_WRONLY;
                    ends[1] |= acc != O_RDONLY;
                }
    };
    add_ends(t);
    for (pid_t p : members) {
        TaskView v(p, t.self_tgid());
        add_ends(v);
    }
    // A read end whose write end every process has closed (make's stdin for
    // its jobs): the kernel says so (POLLHUP: no writer), and the restore
    // makes the pipe and closes the write end it does not give out.
    if (ends[0] && !ends[1] && is_pipe(f) && write_end_closed(t, f)) ends[1] = true;
    if (!ends[0] || !ends[1]) {
        int unseen = ctx.holders.unseen();
        std::string where =
            unseen ? strfmt("closed, or held by one of the {} processes whose fds you cannot read",
                            unseen)
                   : std::string("closed");
        return what + ": its " + (ends[0] ? "write" : "read") + " end is not open in this task (" +
               where + "); a pipe with an end outside the task" + std::string(kNotYet);
    }
    auto fd = open_fd(t.path("fd/" + std::to_string(f.fd)), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (!fd) return what + ": cannot be read (" + fd.error().what + ")";
    int size = fcntl(fd->get(), F_GETPIPE_SZ);
    if (size < 0 || uint64_t(size) > image::kMaxPipeBytes)
        return what +
               strfmt(" of {} bytes is larger than {}; larger pipes", size, image::kMaxPipeBytes) +
               std::string(kNotYet);
    return std::nullopt;
}

Result<std::string> dump_pipe(pid_t pid, int fd, uint64_t ino, const std::string& link) {
    std::string dir = strfmt("/proc/{}/fd", pid);
    // Packet mode when some end has O_DIRECT.
    bool packet = false;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            char buf[4097];
            ssize_t n = readlinkat(dirfd(d), e->d_name, buf, sizeof buf);
            if (n <= 0 || std::string_view(buf, size_t(n)) != link) continue;
            auto text = read_file(strfmt("/proc/{}/fdinfo/{}", pid, e->d_name));
            auto info = text ? parse_fdinfo(*text) : Result<FdInfo>(std::unexpected(text.error()));
            if (info && (info->flags & O_DIRECT)) packet = true;
        }
        closedir(d);
    }
    auto src = open_fd(strfmt("{}/{}", dir, fd), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (!src) return std::unexpected(src.error().context(strfmt("fd {}", fd)));
    int size = fcntl(src->get(), F_GETPIPE_SZ);
    int avail = 0;
    if (size < 0 || ioctl(src->get(), FIONREAD, &avail) < 0)
        return errno_error(strfmt("fd {}: size of {}", fd, link));
    if (uint64_t(size) > image::kMaxPipeBytes || avail > size)
        return make_error(EFBIG, strfmt("fd {}: {} of {} bytes", fd, link, size));
    image::PipeRecord rec{ino, uint32_t(size), packet ? image::kPipePacket : 0, 0,
                          0,   uint64_t(avail)};
    std::vector<uint32_t> segs;
    std::string data(size_t(avail), '\0');
    if (avail > 0) {
        // tee(2) duplicates the buffers into a spare pipe of the same size
        // (the task's pipe keeps them); splice(2) into a pipe of one slot then
        // moves one buffer at a time, so each read returns exactly one.
        int sp[2], one[2];
        if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0)
            return errno_error(strfmt("fd {}: spare pipe", fd));
        UniqueFd r(sp[0]), w(sp[1]);
        if (pipe2(one, O_CLOEXEC | O_NONBLOCK) < 0)
            return errno_error(strfmt("fd {}: spare pipe", fd));
        UniqueFd one_r(one[0]), one_w(one[1]);
        if (fcntl(w.get(), F_SETPIPE_SZ, size) < size ||
            fcntl(one_w.get(), F_SETPIPE_SZ, int(image::kPageSize)) < 0)
            return errno_error(strfmt("fd {}: spare pipes of {} bytes", fd, size));
        ssize_t n = tee(src->get(), w.get(), size_t(avail), SPLICE_F_NONBLOCK);
        if (n != avail)
            return make_error(n < 0 ? errno : EIO,
                              strfmt("fd {}: tee of {} copied {} of {} bytes", fd, link, n, avail));
        size_t got = 0;
        while (got < data.size()) {
            ssize_t m = splice(r.get(), nullptr, one_w.get(), nullptr, data.size() - got,
                               SPLICE_F_NONBLOCK);
            if (m <= 0 || m > ssize_t(image::kPageSize) ||
                ::read(one_r.get(), data.data() + got, size_t(m)) != m)
                return make_error(m < 0 ? errno : EIO,
                                  strfmt("fd {}: reading the buffers of {}", fd, link));
            segs.push_back(uint32_t(m));
            got += size_t(m);
        }
    }
    rec.nsegs = uint32_t(segs.size());
    std::string out(reinterpret_cast<const char*>(&rec), sizeof rec);
    out.append(reinterpret_cast<const char*>(segs.data()), segs.size() * sizeof(uint32_t));
    out += data;
    return out;
}

Status check_pipes(const DecodedImage& img) {
    std::map<uint64_t, int> refs;
    for (const auto& p : img.pipes) {
        const auto& r = p.rec;
        std::string at = strfmt("pipe {}", r.ino);
        if (!refs.emplace(r.ino, 0).second) return bad(at + ": twice");
        if (r.reserved || (r.flags & ~image::kPipePacket))
            return bad(strfmt("{}: flags 0x{:x}", at, r.flags));
        if (r.pipe_size < image::kPageSize || r.pipe_size > image::kMaxPipeBytes ||
            (r.pipe_size & (r.pipe_size - 1)))
            return bad(strfmt("{}: size {}", at, r.pipe_size));
        if (r.data_len > r.pipe_size || r.nsegs > r.pipe_size / image::kPageSize)
            return bad(strfmt("{}: {} bytes in {} buffers", at, r.data_len, r.nsegs));
        for (uint32_t s : p.lens)
            if (s == 0 || s > image::kPageSize) return bad(strfmt("{}: a buffer of {}", at, s));
    }
    std::map<uint64_t, const FdEntry*> fifo_of;  // ino: its first FIFO fd
    for (const auto& f : img.fds) {
        if (f.rec.kind == uint32_t(image::FdKind::kFifoJoin) && f.rec.same_as < 0)
            if (auto s = check_fifo_join(img, f); !s) return s;
        bool fifo = f.rec.kind == uint32_t(image::FdKind::kFifo);
        if ((f.rec.kind != uint32_t(image::FdKind::kPipe) && !fifo) || f.rec.same_as >= 0) continue;
        uint32_t acc = f.rec.open_flags & O_ACCMODE;
        if ((f.rec.open_flags & ~kPipeFlags) || acc == O_ACCMODE || (!fifo && acc == O_RDWR))
            return bad(strfmt("fd {}: pipe open flags 0{:o}", f.rec.fd, f.rec.open_flags));
        if (!fifo && !f.path.empty()) return bad(strfmt("fd {}: a pipe with a path", f.rec.fd));
        if (fifo && (f.path.empty() || f.path[0] != '/' || f.path.find('\0') != std::string::npos))
            return bad(strfmt("fd {}: FIFO path not absolute or holds a NUL", f.rec.fd));
        auto [first, fresh] = fifo_of.emplace(f.rec.ino, fifo ? &f : nullptr);
        if (!fresh && (!first->second != !fifo || (fifo && (first->second->path != f.path ||
                                                            first->second->rec.dev != f.rec.dev))))
            return bad(strfmt("fd {}: pipe {} named two ways", f.rec.fd, f.rec.ino));
        auto it = refs.find(f.rec.ino);
        if (it == refs.end())
            return bad(strfmt("fd {}: no record of pipe {}", f.rec.fd, f.rec.ino));
        ++it->second;
    }
    for (const auto& [ino, n] : refs)
        if (!n) return bad(strfmt("pipe {}: no fd holds it", ino));
    return {};
}

Result<std::vector<PipePlan>> plan_pipes(const DecodedImage& img, int image_fd) {
    std::vector<PipePlan> out;
    for (const auto& p : img.pipes) {
        PipePlan pp;
        pp.ino = p.rec.ino;
        pp.size = int(p.rec.pipe_size);
        pp.packet = p.rec.flags & image::kPipePacket;
        pp.lens = p.lens;
        for (const auto& f : img.fds)  // check_pipes: FIFO or pipe fds, not both
            if (f.rec.kind == uint32_t(image::FdKind::kFifo) && f.rec.ino == p.rec.ino &&
                f.rec.same_as < 0)
                pp.fifo = f.path, pp.dev = f.rec.dev;
        pp.data.resize(p.rec.data_len);
        if (auto s = pread_exact(image_fd, pp.data.data(), pp.data.size(), p.data_offset); !s)
            return std::unexpected(s.error().context(strfmt("the bytes of pipe {}", p.rec.ino)));
        out.push_back(std::move(pp));
    }
    return out;
}

int child_pipe_fd(const PipePlan& p, int target, int open_flags, bool cloexec, int min_fd) {
    if (p.end[0] < 0)
        if (int e = make_pipe(p, min_fd)) return e;
    int acc = open_flags & O_ACCMODE, which = acc == O_WRONLY ? 1 : 0;
    if (!p.fifo.empty()) {
        // Every description of a FIFO is opened by its path, with its own mode.
        if (int e = place(open_fifo(p, acc), target, cloexec)) return e;
    } else if (!p.given[which]) {
        // The end's own description goes to its first fd.
        if (dup3(p.end[which], target, cloexec ? O_CLOEXEC : 0) < 0) return errno;
        p.given[which] = true;
    } else {
        // Another description of the same end: reopened, as the task once did.
        char path[32];
        int fd = ::open(self_fd_path(path, p.end[which]), acc | O_NONBLOCK | O_CLOEXEC);
        if (int e = place(fd < 0 ? -errno : fd, target, cloexec)) return e;
    }
    if (fcntl(target, F_SETFL, open_flags & (O_NONBLOCK | O_DIRECT)) < 0) return errno;
    return 0;
}

int child_fifo_join(const char* path, uint64_t dev, uint64_t ino, int target, int open_flags,
                    bool cloexec) {
    if (int e = place(open_fifo_at(path, dev, ino, open_flags & O_ACCMODE), target, cloexec))
        return e;
    return fcntl(target, F_SETFL, open_flags & (O_NONBLOCK | O_DIRECT)) < 0 ? errno : 0;
}

void child_close_pipes(const std::vector<PipePlan>& pipes) {
    for (const auto& p : pipes) {
        if (p.end[0] >= 0) ::close(p.end[0]);
        if (p.end[1] >= 0 && p.end[1] != p.end[0]) ::close(p.end[1]);
        p.end[0] = p.end[1] = -1;
    }
}

}  // namespace crfs::state
