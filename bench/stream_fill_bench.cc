// What a streaming restore (issue 13, docs/performance.md "Streaming restore:
// measured, not built") could save, measured on the kernel paths alone,
// without FUSE: N MiB of page data arrive in 1 MiB requests (each copied into
// one reused, hot request buffer, as libfuse's read of /dev/fuse does; the
// page data 32 bytes into it, behind a record frame and a pages record, so not
// page-aligned), and must end up in fresh private anonymous memory of another
// process (the new task), untouched before:
//
//   spool    today: each request's pages written into a memfd page store at
//            page-aligned offsets (pwrite), then, at "close", copied from a
//            read-only mapping of the store into the task with UFFDIO_COPY in
//            16 MiB steps (as restorer/blob/fill_uffd.h does, though from this
//            process through the task's userfaultfd: the same kernel copy), and
//            the store freed (the slot drops its spool before close returns).
//   uffd     streamed: each request's pages copied straight from the request
//            buffer into the task with UFFDIO_COPY through the task's
//            userfaultfd (taken with pidfd_getfd), as each request arrives.
//   vmwrite  streamed: process_vm_writev from the request buffer into the
//            task's mapping (its pages fault in zeroed, then are copied over).
//   memcpy   the bound: the request buffer copied into fresh memory of this
//            process (the second half of bench/fuse_limit's FUSE wr).
//
// The task is a child made for each round (not timed) that maps the area,
// makes a UFFD_USER_MODE_ONLY userfaultfd registered on it (MISSING), and
// waits; the timed part ends when every page is in it (and the store is
// freed). The rounds interleave the paths. Checks the task's memory after
// each round (a word of every page) so that no path is measured doing less.
//
//   stream_fill_bench [--rounds N] [MiB ...]   (default 5 rounds, 16 256 1024)
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kRequest = 1 << 20;  // FUSE max_write of crfsd
constexpr size_t kHead = 32;          // record frame + pages record before the data
constexpr size_t kWindow = 16 << 20;  // the blob's copy step
constexpr uintptr_t kTaskAt = 0x7e0000000000;

[[noreturn]] void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The new task: maps `len` bytes at kTaskAt, registers them on a userfaultfd
// (fd 3 in the child, read by the parent with pidfd_getfd), tells the parent
// and waits to be killed.
struct Task {
    pid_t pid = -1;
    int pidfd = -1, uffd = -1;
};

Task make_task(size_t len, bool register_uffd) {
    int sync[2];
    if (pipe(sync) < 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        void* p = mmap(reinterpret_cast<void*>(kTaskAt), len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED) _exit(2);
        int fd = -1;
        if (register_uffd) {
            fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
            uffdio_api api{UFFD_API, 0, 0};
            if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) _exit(3);
            uffdio_register reg{{kTaskAt, len}, UFFDIO_REGISTER_MODE_MISSING, 0};
            if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) _exit(4);
        }
        char c = char(fd);
        if (write(sync[1], &c, 1) != 1) _exit(5);
        for (;;) pause();
    }
    close(sync[1]);
    char c;
    if (read(sync[0], &c, 1) != 1) die("task setup");
    close(sync[0]);
    Task t;
    t.pid = pid;
    t.pidfd = int(syscall(SYS_pidfd_open, pid, 0));
    if (t.pidfd < 0) die("pidfd_open");
    if (register_uffd) {
        t.uffd = int(syscall(SYS_pidfd_getfd, t.pidfd, int(static_cast<signed char>(c)), 0));
        if (t.uffd < 0) die("pidfd_getfd");
    }
    return t;
}

// Reads a word of every page of the task (process_vm_readv) and checks the pattern.
void check_task(const Task& t, size_t len) {
    std::vector<uint64_t> got(len / kPage);
    std::vector<iovec> remote, local;
    for (size_t i = 0; i < got.size(); ++i) {
        remote.push_back({reinterpret_cast<void*>(kTaskAt + i * kPage + 8), 8});
        local.push_back({&got[i], 8});
    }
    for (size_t i = 0; i < got.size(); i += 1024) {
        size_t n = std::min<size_t>(1024, got.size() - i);
        if (process_vm_readv(t.pid, &local[i], n, &remote[i], n, 0) != ssize_t(n * 8))
            die("process_vm_readv (check)");
    }
    for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != i + 1) {
            std::fprintf(stderr, "page %zu of the task holds %llu\n", i,
                         static_cast<unsigned long long>(got[i]));
            std::exit(1);
        }
}

void end_task(Task& t) {
    if (t.uffd >= 0) close(t.uffd);
    close(t.pidfd);
    kill(t.pid, SIGKILL);
    waitpid(t.pid, nullptr, 0);
}

void uffd_copy(int uffd, uintptr_t dst, const char* src, size_t len) {
    size_t done = 0;
    while (done < len) {
        uffdio_copy c{dst + done, reinterpret_cast<uintptr_t>(src + done), len - done, 0, 0};
        if (ioctl(uffd, UFFDIO_COPY, &c) == 0) return;
        if (c.copy > 0) done += size_t(c.copy);
        if (errno != EAGAIN && errno != EINTR) die("UFFDIO_COPY");
    }
}

