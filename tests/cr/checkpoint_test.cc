// checkpoint_task and its parts on live processes: errno of each failure, the
// task left exactly as it was, syscall restart after remote syscalls, the
// snapshot read in small chunks, concurrent checkpoints of one task.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/freeze.h"
#include "checkpoint/live_snapshot.h"
#include "checkpoint/parasite.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/task_attrs.h"
#include "common/image_reader.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "state/kind.h"
#include "state/memory_dump.h"
#include "state/mlockall.h"
#include "state/settings.h"
#include "state/thread_attrs.h"
#include "state/threads.h"

namespace crfs {
namespace {

void close_fds_from(int lo, std::initializer_list<int> keep = {}) {
    for (int fd = lo; fd < 1024; ++fd)
        if (std::find(keep.begin(), keep.end(), fd) == keep.end()) close(fd);
}

// A forked child running `body` with /dev/null on 0-2 and no other descriptor
// but `keep` (so it is checkpointable); the constructor returns once that is
// so. Killed and reaped in the destructor: no test leaves a process behind.
class Child {
  public:
    template <class F>
    explicit Child(F body, std::initializer_list<int> keep = {}) {
        int ready[2];
        if (pipe(ready) != 0) abort();
        pid_ = fork();
        if (pid_ == 0) {
            int n = open("/dev/null", O_RDWR);
            dup2(n, 0);
            dup2(n, 1);
            dup2(n, 2);
            close_fds_from(3, keep);  // closes `ready` too: the parent sees EOF
            body();
            _exit(0);
        }
        close(ready[1]);
        char x;
        while (read(ready[0], &x, 1) > 0) {
        }
        close(ready[0]);
    }
    ~Child() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    // Waits for the child to exit by itself; returns its wait status.
    int wait_exit() {
        int st = 0;
        waitpid(pid_, &st, 0);
        pid_ = -1;
        return st;
    }
    uint64_t starttime() const { return read_task_stat(pid_).value().starttime; }

  private:
    pid_t pid_ = -1;
};

// Waits (bounded) until /proc says the task is in `state` (S, T, ...).
bool wait_state(pid_t pid, char state) {
    for (int i = 0; i < 2000; ++i) {
        auto st = read_task_stat(pid);
        if (st && st->state == state) return true;
        usleep(1000);
    }
    return false;
}

// Reads `len` bytes of `fd`, waiting at most ~10 s for them (a child stuck
// after a broken release fails the test instead of hanging it).
size_t read_bounded(int fd, char* buf, size_t len) {
    size_t got = 0;
    for (int i = 0; got < len && i < 10000; ++i) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 1) != 1) continue;
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) break;
        got += size_t(n);
    }
    return got;
}

// Not traced, and in `state`: a stopped task must be 'T' right away; a sleeping
// one may be running for a moment as it re-enters its syscall.
void expect_untouched(pid_t pid, char state) {
    EXPECT_EQ(read_tracer_pid(pid).value(), 0);
    if (state == 'S') {
        EXPECT_TRUE(wait_state(pid, 'S'));
    } else {
        auto st = read_task_stat(pid);
        ASSERT_TRUE(st);
        EXPECT_EQ(st->state, state);
    }
}

std::string read_all(const Snapshot& s, size_t chunk) {
    std::string out;
    std::vector<char> buf(chunk);
    for (uint64_t off = 0;;) {
        auto n = s.read(off, buf.data(), buf.size());
        EXPECT_TRUE(n);
        if (!n || *n == 0) break;
        out.append(buf.data(), *n);
        off += *n;
    }
    return out;
}

// Descriptors inherited from whoever started the tests (a CI runner's pipes)
// would make every child uncheckpointable: drop them before any test runs.
const bool kInheritedFdsClosed = [] {
    close_fds_from(3);
    return true;
}();

TEST(CheckpointTest, SleepingTaskKeepsSleepingAndImageDecodes) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    expect_untouched(c.pid(), 'S');
    std::string whole = read_all(**snap, 1 << 20);
    EXPECT_EQ(whole.size(), (*snap)->size());
    MemorySource src(whole.data(), whole.size());
    auto img = decode_image(src);
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_EQ(img->task.pid, c.pid());
    EXPECT_EQ(img->fds.size(), 3u);
    EXPECT_FALSE(img->header.flags & image::kHeaderTaskWasStopped);
}

TEST(CheckpointTest, ReadsInOneKibChunksGiveTheSameBytes) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    EXPECT_EQ(read_all(**snap, 1024), read_all(**snap, 1 << 20));
    EXPECT_EQ(read_all(**snap, 4096), read_all(**snap, 777));
}

// FUSE serves reads of one handle from several threads: interleaved chunked
// readers must all get the same bytes, and the checksum must hold.
TEST(CheckpointTest, ConcurrentReadersOfOneSnapshotGetTheSameImage) {
    Child c([] {
        std::vector<char> mem(4 << 20, 7);
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    std::vector<std::string> got(4);
    std::vector<std::thread> ts;
    for (size_t i = 0; i < got.size(); ++i)
        ts.emplace_back([&, i] { got[i] = read_all(**snap, 1000 + 3000 * i); });
    for (auto& t : ts) t.join();
    for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i], got[0]) << i;
    MemorySource src(got[0].data(), got[0].size());
    auto img = decode_image(src);
    EXPECT_TRUE(img) << img.error().what;
}

