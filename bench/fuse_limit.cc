// The FUSE limit of the benches: a daemon set up as crfsd is (libfuse 3
// low-level API, multi-threaded loop, max_write 1 MiB so reads and writes
// come in 1 MiB requests, direct_io) that serves one file, "data", of SIZE
// bytes from memory, and takes writes into fresh memory. Reading it is the
// fastest a checkpoint through the mount can go; writing it (one copy into
// newly mapped memory, as a restore must make) is the restore's bound.
//
//   fuse_limit MOUNTPOINT SIZE_BYTES      (foreground; unmount to stop)
//
// FUSE_LIMIT_UFFD=1 in its environment: writes go instead into fresh memory
// of a child made at each open for writing, with UFFDIO_COPY through the
// child's userfaultfd (taken with pidfd_getfd): the bound of a restore that
// writes each page run into the new task as its FUSE write arrives (issue 13,
// docs/performance.md "Streaming restore: measured, not built").
//
// FUSE_LIMIT_DISCARD=1: writes are answered without their bytes going
// anywhere: the FUSE write path alone (the writer's pages pinned, the
// kernel's copy into libfuse's buffer, the two wakeups), the floor under
// any restore through the mount (docs/performance.md "Restore: the FUSE
// write path profiled").
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

constexpr fuse_ino_t kData = 2;
char* g_data = nullptr;
size_t g_size = 0;
std::mutex g_mu;
char* g_sink = nullptr;  // fresh memory per open for writing
size_t g_sink_len = 0;
bool g_uffd_mode = false;  // FUSE_LIMIT_UFFD=1: the sink is a child's memory
bool g_discard = false;    // FUSE_LIMIT_DISCARD=1: no sink
pid_t g_child = -1;
int g_uffd = -1;
int g_life = -1;  // the child reads EOF on it once this process is gone
constexpr uintptr_t kChildAt = 0x7e0000000000;

void end_child() {
    if (g_child < 0) return;
    close(g_uffd);
    close(g_life);
    kill(g_child, SIGKILL);
    waitpid(g_child, nullptr, 0);
    g_child = g_uffd = g_life = -1;
}