// One request arriving: the kernel copies the writer's bytes into libfuse's
// buffer. Page i of the image gets i + 1 in its second word.
void arrive(char* req, const char* src, size_t first_page, size_t pages) {
    std::memcpy(req, src, kHead + pages * kPage);
    for (size_t i = 0; i < pages; ++i) {
        uint64_t v = first_page + i + 1;
        std::memcpy(req + kHead + i * kPage + 8, &v, 8);
    }
}

enum Path { kSpool, kUffd, kVmwrite, kMemcpy };
const char* const kNames[] = {"spool", "uffd", "vmwrite", "memcpy"};

double run(Path path, size_t len, char* req, const char* src) {
    size_t per = (kRequest - kHead) / kPage;  // whole pages per request, as a bound
    Task t;
    if (path != kMemcpy) t = make_task(len, path != kVmwrite);
    int store = -1;
    char* sink = nullptr;
    double t0 = now();
    if (path == kSpool) {
        store = int(memfd_create("crfs-bench-store", MFD_CLOEXEC));
        if (store < 0) die("memfd_create");
    }
    if (path == kMemcpy) {
        sink = static_cast<char*>(
            mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (sink == MAP_FAILED) die("mmap");
    }
    for (size_t page = 0; page < len / kPage; page += per) {
        size_t n = std::min(per, len / kPage - page);
        arrive(req, src, page, n);
        const char* data = req + kHead;
        switch (path) {
            case kSpool:
                if (pwrite(store, data, n * kPage, off_t(page * kPage)) != ssize_t(n * kPage))
                    die("pwrite");
                break;
            case kUffd:
                uffd_copy(t.uffd, kTaskAt + page * kPage, data, n * kPage);
                break;
            case kVmwrite: {
                iovec l{const_cast<char*>(data), n * kPage};
                iovec r{reinterpret_cast<void*>(kTaskAt + page * kPage), n * kPage};
                if (process_vm_writev(t.pid, &l, 1, &r, 1, 0) != ssize_t(n * kPage))
                    die("process_vm_writev");
                break;
            }
            case kMemcpy:
                std::memcpy(sink + page * kPage, data, n * kPage);
                break;
        }
    }
    if (path == kSpool) {  // close: the blob's fill from a window of the store
        for (size_t off = 0; off < len; off += kWindow) {
            size_t n = std::min(kWindow, len - off);
            void* w = mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, store, off_t(off));
            if (w == MAP_FAILED) die("mmap of the store");
            uffd_copy(t.uffd, kTaskAt + off, static_cast<const char*>(w), n);
            munmap(w, n);
        }
        close(store);  // the slot drops its spool before close() returns
    }
    double took = now() - t0;
    if (path == kMemcpy) {
        for (size_t i = 0; i < len / kPage; ++i) {
            uint64_t v;
            std::memcpy(&v, sink + i * kPage + 8, 8);
            if (v != i + 1) die("memcpy check");
        }
        munmap(sink, len);
    } else {
        check_task(t, len);
        end_task(t);
    }
    return took;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 5;
    std::vector<size_t> sizes;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = std::atoi(argv[++i]);
        else
            sizes.push_back(size_t(std::atol(argv[i])));
    }
    if (sizes.empty()) sizes = {16, 256, 1024};
    char* req = static_cast<char*>(aligned_alloc(kPage, kRequest));
    char* src = static_cast<char*>(aligned_alloc(kPage, kRequest));
    std::memset(src, 0x5a, kRequest);
    std::memset(req, 0, kRequest);
    double load[3];
    getloadavg(load, 3);
    std::printf("load average %.2f %.2f %.2f; %d rounds, paths interleaved; ms (median, min)\n",
                load[0], load[1], load[2], rounds);
    std::printf("%6s %16s %16s %16s %16s %10s %10s\n", "MiB", kNames[0], kNames[1], kNames[2],
                kNames[3], "spool/uffd", "uffd/memcpy");
    for (size_t mib : sizes) {
        size_t len = mib << 20;
        for (int p = 0; p < 4; ++p) run(Path(p), len, req, src);  // warm-up
        std::vector<double> t[4];
        for (int r = 0; r < rounds; ++r)
            for (int p = 0; p < 4; ++p) t[p].push_back(run(Path(p), len, req, src) * 1e3);
        double med[4], lo[4];
        for (int p = 0; p < 4; ++p) {
            std::sort(t[p].begin(), t[p].end());
            med[p] = t[p][t[p].size() / 2];
            lo[p] = t[p][0];
        }
        std::printf("%6zu", mib);
        for (int p = 0; p < 4; ++p) {
            char cell[40];
            std::snprintf(cell, sizeof cell, "%.1f (%.1f)", med[p], lo[p]);
            std::printf(" %16s", cell);
        }
        std::printf(" %9.2fx %9.2fx\n", med[0] / med[1], med[1] / med[3]);
    }
    getloadavg(load, 3);
    std::printf("load average after %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    return 0;
}