// A private mapping of a file that is then unlinked: clean pages cannot come
// from the file at restore, so all of them are in the image, dirty ones as the
// task sees them.
TEST(CheckpointTest, PrivateMappingOfDeletedFileIsStoredWhole) {
    char path[] = "/tmp/crfs-ckpt-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string content(3 * 4096 - 100, 'f');  // 3 pages, the last one partial
    ASSERT_EQ(write(fd, content.data(), content.size()), ssize_t(content.size()));
    void* map = mmap(nullptr, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    ASSERT_NE(map, MAP_FAILED);
    close(fd);
    unlink(path);
    static_cast<char*>(map)[4096] = 'D';  // page 1 dirty; pages 0 and 2 never touched
    Child c([] {
        for (;;) pause();
    });
    munmap(map, 4 * 4096);
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    std::string whole = read_all(**snap, 1 << 20);
    MemorySource src(whole.data(), whole.size());
    auto img = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(img) << img.error().what;
    uint64_t base = reinterpret_cast<uint64_t>(map);
    std::string got;
    for (const auto& p : img->pages)
        if (p.vaddr >= base && p.vaddr < base + 4 * 4096) got += p.data;
    ASSERT_EQ(got.size(), 3u * 4096);  // the 4th page is past the end of the file
    EXPECT_EQ(got.substr(0, 4096), std::string(4096, 'f'));
    EXPECT_EQ(got[4096], 'D');
    EXPECT_EQ(got.substr(4097, 4095), std::string(4095, 'f'));
    EXPECT_EQ(got.substr(8192), std::string(4096 - 100, 'f') + std::string(100, '\0'));
}

// Each page of a plan's runs, with the source it is read from (readable, ptes).
std::map<uint64_t, std::pair<bool, bool>> planned_pages(const PagePlan& p) {
    std::map<uint64_t, std::pair<bool, bool>> out;
    for (size_t r = 0; r < p.runs.size(); ++r)
        for (uint64_t k = 0; k < p.runs[r].nr_pages; ++k)
            out[p.runs[r].vaddr + k * 4096] = {p.sources[r].readable, p.sources[r].ptes};
    return out;
}

// perf: plan_pages walks the page tables only of the areas whose smaps
// counts (read while the task holds still) do not already say which pages it
// must store, and its plan is the walk's: areas written whole or not at all,
// a private file mapping read but never written or written whole, are not
// walked; half-written ones are. The one difference: an area only read holds
// copies of the zero page, which the walk stores and the counts leave out.
TEST(CheckpointTest, SmapsCountsPlanWhatThePageTablesWalkWouldFind) {
    constexpr size_t kPg = 4096;
    char path[] = "/tmp/crfs-plan-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 8 * kPg), 0);
    ASSERT_EQ(pwrite(fd, "file", 4, 0), 4);
    // Carved out of one PROT_NONE reservation, a page of it left between
    // them: no area merges with a neighbour.
    char* reserved =
        static_cast<char*>(mmap(nullptr, 256 * kPg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(reserved, MAP_FAILED);
    size_t used = 0;
    auto anon = [&](size_t pages) {
        char* area = reserved + (used + 1) * kPg;
        used += pages + 1;
        void* p = mmap(area, pages * kPg, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        EXPECT_EQ(p, area);
        madvise(area, pages * kPg, MADV_NOHUGEPAGE);
        return area;
    };
    auto file = [fd] {
        void* p = mmap(nullptr, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        EXPECT_NE(p, MAP_FAILED);
        return static_cast<char*>(p);
    };
    // Mapped here, touched only in the child (none of its pages shared).
    char* whole = anon(64);       // written whole: all stored, not walked
    char* untouched = anon(64);   // nothing: not walked
    char* half = anon(64);        // every other page: walked
    char* read_only = anon(16);   // only read: zero-page copies the walk counts
    char* file_read = file();     // read, never written: nothing, not walked
    char* file_written = file();  // written whole: all private copies, not walked
    char* file_some = file();     // two pages written: walked
    close(fd);
    struct Unlink {
        const char* path;
        ~Unlink() { unlink(path); }
    } unlink_after{path};  // a deleted file's mapping is stored whole, not walked
    Child c([=] {
        volatile char sink = 0;
        for (size_t i = 0; i < 64; ++i) whole[i * kPg] = char(i + 1);
        for (size_t i = 0; i < 64; i += 2) half[i * kPg] = 1;
        for (size_t i = 0; i < 16; ++i) sink = sink + read_only[i * kPg];
        for (size_t i = 0; i < 8; ++i) sink = sink + file_read[i * kPg];
        for (size_t i = 0; i < 8; ++i) file_written[i * kPg] = 'w';
        file_some[kPg] = file_some[5 * kPg] = 's';
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    ASSERT_EQ(kill(c.pid(), SIGSTOP), 0);  // holds still, as frozen
    ASSERT_TRUE(wait_state(c.pid(), 'T'));
    auto smaps = read_maps(strfmt("/proc/{}/smaps", c.pid()), 64 << 20);
    ASSERT_TRUE(smaps) << smaps.error().what;
    const std::vector<std::pair<char*, size_t>> ours{
        {whole, 64},    {untouched, 64},   {half, 64},    {read_only, 16},
        {file_read, 8}, {file_written, 8}, {file_some, 8}};
    auto ours_at = [&](uint64_t start) {
        return std::any_of(ours.begin(), ours.end(), [&](const auto& o) {
            return reinterpret_cast<uint64_t>(o.first) == start;
        });
    };
    // The pages of a plan in our areas (the child's others are planned alike
    // by both: compared by their number).
    auto in_ours = [&](std::map<uint64_t, std::pair<bool, bool>> pages) {
        std::erase_if(pages, [&](const auto& page) {
            return std::none_of(ours.begin(), ours.end(), [&](const auto& o) {
                uint64_t at = reinterpret_cast<uint64_t>(o.first);
                return page.first >= at && page.first < at + o.second * kPg;
            });
        });
        return pages;
    };
    // Every area, as a checkpoint plans them; and the same with ours uncounted,
    // as if read from maps: walked whatever they hold.
    std::vector<MapsEntry> uncounted = *smaps;
    size_t found = 0;
    for (MapsEntry& e : uncounted)
        if (ours_at(e.start)) e.counted = false, ++found;
    ASSERT_EQ(found, ours.size());
    auto counted = plan_pages(c.pid(), *smaps);
    auto walked = plan_pages(c.pid(), uncounted);
    ASSERT_TRUE(counted) << counted.error().what;
    ASSERT_TRUE(walked) << walked.error().what;
    // Not walked: whole, untouched, read_only, file_read, file_written.
    EXPECT_EQ(walked->pages_walked - counted->pages_walked, 64u * 2 + 16 + 8 * 2);
    EXPECT_EQ(counted->pages_scanned, walked->pages_scanned);
    auto want = in_ours(planned_pages(*walked));
    for (size_t i = 0; i < 16; ++i) {  // the zero page, which the walk stores
        auto at = want.find(reinterpret_cast<uint64_t>(read_only + i * kPg));
        ASSERT_NE(at, want.end()) << i;
        want.erase(at);
    }
    auto got = in_ours(planned_pages(*counted));
    EXPECT_EQ(got, want);
    EXPECT_EQ(got.size(), 64u + 32 + 8 + 2);
    EXPECT_EQ(planned_pages(*counted).size() - got.size(),
              planned_pages(*walked).size() - want.size() - 16);
    munmap(reserved, 256 * kPg);
    for (char* p : {file_read, file_written, file_some}) munmap(p, 8 * kPg);
}

// A task whose seccomp filter kills it on getitimer (one of the syscalls the
// parasite makes) survives its checkpoint: seccomp is suspended while we hold it.
TEST(CheckpointTest, SeccompFilteredTaskSurvives) {
    if (geteuid() != 0) GTEST_SKIP() << "suspending seccomp needs CAP_SYS_ADMIN";
    Child c([] {
        sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getitimer, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog prog{static_cast<unsigned short>(std::size(f)), f};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(3);
        for (;;) pause();
    });
    for (int i = 0; i < 2000; ++i) {  // until the filter is in place
        if (read_proc(c.pid(), "status").value().find("Seccomp:\t2") != std::string::npos) break;
        usleep(1000);
    }
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    // The filter is read (state/seccomp.cc) by a freeze that must leave the
    // task as it was, each time.
    for (int i = 0; i < 3; ++i) {
        auto snap = checkpoint_task(c.pid(), c.starttime());
        ASSERT_TRUE(snap) << snap.error().what;
        std::string whole = read_all(**snap, 1 << 20);
        MemorySource src(whole.data(), whole.size());
        auto img = decode_image(src);
        ASSERT_TRUE(img) << img.error().what;
        ASSERT_EQ(img->seccomp.size(), 1u);
        EXPECT_EQ(img->seccomp[0].rec.len, 4u);
    }
    expect_untouched(c.pid(), 'S');
}

TEST(CheckpointTest, StoppedTaskStaysStopped) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    kill(c.pid(), SIGSTOP);
    ASSERT_TRUE(wait_state(c.pid(), 'T'));
    for (int i = 0; i < 5; ++i) {
        auto snap = checkpoint_task(c.pid(), c.starttime());
        ASSERT_TRUE(snap) << snap.error().what;
        std::string whole = read_all(**snap, 1 << 20);
        MemorySource src(whole.data(), whole.size());
        auto img = decode_image(src);
        ASSERT_TRUE(img) << img.error().what;
        EXPECT_TRUE(img->header.flags & image::kHeaderTaskWasStopped);
        // Give a wrongly resumed task time to show it runs; it must stay stopped.
        usleep(20000);
        expect_untouched(c.pid(), 'T');
    }
    // And it still continues normally afterwards.
    kill(c.pid(), SIGCONT);
    EXPECT_TRUE(wait_state(c.pid(), 'S'));
}

TEST(CheckpointTest, WrongStartTimeIsEsrch) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime() + 1);
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, ESRCH);
    expect_untouched(c.pid(), 'S');
}

TEST(CheckpointTest, MissingTaskIsEsrch) {
    pid_t pid;
    {
        Child c([] { _exit(0); });
        pid = c.pid();
        waitpid(pid, nullptr, 0);
    }
    auto snap = checkpoint_task(pid, 1);
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, ESRCH);
}

TEST(CheckpointTest, TracedTaskIsEbusyAndStaysTracedByItsTracer) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    // Another process seizes it first.
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t target = c.pid();
    Child tracer(
        [&] {
            if (ptrace(PTRACE_SEIZE, target, nullptr, nullptr) != 0) _exit(1);
            char x = 1;
            if (write(ready[1], &x, 1) != 1) _exit(1);
            for (;;) pause();
        },
        {ready[1]});
    char x;
    ASSERT_EQ(read(ready[0], &x, 1), 1);
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, EBUSY);
    EXPECT_NE(snap.error().what.find("being traced by pid"), std::string::npos)
        << snap.error().what;
    EXPECT_EQ(read_tracer_pid(c.pid()).value(), tracer.pid());
    close(ready[0]);
    close(ready[1]);
}