// A child holding g_sink_len bytes at kChildAt, registered on its userfaultfd.
bool make_child() {
    int sync[2], life[2];
    if (pipe(sync) < 0) return false;
    if (pipe2(life, O_CLOEXEC) < 0) {
        close(sync[0]), close(sync[1]);
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
        // Gone with this process, however it ends: EOF on `life`.
        close(life[1]);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        // Not /dev/fuse: a mount's connection lives while any process holds it.
        unsigned lo = unsigned(std::min(sync[1], life[0])),
                 hi = unsigned(std::max(sync[1], life[0]));
        syscall(SYS_close_range, 3u, lo - 1, 0u);
        syscall(SYS_close_range, lo + 1, hi - 1, 0u);
        syscall(SYS_close_range, hi + 1, ~0u, 0u);
        size_t len = (g_sink_len + 4095) & ~size_t(4095);
        char fd = -1;
        if (mmap(reinterpret_cast<void*>(kChildAt), len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != MAP_FAILED) {
            int u = int(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
            uffdio_api api{UFFD_API, 0, 0};
            uffdio_register reg{{kChildAt, len}, UFFDIO_REGISTER_MODE_MISSING, 0};
            if (u >= 0 && ioctl(u, UFFDIO_API, &api) == 0 && ioctl(u, UFFDIO_REGISTER, &reg) == 0)
                fd = char(u);
        }
        (void)!write(sync[1], &fd, 1);
        char c;
        while (read(life[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    close(sync[1]);
    close(life[0]);
    if (pid < 0) close(life[1]);
    g_life = pid < 0 ? -1 : life[1];
    char fd = -1;
    bool ok = pid > 0 && read(sync[0], &fd, 1) == 1 && fd >= 0;
    close(sync[0]);
    if (pid > 0) g_child = pid;
    int pidfd = ok ? int(syscall(SYS_pidfd_open, pid, 0)) : -1;
    g_uffd = pidfd >= 0 ? int(syscall(SYS_pidfd_getfd, pidfd, int(fd), 0)) : -1;
    if (pidfd >= 0) close(pidfd);
    if (g_uffd < 0) end_child();
    return g_uffd >= 0;
}

// Whole pages by UFFDIO_COPY; a last part page through a zeroed bounce page.
bool uffd_write(const char* buf, size_t size, off_t off) {
    size_t whole = size & ~size_t(4095), done = 0;
    while (done < whole) {
        uffdio_copy c{kChildAt + uint64_t(off) + done, reinterpret_cast<uintptr_t>(buf + done),
                      whole - done, 0, 0};
        if (ioctl(g_uffd, UFFDIO_COPY, &c) == 0) break;
        if (c.copy > 0) done += size_t(c.copy);
        if (errno != EAGAIN && errno != EINTR) return false;
    }
    if (whole == size) return true;
    alignas(4096) static thread_local char page[4096];
    std::memset(page, 0, sizeof page);
    std::memcpy(page, buf + whole, size - whole);
    uffdio_copy c{kChildAt + uint64_t(off) + whole, reinterpret_cast<uintptr_t>(page), 4096, 0, 0};
    return ioctl(g_uffd, UFFDIO_COPY, &c) == 0;
}

struct stat attr_of(fuse_ino_t ino) {
    struct stat st {};
    st.st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        st.st_mode = S_IFDIR | 0755;
        st.st_nlink = 2;
    } else {
        st.st_mode = S_IFREG | 0666;
        st.st_nlink = 1;
        st.st_size = 0;  // as crfs's generated files
    }
    return st;
}

void op_init(void*, fuse_conn_info* conn) {
    conn->max_write = 1u << 20;
    conn->max_read = 0;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    if (parent != FUSE_ROOT_ID || std::strcmp(name, "data") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_entry_param e{};
    e.ino = kData;
    e.attr = attr_of(kData);
    fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    struct stat st = attr_of(ino);
    fuse_reply_attr(req, &st, 0);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, fuse_file_info*) {
    struct stat st = attr_of(ino);
    fuse_reply_attr(req, &st, 0);
}

void op_open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    fi->direct_io = 1;
    if ((fi->flags & O_ACCMODE) != O_RDONLY && !g_discard) {
        std::lock_guard l(g_mu);
        if (g_sink) munmap(g_sink, g_sink_len);
        g_sink_len = g_size;
        if (g_uffd_mode) {
            end_child();
            g_sink = nullptr;
            if (!make_child()) {
                fuse_reply_err(req, EIO);
                return;
            }
            fuse_reply_open(req, fi);
            return;
        }
        g_sink = static_cast<char*>(
            mmap(nullptr, g_sink_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    }
    fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
    if (off < 0 || size_t(off) >= g_size) {
        fuse_reply_buf(req, nullptr, 0);
        return;
    }
    fuse_reply_buf(req, g_data + off, std::min(size, g_size - size_t(off)));
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info*) {
    if (g_discard) return (void)fuse_reply_write(req, size);
    if (off < 0 || size_t(off) + size > g_sink_len) {
        fuse_reply_err(req, EFBIG);
        return;
    }
    if (g_uffd_mode) {
        if (!uffd_write(buf, size, off)) {
            fuse_reply_err(req, errno ? errno : EIO);
            return;
        }
    } else {
        std::memcpy(g_sink + off, buf, size);
    }
    fuse_reply_write(req, size);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
    fuse_reply_err(req, 0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: fuse_limit MOUNTPOINT SIZE_BYTES\n");
        return 2;
    }
    g_size = std::strtoull(argv[2], nullptr, 10);
    g_uffd_mode = getenv("FUSE_LIMIT_UFFD") != nullptr;
    g_discard = getenv("FUSE_LIMIT_DISCARD") != nullptr;
    g_data = static_cast<char*>(
        mmap(nullptr, g_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < g_size; i += 8) *reinterpret_cast<uint64_t*>(g_data + i) = i | 1;
    fuse_lowlevel_ops ops{};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.getattr = op_getattr;
    ops.setattr = op_setattr;
    ops.open = op_open;
    ops.read = op_read;
    ops.write = op_write;
    ops.release = op_release;
    char* fargv[] = {argv[0], const_cast<char*>("-oallow_other")};
    fuse_args args = FUSE_ARGS_INIT(2, fargv);
    fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    end_child();
    return rc ? 1 : 0;
}