TEST(CheckpointTest, UnprivilegedCallerIsEacces) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to another uid";
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    pid_t target = c.pid();
    uint64_t start = c.starttime();
    // Checkpoint from a process that dropped to nobody: no right to ptrace root's task.
    pid_t p = fork();
    if (p == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
        auto snap = checkpoint_task(target, start);
        _exit(snap ? 0 : snap.error().code == EACCES ? 1 : 2);
    }
    int st = 0;
    waitpid(p, &st, 0);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 1) << "1 = EACCES, 0 = succeeded, 2 = other error";
    expect_untouched(c.pid(), 'S');
}

TEST(CheckpointTest, UnsupportedFdIsEbusyAndTaskRuns) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    Child c(
        [] {
            for (;;) pause();
        },
        {p[0]});
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, EBUSY);
    // The test holds the pipe too: a pipe shared with another process.
    EXPECT_NE(snap.error().what.find("fd " + std::to_string(p[0]) + ": pipe:["), std::string::npos)
        << snap.error().what;
    expect_untouched(c.pid(), 'S');
    close(p[0]);
    close(p[1]);
}

TEST(CheckpointTest, TaskExitingDuringCheckpointsGivesErrorsNotCrashes) {
    // Tasks that exit at varying moments; each checkpoint either succeeds or fails with ESRCH.
    int ok = 0, gone = 0;
    for (int i = 0; i < 40; ++i) {
        Child c([i] {
            // Busy for a varying short while, then exit.
            volatile uint64_t x = 0;
            for (long k = 0; k < (i % 10) * 200000; ++k) x = x + uint64_t(k);
            _exit(0);
        });
        uint64_t start = 0;
        if (auto st = read_task_stat(c.pid())) start = st->starttime;
        auto snap = checkpoint_task(c.pid(), start);
        if (snap) {
            ++ok;
        } else {
            EXPECT_TRUE(snap.error().code == ESRCH) << snap.error().what;
            ++gone;
        }
    }
    EXPECT_EQ(ok + gone, 40);
    // This process (the "daemon") still works: a fresh checkpoint succeeds.
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    EXPECT_TRUE(checkpoint_task(c.pid(), c.starttime()));
}

TEST(CheckpointTest, ConcurrentCheckpointsOfOneTaskBothSucceed) {
    Child c([] {
        std::vector<char> mem(8 << 20, 1);
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    uint64_t start = c.starttime();
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
        ts.emplace_back([&] {
            for (int k = 0; k < 5; ++k) {
                auto s = checkpoint_task(c.pid(), start);
                if (!s) {
                    ADD_FAILURE() << s.error().what;
                    ++failures;
                }
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(failures, 0);
    expect_untouched(c.pid(), 'S');
}

// RemoteSyscall::prepare in frozen `t`, with its task's vdso.
Result<std::unique_ptr<RemoteSyscall>> prepare_remote(FrozenTask& t) {
    auto maps = parse_maps(read_proc(t.pid(), "maps").value()).value();
    uint64_t vs = 0, ve = 0;
    for (auto& m : maps)
        if (m.path == "[vdso]") vs = m.start, ve = m.end;
    return RemoteSyscall::prepare(t, vs, ve);
}

// On a thread of its own (ptrace is per thread): freezes `pid`, prepares
// remote syscalls and gives them to `then`; then puts the task back (finish),
// gives them to `after` if set, and releases it.
void with_remote(pid_t pid, const std::function<void(RemoteSyscall&)>& then,
                 const std::function<void(RemoteSyscall&)>& after = {}) {
    std::thread([&] {
        auto t = FrozenTask::freeze(pid);
        ASSERT_TRUE(t) << t.error().what;
        auto rs = prepare_remote(**t);
        ASSERT_TRUE(rs) << rs.error().what;
        then(**rs);
        ASSERT_TRUE((*rs)->finish());
        if (after) after(**rs);
        ASSERT_TRUE((*t)->release());
    }).join();
}

// A child blocked in read() on a pipe; answer() writes "hello" into the pipe
// and returns what the read gave: "bytes errno data".
struct BlockedReader {
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    std::optional<Child> c;
    BlockedReader() {
        if (pipe(in) != 0 || pipe(out) != 0) abort();
        c.emplace(
            [this] {
                char buf[16] = {};
                ssize_t n = read(in[0], buf, sizeof buf);
                char res[64];
                int len = snprintf(res, sizeof res, "%zd %d %s", n, n < 0 ? errno : 0, buf);
                if (write(out[1], res, size_t(len)) < 0) _exit(1);
                _exit(0);
            },
            std::initializer_list<int>{in[0], out[1]});
    }
    ~BlockedReader() {
        c.reset();
        for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    }
    pid_t pid() const { return c->pid(); }
    std::string answer() {
        if (write(in[1], "hello", 5) != 5) return "write failed";
        char res[64] = {};
        return read(out[0], res, sizeof res - 1) > 0 ? res : "no answer";
    }
};

// Remote syscalls into a task blocked in read() on a pipe: afterwards the read
// must restart and return the data written later, not -EINTR or -ERESTARTSYS.
TEST(RemoteSyscallTest, ReadOnAPipeRestarts) {
    BlockedReader c;
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    for (int round = 0; round < 3; ++round) {
        std::thread([&] {
            auto t = FrozenTask::freeze(c.pid());
            ASSERT_TRUE(t) << t.error().what;
            auto rs = prepare_remote(**t);
            ASSERT_TRUE(rs) << rs.error().what;
            EXPECT_EQ((*rs)->call(SYS_getpid).value(), c.pid());
            EXPECT_EQ((*rs)->call(SYS_rt_sigaction, SIGTERM, 0, (*rs)->scratch(), 8).value(), 0);
            ASSERT_TRUE((*rs)->finish());
            ASSERT_TRUE((*t)->release());
        }).join();
        expect_untouched(c.pid(), 'S');
    }
    EXPECT_EQ(c.answer(), "5 0 hello");
}

void on_usr1(int) {}

// On a thread of its own (ptrace is per thread): freezes `pid`, prepares
// remote syscalls, runs the parasite and gives `then` its output; then puts
// the task back and releases it.
// `from_view`: the SIGTRAP question answered by the status a view read while
// frozen (as a checkpoint asks it), not by one read just before the parasite.
void with_parasite(pid_t pid,
                   const std::function<void(RemoteSyscall&, const ParasiteOutput*)>& then,
                   bool from_view = false) {
    std::thread([&] {
        auto t = FrozenTask::freeze(pid);
        ASSERT_TRUE(t) << t.error().what;
        state::TaskView view(pid, getpid());
        auto st = view.status();
        ASSERT_TRUE(st) << st.error().what;
        auto rs = prepare_remote(**t);
        ASSERT_TRUE(rs) << rs.error().what;
        auto o = run_parasite(**rs, {}, from_view ? *st : nullptr);
        ASSERT_TRUE(o) << o.error().what;
        then(**rs, &*o);
        ASSERT_TRUE((*rs)->finish());
        ASSERT_TRUE((*t)->release());
    }).join();
}

// The parasite (one injected blob) and single injected syscalls must read the
// same state; the task then runs on and its maps are as before.
TEST(RemoteSyscallTest, ParasiteMatchesSingleSyscalls) {
    Child c([] {
        struct sigaction sa {};
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_RESTART;
        sigaddset(&sa.sa_mask, SIGINT);
        sigaction(SIGUSR1, &sa, nullptr);
        signal(SIGUSR2, SIG_IGN);
        static char alt[16384];
        stack_t ss{alt, 0, sizeof alt};
        sigaltstack(&ss, nullptr);
        itimerval it{{5, 0}, {100, 0}};
        setitimer(ITIMER_VIRTUAL, &it, nullptr);
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    // Wait for the child's setup (its SIGUSR2 disposition) to be visible.
    for (int i = 0; i < 2000; ++i) {
        auto st = read_proc(c.pid(), "status").value();
        if (st.find("SigIgn:\t0000000000000800") != std::string::npos) break;
        usleep(1000);
    }
    std::string maps_before = read_proc(c.pid(), "maps").value();
    with_parasite(c.pid(), [&](RemoteSyscall& rs, const ParasiteOutput* a) {
        auto b = run_single_syscalls(rs);
        ASSERT_TRUE(b) << b.error().what;
        EXPECT_EQ(std::memcmp(a->actions, b->actions, sizeof a->actions), 0);
        EXPECT_EQ(a->actions[SIGUSR1 - 1].handler, reinterpret_cast<uint64_t>(&on_usr1));
        EXPECT_EQ(a->actions[SIGUSR1 - 1].mask, 1ull << (SIGINT - 1));
        EXPECT_EQ(a->actions[SIGUSR2 - 1].handler, 1u);  // SIG_IGN
        EXPECT_EQ(a->altstack_size, 16384u);
        EXPECT_EQ(a->altstack_sp, b->altstack_sp);
        EXPECT_EQ(a->itimers[1][0], 5);  // ITIMER_VIRTUAL interval
        EXPECT_EQ(a->brk, b->brk);
        EXPECT_GT(a->brk, 0);
    });
    expect_untouched(c.pid(), 'S');
    EXPECT_EQ(read_proc(c.pid(), "maps").value(), maps_before);
}

void on_trap(int) {}

// A Child that writes a byte on `ready[1]` once set up: its set-up done (EOF
// if it died) and the child asleep. Closes both ends.
bool child_ready(int ready[2], pid_t pid) {
    close(ready[1]);
    char x = 0;
    bool ok = read(ready[0], &x, 1) == 1;
    close(ready[0]);
    return ok && wait_state(pid, 'S');
}

// /proc status lines of the signal sets: SigPnd ShdPnd SigBlk SigIgn SigCgt.
std::string signal_sets(pid_t pid) {
    std::string st = read_proc(pid, "status").value(), out;
    for (const char* f : {"SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:"}) {
        size_t at = st.find(f);
        if (at != std::string::npos) out += st.substr(at, st.find('\n', at) - at + 1);
    }
    return out;
}

// A stepped call (RemoteSyscall::step_calls) takes one stop where one through
// its entry and exit takes two, gives the same results, and leaves the task
// in its signal path, so finish() stops it no more: a read() it was blocked
// in restarts and returns the data written afterwards.
TEST(RemoteSyscallTest, SteppedCallsTakeOneStopAndTheReadRestarts) {
    BlockedReader c;
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    for (bool step : {false, true}) {
        SCOPED_TRACE(step ? "stepped" : "entry and exit");
        const int per_call = step ? 1 : 2;
        with_remote(
            c.pid(),
            [&](RemoteSyscall& rs) {
                if (step) rs.step_calls();
                ASSERT_EQ(rs.steps_calls(), step);
                EXPECT_EQ(rs.call(SYS_getpid).value(), c.pid());
                EXPECT_EQ(rs.stops(), per_call);
                EXPECT_EQ(rs.call(SYS_close, uint64_t(-1)).value(), -EBADF);
                EXPECT_EQ(rs.call(SYS_rt_sigaction, SIGTERM, 0, rs.scratch(), 8).value(), 0);
                EXPECT_EQ(rs.stops(), 3 * per_call);
            },
            [&](RemoteSyscall& rs) {
                // Two stops: one more into the signal path (back_to_signal_stop).
                EXPECT_EQ(rs.stops(), 3 * per_call + (step ? 0 : 1));
            });
        expect_untouched(c.pid(), 'S');
    }
    EXPECT_EQ(c.answer(), "5 0 hello");
}

// A SIGTRAP sent to the thread while crfs holds it, after the check that let
// it step (the task blocks SIGTRAP, none pending), merges into a step's: it
// is the task's afterwards, pending with its sender's siginfo, and the
// call's result is the syscall's.
TEST(RemoteSyscallTest, ASigtrapSentDuringSteppedCallsStaysTheTasks) {
    int ready[2], out[2];
    ASSERT_EQ(pipe(ready), 0);
    ASSERT_EQ(pipe(out), 0);
    Child c(
        [&] {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGTRAP);
            sigaddset(&s, SIGUSR1);
            sigprocmask(SIG_BLOCK, &s, nullptr);
            if (write(ready[1], "x", 1) != 1) _exit(1);
            int sig = 0;
            sigset_t usr1;
            sigemptyset(&usr1);
            sigaddset(&usr1, SIGUSR1);
            sigwait(&usr1, &sig);
            siginfo_t si{};
            timespec zero{};
            // The raw syscall: glibc's sigtimedwait shows SI_TKILL as SI_USER.
            int got = int(syscall(SYS_rt_sigtimedwait, &s, &si, &zero, 8));
            char res[64];
            int len = snprintf(res, sizeof res, "%d %d %d", got, si.si_code, int(si.si_pid));
            if (write(out[1], res, size_t(len)) < 0) _exit(1);
            _exit(0);
        },
        {ready[1], out[1]});
    ASSERT_TRUE(child_ready(ready, c.pid()));
    with_remote(c.pid(), [&](RemoteSyscall& rs) {
        rs.step_calls();
        ASSERT_TRUE(rs.steps_calls());
        EXPECT_EQ(rs.call(SYS_getpid).value(), c.pid());
        ASSERT_EQ(syscall(SYS_tgkill, c.pid(), c.pid(), SIGTRAP), 0);
        EXPECT_EQ(rs.call(SYS_getpid).value(), c.pid());
        EXPECT_EQ(rs.call(SYS_close, uint64_t(-1)).value(), -EBADF);
    });
    expect_untouched(c.pid(), 'S');
    ASSERT_EQ(kill(c.pid(), SIGUSR1), 0);
    char res[64] = {};
    ASSERT_GT(read(out[0], res, sizeof res - 1), 0);
    EXPECT_EQ(std::string(res), strfmt("{} {} {}", int(SIGTRAP), int(SI_TKILL), int(getpid())));
    close(out[0]);
    close(out[1]);
}

// The parasite ends in int3, whose forced SIGTRAP, blocked as every signal is
// while crfs injects, would reset a caught or ignored SIGTRAP to SIG_DFL and
// take a pending one: such a task gets single syscalls, and its SIGTRAP action
// and pending signals are as they were. A task with the default action and
// none pending gets the parasite.
TEST(RemoteSyscallTest, ParasiteLeavesSigtrapAsItWas) {
    enum Trap { kCaught, kIgnored, kPending, kDefault };
    for (bool from_view : {false, true})
        for (Trap how : {kCaught, kIgnored, kPending, kDefault}) {
            SCOPED_TRACE(testing::Message() << how << (from_view ? " from the view" : " read now"));
            int ready[2];
            ASSERT_EQ(pipe(ready), 0);
            Child c(
                [&] {
                    if (how == kCaught) signal(SIGTRAP, on_trap);
                    if (how == kIgnored) signal(SIGTRAP, SIG_IGN);
                    if (how == kPending) {
                        sigset_t s;
                        sigemptyset(&s);
                        sigaddset(&s, SIGTRAP);
                        sigprocmask(SIG_BLOCK, &s, nullptr);
                        raise(SIGTRAP);  // the thread's own queue
                    }
                    if (write(ready[1], "x", 1) != 1) _exit(1);
                    for (;;) pause();
                },
                {ready[1]});
            ASSERT_TRUE(child_ready(ready, c.pid()));
            std::string before = signal_sets(c.pid());
            with_parasite(
                c.pid(),
                [&](RemoteSyscall&, const ParasiteOutput* o) {
                    if (how == kDefault) {
                        EXPECT_GT(o->batch_count, 0);  // the parasite ran
                    } else {
                        EXPECT_EQ(o->batch_count, 0);  // single syscalls
                    }
                    if (how == kCaught) {
                        EXPECT_EQ(o->actions[SIGTRAP - 1].handler,
                                  reinterpret_cast<uint64_t>(&on_trap));
                    }
                },
                from_view);
            expect_untouched(c.pid(), 'S');
            EXPECT_EQ(signal_sets(c.pid()), before);
        }
}

// The same for a thread that is not the main one, as a checkpoint captures it:
// its status read by the threads kind's detect (kept in the view) answers.
// A SIGTRAP pending for that thread alone stays pending, the thread's own.
TEST(RemoteSyscallTest, ThreadParasiteLeavesItsPendingSigtrap) {
    for (bool pending : {true, false}) {
        SCOPED_TRACE(pending ? "pending" : "none");
        int ready[2];
        ASSERT_EQ(pipe(ready), 0);
        Child c(
            [&] {
                std::thread([&] {
                    if (pending) {
                        sigset_t s;
                        sigemptyset(&s);
                        sigaddset(&s, SIGTRAP);
                        pthread_sigmask(SIG_BLOCK, &s, nullptr);
                        syscall(SYS_tgkill, getpid(), gettid(), SIGTRAP);  // its own queue
                    }
                    if (write(ready[1], "x", 1) != 1) _exit(1);
                    for (;;) pause();
                }).detach();
                for (;;) pause();
            },
            {ready[1]});
        ASSERT_TRUE(child_ready(ready, c.pid()));
        auto tids = list_tids(c.pid());
        ASSERT_TRUE(tids && tids->size() == 2);
        pid_t tid = (*tids)[0] == c.pid() ? (*tids)[1] : (*tids)[0];
        ASSERT_TRUE(wait_state(tid, 'S'));
        std::string before = signal_sets(tid);
        EXPECT_EQ(before.find("SigPnd:\t0000000000000010") != std::string::npos, pending) << before;
        std::thread([&] {
            auto f = FrozenThreads::freeze(c.pid(), false);
            ASSERT_TRUE(f) << f.error().what;
            state::TaskView view(c.pid(), getpid());
            state::Reasons why;
            ASSERT_TRUE(state::detect_threads(view, why));
            ASSERT_EQ(f->others().size(), 1u);
            FrozenTask& t = *f->others()[0];
            auto ts = view.thread_status(t.pid());
            ASSERT_TRUE(ts) << ts.error().what;
            auto trap = sigtrap_in_use(**ts, t.pid());
            ASSERT_TRUE(trap) << trap.error().what;
            EXPECT_EQ(*trap, pending);
            auto maps = parse_maps(read_proc(c.pid(), "maps").value()).value();
            uint64_t vs = 0, ve = 0;
            for (auto& m : maps)
                if (m.path == "[vdso]") vs = m.start, ve = m.end;
            auto th = capture_thread(c.pid(), t, vs, ve, *ts);
            ASSERT_TRUE(th) << th.error().what;
            ASSERT_TRUE(f->release());
        }).join();
        ASSERT_TRUE(wait_state(tid, 'S'));
        EXPECT_EQ(signal_sets(tid), before);
    }
}

// Whether the task maps an area at `base` (its /proc maps, now).
bool maps_area_at(pid_t pid, uint64_t base) {
    auto maps = parse_maps(read_proc(pid, "maps").value()).value();
    for (auto& m : maps)
        if (m.start == base) return true;
    return false;
}

// A task's other threads run the parasite in the area the main thread's run
// kept mapped (one stop each: no mmap or munmap of their own), and each still
// answers with its own state (timer slack, sigaltstack), as in an area of its
// own; the area is gone once unmapped (by unmap() or by its destructor), and
// the task is as it was.
TEST(RemoteSyscallTest, ThreadsRunTheParasiteInTheMainThreadsArea) {
    constexpr int kThreads = 3;
    static char stacks[kThreads + 1][1 << 16];
    for (bool by_destructor : {false, true}) {
        SCOPED_TRACE(by_destructor ? "unmapped by the destructor" : "unmapped by unmap()");
        int ready[2];
        ASSERT_EQ(pipe(ready), 0);
        Child c(
            [&] {
                for (int i = 1; i <= kThreads; ++i)
                    std::thread([&, i] {
                        stack_t ss{};
                        ss.ss_sp = stacks[i];
                        ss.ss_size = size_t(MINSIGSTKSZ) + 4096 * size_t(i);
                        if (sigaltstack(&ss, nullptr) != 0 ||
                            prctl(PR_SET_TIMERSLACK, 50000 + i, 0, 0, 0) != 0 ||
                            write(ready[1], "x", 1) != 1)
                            _exit(1);
                        for (;;) pause();
                    }).detach();
                for (;;) pause();
            },
            {ready[1]});
        close(ready[1]);
        char x[kThreads];
        ASSERT_EQ(read_full(ready[0], x, sizeof x).value_or(0), sizeof x);
        close(ready[0]);
        auto tids = list_tids(c.pid());
        ASSERT_TRUE(tids && tids->size() == kThreads + 1);
        for (pid_t tid : *tids) ASSERT_TRUE(wait_state(tid, 'S'));
        std::thread([&] {
            auto f = FrozenThreads::freeze(c.pid(), false);
            ASSERT_TRUE(f) << f.error().what;
            auto rs = prepare_remote(f->main());
            ASSERT_TRUE(rs) << rs.error().what;
            auto maps = parse_maps(read_proc(c.pid(), "maps").value()).value();
            uint64_t vs = 0, ve = 0;
            for (auto& m : maps)
                if (m.path == "[vdso]") vs = m.start, ve = m.end;
            uint64_t base = 0;
            {
                ParasiteArea area;
                auto o = run_parasite(**rs, {}, nullptr, &area);
                ASSERT_TRUE(o) << o.error().what;
                ASSERT_GT(o->batch_count, 0);
                ASSERT_TRUE(area.mapped());
                base = area.base();
                EXPECT_TRUE(maps_area_at(c.pid(), base));
                {  // in the area: one injection (the run: no mmap, no munmap), and
                   // the thread's own questions answered from its batch
                    FrozenTask& t = *f->others()[0];
                    auto trs = prepare_remote(t);
                    ASSERT_TRUE(trs) << trs.error().what;
                    auto o = try_parasite_in(**trs, &area, nullptr);
                    ASSERT_TRUE(o) << o.error().what;
                    ASSERT_TRUE(*o);
                    EXPECT_EQ((*trs)->calls(), 1);
                    ParasiteAnswers asked(**trs, **o);
                    EXPECT_TRUE(read_tid_address(t.pid(), asked.in()));
                    EXPECT_TRUE(state::dump_thread_attrs(t.pid(), asked.in()));
                    EXPECT_EQ((*trs)->calls(), 1) << "a question was injected, not answered";
                    ASSERT_TRUE((*trs)->finish());
                }
                for (FrozenTask* t : f->others()) {
                    auto shared = capture_thread(c.pid(), *t, vs, ve, nullptr, &area);
                    ASSERT_TRUE(shared) << shared.error().what;
                    auto own = capture_thread(c.pid(), *t, vs, ve, nullptr, nullptr);
                    ASSERT_TRUE(own) << own.error().what;
                    const int i = int(shared->attrs.timer_slack_ns) - 50000;
                    EXPECT_TRUE(i >= 1 && i <= kThreads) << shared->attrs.timer_slack_ns;
                    EXPECT_EQ(shared->sigstate.altstack_sp, uint64_t(uintptr_t(stacks[i])));
                    EXPECT_EQ(shared->sigstate.altstack_size, MINSIGSTKSZ + 4096 * uint64_t(i));
                    EXPECT_EQ(std::memcmp(&shared->attrs, &own->attrs, sizeof own->attrs), 0);
                    EXPECT_EQ(shared->rec.clear_child_tid, own->rec.clear_child_tid);
                    EXPECT_EQ(shared->sigstate.altstack_sp, own->sigstate.altstack_sp);
                    EXPECT_TRUE(maps_area_at(c.pid(), base));  // still the main thread's
                }
                if (!by_destructor) {
                    ASSERT_TRUE(area.unmap());
                    EXPECT_FALSE(area.mapped());
                    EXPECT_FALSE(maps_area_at(c.pid(), base));
                }
            }
            EXPECT_FALSE(maps_area_at(c.pid(), base));
            ASSERT_TRUE((*rs)->finish());
            ASSERT_TRUE(f->release());
        }).join();
        expect_untouched(c.pid(), 'S');
    }
}

// The parasite's batch answers the kinds' questions (settings, clear_child_tid,
// thread attributes) with what single injected syscalls read, and with no
// injection of its own; without a batch every question is injected.
TEST(RemoteSyscallTest, ParasiteBatchAnswersAsLiveCalls) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    Child c(
        [&] {
            signal(SIGUSR2, SIG_IGN);
            if (prctl(PR_SET_TIMERSLACK, 123457, 0, 0, 0) != 0 ||
                prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 ||
                prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 ||
                prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) != 0 || write(ready[1], "x", 1) != 1)
                _exit(1);
            for (;;) pause();
        },
        {ready[1]});
    ASSERT_TRUE(child_ready(ready, c.pid()));
    std::thread([&] {
        auto t = FrozenTask::freeze(c.pid());
        ASSERT_TRUE(t) << t.error().what;
        auto rs = prepare_remote(**t);
        ASSERT_TRUE(rs) << rs.error().what;
        auto o = run_parasite(**rs);
        ASSERT_TRUE(o) << o.error().what;
        ASSERT_GT(o->batch_count, 0);
        const pid_t pid = c.pid();
        struct Read {
            TaskSettings s;
            uint64_t cctid;
            image::ThreadAttrsRecord attrs;
        };
        auto read_all = [&](const state::InTask& in) -> Read {
            auto s = read_task_settings(pid, in);
            auto cc = read_tid_address(pid, in);
            auto a = state::dump_thread_attrs(pid, in);
            EXPECT_TRUE(s && cc && a);
            if (!s || !cc || !a) return {};
            return {*s, *cc, *a};
        };
        int injected = (*rs)->calls();
        ParasiteAnswers asked(**rs, *o);
        Read batch = read_all(asked.in());
        EXPECT_EQ((*rs)->calls(), injected) << "a question was injected, not answered";
        EXPECT_EQ(asked.answered(), o->batch_count - 1) << "each question but the lock probe";
        EXPECT_EQ(lock_probe_result(*o), 0) << "the task has no mlockall flag";
        Read live = read_all(live_in_task(**rs));
        EXPECT_GT((*rs)->calls(), injected);
        ParasiteOutput none{};
        ParasiteAnswers unanswered(**rs, none);
        Read fallback = read_all(unanswered.in());
        EXPECT_EQ(unanswered.answered(), 0);
        for (const Read* r : {&batch, &fallback}) {
            EXPECT_EQ(r->s.rec.timer_slack_ns, 123457u);
            EXPECT_EQ(r->s.rec.thp_disable, 1u);
            EXPECT_EQ(r->s.rec.child_subreaper, 1u);
            EXPECT_EQ(r->s.rec.dumpable, live.s.rec.dumpable);
            EXPECT_EQ(r->s.rec.membarrier, live.s.rec.membarrier);
            EXPECT_EQ(std::memcmp(&r->s.rec, &live.s.rec, sizeof live.s.rec), 0);
            EXPECT_EQ(r->cctid, live.cctid);
            EXPECT_EQ(r->attrs.timer_slack_ns, 123457u);
            EXPECT_EQ(r->attrs.pdeathsig, SIGUSR2);
            EXPECT_EQ(std::memcmp(&r->attrs, &live.attrs, sizeof live.attrs), 0);
        }
        EXPECT_NE(live.cctid, 0u);  // glibc's set_tid_address
        ASSERT_TRUE((*rs)->finish());
        ASSERT_TRUE((*t)->release());
    }).join();
    expect_untouched(c.pid(), 'S');
}

// The task's fd numbers and what each is (its /proc fd links).
std::vector<std::string> fd_links(pid_t pid) {
    std::vector<std::string> out;
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (!d) return out;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        char link[256];
        ssize_t n = readlink((dir + "/" + e->d_name).c_str(), link, sizeof link);
        out.push_back(std::string(e->d_name) + " " + (n > 0 ? std::string(link, size_t(n)) : ""));
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

// run_batch runs calls alone in the parasite's kept area (one stop), each
// result in its ret; take_task_uffd in that area (a live snapshot's) makes
// the task's userfaultfd and closes it there: the fd taken over is a
// userfaultfd, and the task is left with exactly the fds it had.
TEST(RemoteSyscallTest, BatchesInTheParasiteArea) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    Child c(
        [&] {
            if (write(ready[1], "x", 1) != 1) _exit(1);
            for (;;) pause();
        },
        {ready[1]});
    ASSERT_TRUE(child_ready(ready, c.pid()));
    const auto before = fd_links(c.pid());
    ASSERT_FALSE(before.empty());
    std::thread([&] {
        auto t = FrozenTask::freeze(c.pid());
        ASSERT_TRUE(t) << t.error().what;
        auto rs = prepare_remote(**t);
        ASSERT_TRUE(rs) << rs.error().what;
        ParasiteArea area;
        auto o = run_parasite(**rs, {}, nullptr, &area);
        ASSERT_TRUE(o) << o.error().what;
        ASSERT_TRUE(area.mapped());
        ParasiteOutput::Call calls[] = {
            {SYS_getpid, {}, 0}, {SYS_getppid, {}, 0}, {SYS_close, {uint64_t(-1)}, 0}};
        int injected = (*rs)->calls();
        ASSERT_TRUE(run_batch(**rs, area.base(), calls));
        EXPECT_EQ((*rs)->calls(), injected + 1) << "one run for the three calls";
        EXPECT_EQ(calls[0].ret, c.pid());
        EXPECT_EQ(calls[1].ret, getpid());
        EXPECT_EQ(calls[2].ret, -EBADF);
        EXPECT_FALSE(run_batch(**rs, area.base(), {}));  // nothing to run: refused
        auto fd = take_task_uffd(c.pid(), **rs, kLiveUffdFeatures, 0, &area);
        ASSERT_TRUE(fd) << fd.error().what;
        ASSERT_TRUE(*fd) << "root's task gets a userfaultfd";
        char link[64] = {};
        std::string self = "/proc/self/fd/" + std::to_string(fd->get());
        ASSERT_GT(readlink(self.c_str(), link, sizeof link - 1), 0);
        EXPECT_STREQ(link, "anon_inode:[userfaultfd]");
        EXPECT_EQ(fd_links(c.pid()), before) << "the task's own copy closed";
        ASSERT_TRUE(area.unmap());
        ASSERT_TRUE((*rs)->finish());
        ASSERT_TRUE((*t)->release());
    }).join();
    EXPECT_EQ(fd_links(c.pid()), before);
    expect_untouched(c.pid(), 'S');
}

// mlockall's flags read from the parasite's own area (checkpoint.cc) are the
// ones the probe page of state/mlockall.cc reads, for each setting, whether
// the area lies right below the task's lowest mapping (run_parasite's
// `lowest`, as checkpoint.cc passes it), at its low hint, or (those spots
// taken: the low one, or the one below a mapping that another one abuts)
// where the kernel puts it; and reading them there injects nothing beyond
// the parasite's three calls (four where the spot below was taken: the
// mmap there fails, and the low hint's is made). The batch's lock probe
// (parasite.h) fails for a locked area only, and what it answers is the same.
TEST(RemoteSyscallTest, MlockallFromParasiteAreaAsProbe) {
    enum Place { kHint, kBelowLowest, kBelowAbutted };
    for (Place place : {kHint, kBelowLowest, kBelowAbutted})
        for (bool taken : {false, true})
            for (int flags : {0, MCL_FUTURE, MCL_FUTURE | MCL_ONFAULT}) {
                SCOPED_TRACE(testing::Message()
                             << "place " << place << " flags " << flags << " hint taken " << taken);
                int ready[2];
                ASSERT_EQ(pipe(ready), 0);
                Child c(
                    [&] {
                        // mlockall through syscall(): ASan's mlockall() is a no-op
                        // (ASan CI: both answers 0). The spot the parasite's hint would get
                        // (vm.mmap_min_addr, or the LSM's higher floor), taken.
                        void* low = taken ? mmap(reinterpret_cast<void*>(4096), 4096, PROT_READ,
                                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                                          : nullptr;
                        if (low == MAP_FAILED || (flags && syscall(SYS_mlockall, flags) != 0) ||
                            write(ready[1], &low, sizeof low) != sizeof low)
                            _exit(1);
                        for (;;) pause();
                    },
                    {ready[1]});
                close(ready[1]);
                uint64_t low = 0;
                ASSERT_EQ(read(ready[0], &low, sizeof low), ssize_t(sizeof low));  // 0: child died
                close(ready[0]);
                ASSERT_TRUE(wait_state(c.pid(), 'S'));
                std::string maps_before = read_proc(c.pid(), "maps").value();
                auto maps = parse_maps(maps_before).value();
                ASSERT_FALSE(maps.empty());
                uint64_t lowest = 0;
                if (place == kBelowLowest) lowest = maps.front().start;
                if (place == kBelowAbutted)  // the program's own segments abut
                    for (size_t i = 1; i < maps.size() && !lowest; ++i)
                        if (maps[i].start < maps[i - 1].end + kParasiteAreaBytes)
                            lowest = maps[i].start;
                ASSERT_TRUE(place == kHint || lowest);
                // Right below the lowest mapping; below the taken low spot,
                // that is under vm.mmap_min_addr, which only a task with
                // CAP_SYS_RAWIO may map: there or at the low hint.
                const bool below = place == kBelowLowest && !taken;
                const bool maybe_below = place == kBelowLowest && taken;
                std::thread([&] {
                    auto t = FrozenTask::freeze(c.pid());
                    ASSERT_TRUE(t) << t.error().what;
                    auto rs = prepare_remote(**t);
                    ASSERT_TRUE(rs) << rs.error().what;
                    std::optional<uint32_t> from_area, from_smaps;
                    std::optional<int64_t> lock_probe;
                    uint64_t at = 0;
                    auto o = run_parasite(
                        **rs,
                        [&](uint64_t area, const ParasiteOutput& out) -> Status {
                            at = area;
                            lock_probe = lock_probe_result(out);
                            auto f = state::mlockall_of_area(c.pid(), area, lock_probe);
                            if (!f) return std::unexpected(f.error());
                            from_area = *f;
                            auto s = state::mlockall_of_area(c.pid(), area);  // smaps always
                            if (!s) return std::unexpected(s.error());
                            from_smaps = *s;
                            return {};
                        },
                        nullptr, nullptr, nullptr, lowest);
                    ASSERT_TRUE(o) << o.error().what;
                    ASSERT_TRUE(lock_probe.has_value());
                    EXPECT_EQ(*lock_probe, flags ? -EINVAL : 0);
                    EXPECT_EQ(from_area, from_smaps);
                    const bool was_below = at == lowest - kParasiteAreaBytes;
                    if (below) {
                        EXPECT_TRUE(was_below);
                    }
                    EXPECT_EQ((*rs)->calls(), place == kHint || was_below ? 3 : 4)
                        << "mmap (the one below failed first), run, munmap";
                    // Not taken: below every area of the task (first in smaps).
                    EXPECT_EQ(at < maps.front().start, !taken || (maybe_below && was_below));
                    if (taken) {
                        EXPECT_NE(at, low);
                    }
                    auto probe = state::dump_mlockall(
                        c.pid(), [&](long nr, const std::array<uint64_t, 6>& v) {
                            return (*rs)->call(nr, v[0], v[1], v[2], v[3], v[4], v[5]);
                        });
                    ASSERT_TRUE(probe) << probe.error().what;
                    ASSERT_TRUE(from_area.has_value());
                    EXPECT_EQ(*from_area, uint32_t(flags));
                    EXPECT_EQ(*from_area, *probe);
                    ASSERT_TRUE((*rs)->finish());
                    ASSERT_TRUE((*t)->release());
                }).join();
                expect_untouched(c.pid(), 'S');
                EXPECT_EQ(read_proc(c.pid(), "maps").value(), maps_before);
            }
}

TEST(RemoteSyscallTest, NanosleepRestartsAndEnds) {
    Child c([&] {
        timespec t0, t1, req{1, 0};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = nanosleep(&req, nullptr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r != 0) _exit(10 + (errno & 0x7f));  // EINTR, or 512 (ERESTARTSYS) leaking out
        if (t1.tv_sec - t0.tv_sec < 1 && t1.tv_nsec >= t0.tv_nsec) _exit(2);  // ended early
        _exit(0);
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    for (int round = 0; round < 3; ++round) {
        auto snap = checkpoint_task(c.pid(), c.starttime());
        ASSERT_TRUE(snap) << snap.error().what;
    }
    int st = c.wait_exit();  // returns once the sleep ends
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "2: woke early; 10+errno: nanosleep failed";
}

// A task frozen in pause() with a handler is let go back inside pause()
// (FrozenTask::release follows its restart to the syscall's entry): a signal
// sent after the release, or already pending at it, runs the handler once
// and ends that pause() with EINTR. (Without the follow, a signal the kernel
// delivered between its restart of pause() and the entry ran the handler on
// the restarted registers and pause() was entered again, for good: seen
// under load, fs/live_mount's guard test, session 33.)
std::atomic<int> g_usr1_runs{0};
void count_usr1(int) {
    g_usr1_runs++;
}

TEST(RemoteSyscallTest, ASignalAtTheReleaseEndsPauseWithEintr) {
    for (bool pending_at_release : {false, true}) {
        SCOPED_TRACE(pending_at_release ? "pending at the release" : "sent after it");
        int out[2];
        ASSERT_EQ(pipe(out), 0);
        Child c(
            [&] {
                signal(SIGUSR1, count_usr1);
                int r = pause();
                int e = errno;
                char word[2] = {char(r == -1 && e == EINTR ? 'E' : 'x'), char('0' + g_usr1_runs)};
                if (write(out[1], word, 2) != 2) _exit(1);
                _exit(0);
            },
            {out[1]});
        close(out[1]);
        ASSERT_TRUE(wait_state(c.pid(), 'S'));
        std::thread([&] {
            auto t = FrozenTask::freeze(c.pid());
            ASSERT_TRUE(t) << t.error().what;
            auto rs = prepare_remote(**t);
            ASSERT_TRUE(rs) << rs.error().what;
            auto o = run_parasite(**rs);  // injected code: the hand-back into get_signal
            ASSERT_TRUE(o) << o.error().what;
            ASSERT_TRUE((*rs)->finish());
            if (pending_at_release) {
                ASSERT_EQ(kill(c.pid(), SIGUSR1), 0);
            }
            ASSERT_TRUE((*t)->release());
        }).join();
        if (!pending_at_release) {
            ASSERT_TRUE(wait_state(c.pid(), 'S'));
            ASSERT_EQ(kill(c.pid(), SIGUSR1), 0);
        }
        char word[2] = {};
        ASSERT_EQ(read_bounded(out[0], word, 2), 2u);
        close(out[0]);
        EXPECT_EQ(word[0], 'E') << "pause() did not end with EINTR";
        EXPECT_EQ(word[1], '1') << "the handler's runs";
        int st = c.wait_exit();
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

// The same for a process's threads, which FrozenThreads::release resumes
// towards their syscalls together and then collects one by one: each
// thread's pause() ends with EINTR and runs the handler once, whether the
// signal (sent to that thread alone) was pending at the release or came after.
thread_local int t_usr1_runs = 0;
void count_thread_usr1(int) {
    t_usr1_runs++;
}

TEST(RemoteSyscallTest, ASignalAtTheReleaseEndsEachThreadsPauseWithEintr) {
    constexpr int kOthers = 4;
    int out[2], ready[2];
    ASSERT_EQ(pipe(out), 0);
    ASSERT_EQ(pipe(ready), 0);
    Child c(
        [&] {
            signal(SIGUSR1, count_thread_usr1);
            auto wait_once = [&] {
                if (write(ready[1], "r", 1) != 1) _exit(1);
                int r = pause();
                // 'E': ended with EINTR after one run of the handler
                char word = (r == -1 && errno == EINTR && t_usr1_runs == 1) ? 'E' : 'x';
                if (write(out[1], &word, 1) != 1) _exit(1);
            };
            for (int i = 0; i < kOthers; ++i) std::thread(wait_once).detach();
            wait_once();
            for (;;) pause();  // until the test has every word and kills it
        },
        {out[1], ready[1]});
    close(out[1]);
    close(ready[1]);
    char r[kOthers + 1];
    ASSERT_EQ(read_bounded(ready[0], r, sizeof r), sizeof r);
    close(ready[0]);
    auto tids = list_tids(c.pid());
    ASSERT_TRUE(tids && tids->size() == kOthers + 1);
    for (pid_t tid : *tids) ASSERT_TRUE(wait_state(tid, 'S'));
    std::vector<pid_t> pending_at_release, sent_after;
    for (size_t i = 0; i < tids->size(); ++i)
        ((i % 2) ? pending_at_release : sent_after).push_back((*tids)[i]);
    std::thread([&] {
        auto f = FrozenThreads::freeze(c.pid(), false);
        ASSERT_TRUE(f) << f.error().what;
        auto rs = prepare_remote(f->main());
        ASSERT_TRUE(rs) << rs.error().what;
        auto o = run_parasite(**rs);  // the main thread's hand-back into get_signal
        ASSERT_TRUE(o) << o.error().what;
        ASSERT_TRUE((*rs)->finish());
        auto maps = parse_maps(read_proc(c.pid(), "maps").value()).value();
        uint64_t vs = 0, ve = 0;
        for (auto& m : maps)
            if (m.path == "[vdso]") vs = m.start, ve = m.end;
        for (FrozenTask* t : f->others()) {
            auto th = capture_thread(c.pid(), *t, vs, ve, nullptr, nullptr);
            ASSERT_TRUE(th) << th.error().what;
        }
        for (pid_t tid : pending_at_release)
            ASSERT_EQ(syscall(SYS_tgkill, c.pid(), tid, SIGUSR1), 0);
        ASSERT_TRUE(f->release());
    }).join();
    for (pid_t tid : sent_after) {
        ASSERT_TRUE(wait_state(tid, 'S'));
        ASSERT_EQ(syscall(SYS_tgkill, c.pid(), tid, SIGUSR1), 0);
    }
    char words[kOthers + 1] = {};
    ASSERT_EQ(read_bounded(out[0], words, sizeof words), sizeof words);
    close(out[0]);
    EXPECT_EQ(std::string(words, sizeof words), std::string(kOthers + 1, 'E'))
        << "a pause() did not end with EINTR after one run of its handler";
}

}  // namespace
}  // namespace crfs
