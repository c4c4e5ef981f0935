// The live snapshot (checkpoint/live_snapshot.h) on a task that writes its
// memory all the time: the image is one cut as of the freeze, the task runs
// during the stream, munmap of memory not yet sent fails the image with
// EAGAIN, and a checkpointer killed mid-stream leaves the task running with
// its memory intact. Needs root (a task with CAP_SYS_PTRACE gets a
// userfaultfd that handles kernel-mode faults too).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/aio_abi.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "checkpoint/live_snapshot.h"
#include "checkpoint/task_attrs.h"
#include "common/image_reader.h"
#include "common/io.h"
#include "common/pagemap_scan.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/threads.h"

namespace crfs {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kPages = 16384;  // 64 MiB
constexpr uint64_t kMix = 0x9e3779b97f4a7c15ull;

// The workload: page 0 holds {generation being written, index being
// written, error flag}; pages 1.. hold {generation, generation ^ index * kMix}.
// It rewrites every page with the next generation, in order, forever, and
// checks on the way that each page still held the previous one.
// `pages`: how many of the region's it uses.
[[noreturn]] void workload(char* region, size_t pages = kPages) {
    auto* meta = reinterpret_cast<volatile uint64_t*>(region);
    auto page = [&](size_t i) { return reinterpret_cast<volatile uint64_t*>(region + i * kPage); };
    for (size_t i = 1; i < pages; ++i) {
        page(i)[0] = 0;
        page(i)[1] = i * kMix;
    }
    meta[2] = 0;
    for (uint64_t g = 1;; ++g) {
        meta[0] = g;
        for (size_t i = 1; i < pages; ++i) {
            meta[1] = i;
            if (page(i)[0] != g - 1 || page(i)[1] != ((g - 1) ^ (i * kMix))) meta[2] = 1;
            page(i)[0] = g;
            page(i)[1] = g ^ (i * kMix);
        }
    }
}

uint64_t peek(pid_t pid, const char* addr) {
    uint64_t v = ~0ull;
    iovec local{&v, sizeof v}, remote{const_cast<char*>(addr), sizeof v};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != sizeof v) return ~0ull;
    return v;
}

// Waits (bounded) until `pred` holds.
template <class F>
bool wait_for(F pred) {
    for (int i = 0; i < 30000; ++i) {
        if (pred()) return true;
        usleep(1000);
    }
    return false;
}

// A forked workload with /dev/null on 0-2 and `keep` open; killed and reaped
// at the end.
struct Task {
    char* region = nullptr;
    pid_t pid = -1;
    template <class F>
    explicit Task(F body, std::initializer_list<int> keep = {}) {
        region = static_cast<char*>(mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        pid = fork();
        if (pid == 0) {
            int n = open("/dev/null", O_RDWR);
            dup2(n, 0), dup2(n, 1), dup2(n, 2);
            for (int fd = 3; fd < 1024; ++fd)
                if (std::find(keep.begin(), keep.end(), fd) == keep.end()) close(fd);
            body(region);
            _exit(0);
        }
        munmap(region, kPages * kPage);  // ours; the child has its own at the same address
    }
    ~Task() {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    uint64_t gen() const { return peek(pid, region); }
    uint64_t error_flag() const { return peek(pid, region + 16); }
    uint64_t starttime() const { return read_task_stat(pid).value().starttime; }
};

// Reads all of fd into a string (the stream's other end).
std::string drain(int fd, std::string s = {}) {
    char buf[1 << 16];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        s.append(buf, size_t(n));
    }
    return s;
}

std::string read_some(int fd, size_t want) {
    std::string s;
    char buf[1 << 16];
    while (s.size() < want) {
        ssize_t n = read(fd, buf, std::min(sizeof buf, want - s.size()));
        if (n <= 0) break;
        s.append(buf, size_t(n));
    }
    return s;
}

// A live image written into a pipe by a thread; `out` is the reading end.
struct Streaming {
    std::unique_ptr<ImageSource> img;
    int out = -1;
    Status wrote;
    std::thread writer;
    explicit Streaming(std::unique_ptr<ImageSource> i) : img(std::move(i)) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) abort();
        out = p[0];
        writer = std::thread([this, in = p[1]] {
            wrote = img->write_to(in);
            close(in);
        });
    }
    // The rest of the stream, after `head`; the writer is done then.
    std::string finish(std::string head = {}) {
        head = drain(out, std::move(head));
        writer.join();
        close(out);
        return head;
    }
};

// The whole image of `img`, streamed into `bytes` and decoded with its
// pages' data (a failed stream is its error).
Result<DecodedImage> stream_all(std::unique_ptr<ImageSource> img, std::string& bytes) {
    Streaming s(std::move(img));
    bytes = s.finish();
    if (!s.wrote) return std::unexpected(s.wrote.error());
    MemorySource src(bytes.data(), bytes.size());
    return decode_image(src, {.keep_data = true});
}

// The pages of a task's region in a decoded image: index -> page bytes.
std::map<uint64_t, const char*> region_pages(const DecodedImage& dec, const char* region,
                                             size_t region_pages = kPages) {
    uint64_t base = reinterpret_cast<uint64_t>(region);
    std::map<uint64_t, const char*> pages;
    for (const auto& run : dec.pages)
        for (uint32_t k = 0; k < run.nr_pages; ++k) {
            uint64_t va = run.vaddr + k * kPage;
            if (va >= base && va < base + region_pages * kPage)
                pages[(va - base) / kPage] = run.data.data() + k * kPage;
        }
    return pages;
}

// A live image of `t` (running workload(region, pages)) read while the task
// rewrites every page not yet sent twice: one cut as of the freeze.
void expect_one_cut(const Task& t, size_t npages) {
    ASSERT_TRUE(wait_for([&] { return t.gen() >= 2 && t.gen() != ~0ull; }));
    auto img = checkpoint_task_live(t.pid, t.starttime());
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE((*img)->live()) << "memory was copied while frozen";
    Streaming s(std::move(*img));
    // The stream stalls on the pipe after its first bytes; meanwhile the task
    // rewrites every page twice, so every page not yet sent is written over.
    std::string bytes = read_some(s.out, 1 << 16);
    uint64_t g0 = t.gen();
    bool ran = wait_for([&] { return t.gen() >= g0 + 2 && t.gen() != ~0ull; });
    bytes = s.finish(std::move(bytes));
    ASSERT_TRUE(ran) << "the task did not run during the stream";
    ASSERT_TRUE(s.wrote) << s.wrote.error().what;
    EXPECT_EQ(t.error_flag(), 0u) << "the task saw its memory change under it";

    MemorySource src(bytes.data(), bytes.size());
    auto dec = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(dec) << dec.error().what;
    auto pages = region_pages(*dec, t.region, npages);
    ASSERT_EQ(pages.size(), npages);
    auto word = [&](size_t i, int w) {
        uint64_t v;
        std::memcpy(&v, pages[i] + 8 * w, 8);
        return v;
    };
    uint64_t g = word(0, 0), at = word(0, 1);
    EXPECT_EQ(word(0, 2), 0u);
    ASSERT_GE(g, 2u);
    ASSERT_LT(g, g0 + 2) << "the image is not of the freeze";
    // One cut: generation g below the index being written, g - 1 above it.
    for (size_t i = 1; i < npages; ++i) {
        uint64_t v = word(i, 0);
        uint64_t want = i < at ? g : g - 1;
        if (i == at) {
            ASSERT_TRUE(v == g || v == g - 1) << v;
            continue;
        }
        ASSERT_EQ(v, want) << "page " << i << ", the task was writing page " << at;
        ASSERT_EQ(word(i, 1), v ^ (i * kMix)) << "page " << i;
    }
}

TEST(LiveSnapshot, ImageIsOneCutAtTheFreezeWhileTheTaskWritesOn) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    Task t([](char* r) { workload(r); });
    expect_one_cut(t, kPages);
}

// An area holding less than 2 MiB is registered and write-protected before
// smaps is read, then scanned (checkpoint/live_snapshot.cc, EarlyProtect and
// protect_memory): the same one cut.
TEST(LiveSnapshot, SmallAreaIsOneCutAtTheFreezeWhileTheTaskWritesOn) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    constexpr size_t kSmall = 128;  // 512 KiB
    Task t([](char* r) {
        munmap(r + kSmall * kPage, (kPages - kSmall) * kPage);
        workload(r, kSmall);
    });
    ASSERT_TRUE(wait_for([&] { return t.gen() >= 1 && t.gen() != ~0ull; }));
    auto maps = parse_maps(read_file(strfmt("/proc/{}/maps", t.pid)).value()).value();
    auto area = std::find_if(maps.begin(), maps.end(), [&](const MapsEntry& m) {
        return m.start <= uint64_t(t.region) && uint64_t(t.region) < m.end;
    });
    ASSERT_NE(area, maps.end());
    ASSERT_LT(area->end - area->start, 2u << 20) << "the small area merged with a neighbour";
    expect_one_cut(t, kSmall);
}

// A variable of this process's environment, set for the guard's life.
struct ScopedEnv {
    const char* name;
    ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
    ~ScopedEnv() { unsetenv(name); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
};

// ProtectAhead (checkpoint/live_snapshot.h) tried for a task of any size
// while this lives (CRFS_LIVE_AHEAD_MIN_KIB=0).
struct AheadForAnySize : ScopedEnv {
    AheadForAnySize() : ScopedEnv("CRFS_LIVE_AHEAD_MIN_KIB", "0") {}
};

// The live snapshot's own "uw" registration is not the task's reason (nor
// the one ProtectAhead made before the freeze); a task's own write-protect
// registration still is.
void expect_own_registration_refused() {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    Task t(
        [w = ready[1]](char* r) {
            for (size_t i = 0; i < kPages; ++i) r[i * kPage] = 1;
            int u = int(syscall(SYS_userfaultfd, O_CLOEXEC));
            uffdio_api api{};
            api.api = UFFD_API;
            api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
            uffdio_register reg{};
            reg.range.start = reinterpret_cast<uint64_t>(r);
            reg.range.len = kPages * kPage;
            reg.mode = UFFDIO_REGISTER_MODE_WP;
            char ok =
                u >= 0 && ioctl(u, UFFDIO_API, &api) == 0 && ioctl(u, UFFDIO_REGISTER, &reg) == 0
                    ? 'y'
                    : 'n';
            (void)!write(w, &ok, 1);
            for (;;) pause();
        },
        {ready[1]});
    close(ready[1]);
    char ok = 0;
    ASSERT_EQ(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    ASSERT_EQ(ok, 'y') << "the task could not register its own userfaultfd";
    auto img = checkpoint_task_live(t.pid, t.starttime());
    ASSERT_FALSE(img) << "a task with its own write-protect registration was checkpointed";
    EXPECT_EQ(img.error().code, EBUSY) << img.error().what;
    EXPECT_NE(img.error().what.find("userfaultfd (write-protect)"), std::string::npos)
        << img.error().what;
}

TEST(LiveSnapshot, TasksOwnWriteProtectRegistrationIsStillRefused) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    expect_own_registration_refused();
}

TEST(LiveSnapshot, TasksOwnWriteProtectRegistrationIsStillRefusedWhenProtectedAhead) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AheadForAnySize any;
    expect_own_registration_refused();
}

// Protected ahead of the freeze, the task rewriting every page meanwhile:
// each page loses that protection (its write answered by the ahead fault
// thread) and must be protected again while frozen. One cut, as without.
TEST(LiveSnapshot, ProtectedAheadIsOneCutWhileTheTaskWritesOn) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AheadForAnySize any;
    Task t([](char* r) { workload(r); });
    uint64_t started = ProtectAhead::started();
    expect_one_cut(t, kPages);
    EXPECT_EQ(ProtectAhead::started(), started + 1) << "the memory was not protected ahead";
}

// An idle task protected ahead is stopped once more with nothing injected
// (checkpoint/live_snapshot.cc, the nudge) and sleeps again before the
// freeze: its image holds its memory, and it sleeps on untraced after.
TEST(LiveSnapshot, ProtectedAheadOfASleepingTaskHoldsItsMemory) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AheadForAnySize any;
    Task t([](char* r) {
        for (size_t i = 0; i < kPages; ++i) reinterpret_cast<uint64_t*>(r + i * kPage)[0] = i + 1;
        for (;;) pause();
    });
    ASSERT_TRUE(wait_for([&] {
        auto st = read_task_stat(t.pid);
        return st && st->state == 'S' && peek(t.pid, t.region + (kPages - 1) * kPage) == kPages;
    })) << "the task did not fill its memory";
    uint64_t started = ProtectAhead::started();
    auto img = checkpoint_task_live(t.pid, t.starttime());
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE((*img)->live()) << "memory was copied while frozen";
    EXPECT_EQ(ProtectAhead::started(), started + 1) << "the memory was not protected ahead";
    std::string bytes;
    auto dec = stream_all(std::move(*img), bytes);
    ASSERT_TRUE(dec) << dec.error().what;
    auto pages = region_pages(*dec, t.region);
    ASSERT_EQ(pages.size(), kPages);
    for (size_t i = 0; i < kPages; ++i) {
        uint64_t v;
        std::memcpy(&v, pages[i], 8);
        ASSERT_EQ(v, i + 1) << "page " << i;
    }
    // Asleep again: waited for, as it may still be on its way back into pause().
    EXPECT_TRUE(wait_for([&] {
        auto st = read_task_stat(t.pid);
        return st && st->state == 'S';
    }));
    EXPECT_EQ(read_status(t.pid).value().tracer_pid, 0);
}

// Each thread's rseq area is written by the kernel as the thread returns to
// user mode, which a thread interrupted in pause() does at the thaw, on its
// way back into the syscall: the pages around it are saved and un-protected
// while frozen (LiveMemory::save_ahead), so the thaw waits on no fault. Their
// content is still the freeze's: a thread-local value the task changes after
// the thaw (in a signal handler) is in the image as it was.
// CRFS_LIVE_RSEQ_FAULTS=1: the old path, the faults answered at the thaw.
static __thread volatile uint64_t t_mark = 0;
static volatile uint64_t* g_flags = nullptr;  // the task's region: {ready, handled}

void mark_after_thaw(int) {
    t_mark = 2;
    g_flags[1] = 1;
}

extern "C" unsigned int __rseq_size __attribute__((weak));

TEST(LiveSnapshot, RseqAreasAreSavedWhileFrozenAndHoldTheFreeze) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (&__rseq_size == nullptr || __rseq_size == 0)
        GTEST_SKIP() << "glibc registered no rseq area (glibc.pthread.rseq=0?)";
    for (bool old_path : {true, false}) {
        SCOPED_TRACE(old_path ? "CRFS_LIVE_RSEQ_FAULTS=1" : "saved while frozen");
        std::optional<ScopedEnv> old;
        if (old_path) old.emplace("CRFS_LIVE_RSEQ_FAULTS", "1");
        Task t([](char* r) {
            g_flags = reinterpret_cast<volatile uint64_t*>(r);
            t_mark = 1;
            std::thread([] {
                for (;;) pause();
            }).detach();
            signal(SIGUSR1, mark_after_thaw);
            g_flags[0] = 1;
            for (;;) pause();
        });
        // Both threads asleep in pause(): a thread caught on its way there
        // (just made, not yet run) writes its stack after the thaw, a fault
        // to answer (seen once in CI, under load).
        ASSERT_TRUE(wait_for([&] {
            auto tids = list_tids(t.pid).value_or(std::vector<pid_t>{});
            return peek(t.pid, t.region) == 1 && tids.size() == 2 &&
                   std::ranges::all_of(tids, [](pid_t tid) {
                       auto st = read_task_stat(tid);
                       return st && st->state == 'S';
                   });
        })) << "the task did not start its thread and sleep";
        auto img = checkpoint_task_live(t.pid, t.starttime());
        old.reset();
        ASSERT_TRUE(img) << img.error().what;
        ASSERT_TRUE((*img)->live()) << "memory was copied while frozen";
        // Thawed: both threads went back into pause() through user mode.
        if (old_path) {
            EXPECT_GE((*img)->faults_answered(), 1u) << "no rseq write at the thaw to answer";
            continue;
        }
        EXPECT_EQ((*img)->faults_answered(), 0u);
        kill(t.pid, SIGUSR1);
        ASSERT_TRUE(wait_for([&] { return peek(t.pid, t.region + 8) == 1; }))
            << "the handler did not run";
        std::string bytes;
        auto dec = stream_all(std::move(*img), bytes);
        ASSERT_TRUE(dec) << dec.error().what;
        // The forked task's main thread has this thread's TLS layout.
        const uint64_t mark = reinterpret_cast<uint64_t>(&t_mark);
        bool found = false;
        for (const auto& run : dec->pages)
            if (mark >= run.vaddr && mark + 8 <= run.vaddr + run.nr_pages * kPage) {
                uint64_t v;
                std::memcpy(&v, run.data.data() + (mark - run.vaddr), 8);
                EXPECT_EQ(v, 1u) << "the thread-local value is not the freeze's";
                found = true;
            }
        EXPECT_TRUE(found) << "the main thread's TLS is not in the image";
    }
}

// The task's voluntary context switches so far: one per ptrace stop of a
// task asleep in pause() (each stop puts it to sleep).
uint64_t switches_of(pid_t pid) {
    std::string st = read_proc(pid, "status").value();
    size_t at = st.find("voluntary_ctxt_switches:");
    EXPECT_NE(at, std::string::npos);
    return std::strtoull(st.c_str() + at + 24, nullptr, 10);
}

// The live snapshot's userfaultfd made in the parasite's batch (checkpoint.cc)
// and the remote syscalls stepped (RemoteSyscall::step_calls) stop the task
// fewer times, and it holds the same fds as before the checkpoint: the
// task's copy of the userfaultfd is closed either way.
TEST(LiveSnapshot, UffdInTheParasitesBatchAndSteppedCallsStopTheTaskLess) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    Task t([](char* r) {
        g_flags = reinterpret_cast<volatile uint64_t*>(r);
        g_flags[0] = 1;
        for (;;) pause();
    });
    ASSERT_TRUE(wait_for([&] {
        auto st = read_task_stat(t.pid);
        return peek(t.pid, t.region) == 1 && st && st->state == 'S';
    }));
    auto fds = [&] {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(proc_path(t.pid, "fd")))
            out.push_back(e.path().filename().string() + " " +
                          std::filesystem::read_symlink(e.path()).string());
        std::sort(out.begin(), out.end());
        return out;
    };
    const auto fds_before = fds();
    struct Path {
        const char* name;
        bool two_stops, own_call;
    };
    std::vector<uint64_t> stops;
    for (Path p : {Path{"as before", true, true}, Path{"stepped", false, true},
                   Path{"stepped, uffd in the batch", false, false}}) {
        SCOPED_TRACE(p.name);
        std::optional<ScopedEnv> two, own;
        if (p.two_stops) two.emplace("CRFS_REMOTE_SYSCALL_TWO_STOPS", "1");
        if (p.own_call) own.emplace("CRFS_UFFD_OWN_CALL", "1");
        const uint64_t before = switches_of(t.pid);
        auto img = checkpoint_task_live(t.pid, t.starttime());
        ASSERT_TRUE(img) << img.error().what;
        ASSERT_TRUE((*img)->live()) << "memory was copied while frozen";
        ASSERT_TRUE(wait_for([&] { return read_task_stat(t.pid).value().state == 'S'; }));
        stops.push_back(switches_of(t.pid) - before);
        EXPECT_EQ(fds(), fds_before) << "the task holds other fds while the image lives";
        std::string bytes;
        auto dec = stream_all(std::move(*img), bytes);
        ASSERT_TRUE(dec) << dec.error().what;
        EXPECT_EQ(fds(), fds_before);
    }
    ASSERT_EQ(stops.size(), 3u);
    // Fewer stops each: the mmap's and the munmap's (one each, not two), the
    // stop back into the signal path; then the userfaultfd's own run.
    EXPECT_GT(stops[0], stops[1]) << stops[0] << " " << stops[1];
    EXPECT_GT(stops[1], stops[2]) << stops[1] << " " << stops[2];
    std::printf(
        "task stops per live checkpoint: %llu as before, %llu stepped, %llu with the "
        "uffd in the batch\n",
        (unsigned long long)stops[0], (unsigned long long)stops[1], (unsigned long long)stops[2]);
}

// A thread's stack (8 MiB: protected ahead) takes the scratch of the remote
// syscalls that capture the thread, written by the task's syscalls and back
// by /proc/<pid>/mem (which cannot write a write-protected page): ProtectAhead
// answers those faults until protect_memory protects the pages again. Before
// the fix the thread's capture waited in its fault for good (and the task
// died of SIGSEGV once the checkpoint gave up).
TEST(LiveSnapshot, ProtectedAheadWithAThreadIsOneCutWhileTheTaskWritesOn) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AheadForAnySize any;
    Task t([](char* r) {
        std::thread([] {
            for (;;) pause();
        }).detach();
        workload(r);
    });
    uint64_t started = ProtectAhead::started();
    expect_one_cut(t, kPages);
    EXPECT_EQ(ProtectAhead::started(), started + 1) << "the memory was not protected ahead";
    EXPECT_EQ(read_task_stat(t.pid).value().state != 'Z', true);
}

// A checkpoint refused once the task was frozen (an AIO ring: a reason),
// after its memory was protected ahead: the task runs on, its memory as it
// wrote it, no area left registered.
TEST(LiveSnapshot, RefusedAfterProtectingAheadLeavesTheTaskRunningUnprotected) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AheadForAnySize any;
    Task t([](char* r) {
        aio_context_t ctx = 0;
        if (syscall(SYS_io_setup, 1, &ctx) != 0) _exit(3);
        workload(r);
    });
    ASSERT_TRUE(wait_for([&] { return t.gen() >= 2 && t.gen() != ~0ull; }));
    uint64_t started = ProtectAhead::started();
    auto img = checkpoint_task_live(t.pid, t.starttime());
    ASSERT_FALSE(img) << "a task with an AIO ring was checkpointed";
    EXPECT_EQ(img.error().code, EBUSY) << img.error().what;
    EXPECT_EQ(ProtectAhead::started(), started + 1) << "the memory was not protected ahead";
    uint64_t g0 = t.gen();
    ASSERT_TRUE(wait_for([&] { return t.gen() >= g0 + 2 && t.gen() != ~0ull; }))
        << "the task does not run on";
    EXPECT_EQ(t.error_flag(), 0u) << "the task saw its memory change under it";
    std::string smaps = read_file(strfmt("/proc/{}/smaps", t.pid)).value();
    EXPECT_EQ(smaps.find(" uw"), std::string::npos) << "an area is still registered";
}

// Once the task filled its region and sleeps: a live image of it, streaming,
// stalled after its first bytes (the task thawed, its memory not yet sent).
std::unique_ptr<Streaming> stalled_stream(const Task& t) {
    if (!wait_for([&] {
            auto st = read_task_stat(t.pid);
            uint64_t last = peek(t.pid, t.region + kPages * kPage - 8);
            return st && st->state == 'S' && last != ~0ull && last != 0;
        })) {
        ADD_FAILURE() << "the task did not fill its memory";
        return nullptr;
    }
    auto img = checkpoint_task_live(t.pid, t.starttime());
    if (!img || !(*img)->live()) {
        ADD_FAILURE() << (img ? "memory copied while frozen" : img.error().what);
        return nullptr;
    }
    auto s = std::make_unique<Streaming>(std::move(*img));
    read_some(s->out, 1 << 16);
    return s;
}

volatile sig_atomic_t g_go;
volatile uint64_t g_unmapped;  // set by the task once its munmap returned

// Streams `t`, stalled near its start; sends SIGUSR1 until the task sets
// `*done` (it has taken memory away then: `what`) or exits; expects the image
// to fail with EAGAIN ("open the image again") and the task to run on.
// Whether the task set `*done`.
bool expect_lost_mid_stream(const Task& t, volatile uint64_t* done, const char* what) {
    auto stream = stalled_stream(t);
    if (!stream) return true;  // failed there
    Streaming& s = *stream;
    // Again until it acts: a signal that lands between the thaw and the task
    // re-entering its interrupted pause() runs the handler, then the pause.
    bool acted = wait_for([&] {
        kill(t.pid, SIGUSR1);
        auto st = read_task_stat(t.pid);
        return peek(t.pid, (const char*)done) == 1 || !st || st->state == 'Z';
    });
    s.finish();
    if (!acted) ADD_FAILURE() << "the task did not act: " << what;
    if (peek(t.pid, (const char*)done) != 1) return false;
    const Status& wrote = s.wrote;
    EXPECT_FALSE(wrote) << "an image of memory the task took away before it was sent: " << what;
    if (wrote) return true;
    EXPECT_EQ(wrote.error().code, EAGAIN) << wrote.error().what;
    EXPECT_NE(wrote.error().what.find("open the image again"), std::string::npos)
        << wrote.error().what;
    EXPECT_EQ(kill(t.pid, 0), 0);
    return true;
}

TEST(LiveSnapshot, UnmappingMemoryNotYetSentIsEagainAndTheTaskRunsOn) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    Task t([](char* r) {
        signal(SIGUSR1, [](int) { g_go = 1; });
        memset(r, 7, kPages * kPage);
        while (!g_go) pause();
        munmap(r, kPages * kPage);
        g_unmapped = 1;
        for (;;) pause();
    });
    EXPECT_TRUE(expect_lost_mid_stream(t, &g_unmapped, "munmap"));
}

volatile uint64_t g_guarded;  // set by the task once its guards are in
volatile uint64_t g_moved;    // set by the task once its UFFDIO_MOVE returned

// MADV_GUARD_INSTALL (Linux 6.13) zaps the pages of its range with no
// userfaultfd event: a page not yet sent loses its content as of the freeze.
// A whole area (`small` false: its pages are asked of the page tables as the
// stream goes) then showed those pages as not write-protected, which reads as
// "not in the page tables at the freeze", and sent zeros (a silently wrong
// image). The image must fail with EAGAIN, the task run on.
void guard_mid_stream(bool small) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    if (madvise(nullptr, 0, kMadvGuardInstall) != 0) GTEST_SKIP() << "no MADV_GUARD_INSTALL";
    g_go = 0;
    Task t([small](char* r) {
        signal(SIGUSR1, [](int) { g_go = 1; });
        if (small)  // areas of 64 KiB (under 2 MiB: scanned while frozen), a hole before each
            for (size_t i = 0; i < kPages; i += 32) munmap(r + i * kPage, 16 * kPage);
        for (size_t i = 0; i < kPages; ++i)
            if (!small || i % 32 >= 16) memset(r + i * kPage, 7, kPage);
        while (!g_go) pause();
        // Pages of the last quarter: the stream is stalled near the start.
        for (size_t i = kPages - kPages / 4 + 16; i < kPages; i += 32)
            if (madvise(r + i * kPage, kPage, kMadvGuardInstall) != 0) _exit(3);
        g_guarded = 1;
        for (;;) pause();
    });
    EXPECT_TRUE(expect_lost_mid_stream(t, &g_guarded, "MADV_GUARD_INSTALL"));
}

// UFFDIO_MOVE (Linux 6.8) of the task's own userfaultfd takes a page out of
// an area crfs write-protects with no event to crfs's userfaultfd: the page
// reads as zero after. In small areas (pages found while frozen, streamed
// without asking again) the image held zeros there, and in a whole area (its
// pages asked of the page tables as the stream goes) the page looked "not in
// the page tables at the freeze": zeros too (silently wrong). Now EAGAIN, and
// the task runs on.
void move_mid_stream(bool small) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    g_go = 0;
    g_moved = 0;
    Task t([small](char* r) {
        signal(SIGUSR1, [](int) { g_go = 1; });
        if (small)
            for (size_t i = 0; i < kPages; i += 32) munmap(r + i * kPage, 16 * kPage);
        for (size_t i = 0; i < kPages; ++i)
            if (!small || i % 32 >= 16) memset(r + i * kPage, 7, kPage);
        while (!g_go) pause();
        int u = int(syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
        uffdio_api api{UFFD_API, 1ull << 16 /* UFFD_FEATURE_MOVE */, 0};
        if (u < 0 || ioctl(u, UFFDIO_API, &api) != 0) _exit(4);  // no UFFDIO_MOVE: skipped
        char* dst = static_cast<char*>(
            mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        uffdio_register reg{{uint64_t(dst), kPage}, UFFDIO_REGISTER_MODE_MISSING, 0};
        if (ioctl(u, UFFDIO_REGISTER, &reg) != 0) _exit(5);
        struct {
            uint64_t dst, src, len, mode;
            int64_t move;
        } mv{uint64_t(dst), uint64_t(r + (kPages - 8) * kPage), kPage, 0, 0};
        if (ioctl(u, _IOWR(UFFDIO, 0x05, decltype(mv)), &mv) != 0) _exit(6);  // UFFDIO_MOVE
        g_moved = 1;
        for (;;) pause();
    });
    if (!expect_lost_mid_stream(t, &g_moved, "UFFDIO_MOVE"))
        GTEST_SKIP() << "no UFFDIO_MOVE on this kernel";
}

TEST(LiveSnapshot, PageMovedOutOfSmallAreasMidStreamIsEagain) {
    move_mid_stream(true);
}

TEST(LiveSnapshot, PageMovedOutOfAWholeAreaMidStreamIsEagain) {
    move_mid_stream(false);
}

TEST(LiveSnapshot, GuardOnAWholeAreaMidStreamIsEagain) {
    guard_mid_stream(false);
}

TEST(LiveSnapshot, GuardOnSmallAreasMidStreamIsEagain) {
    guard_mid_stream(true);
}

volatile uint64_t g_filled, g_rewritten;  // set by the task

// A live image of `t` read while the task rewrites its memory: the task sets
// g_filled once its memory is as it is to be at the freeze and sleeps, and on
// SIGUSR1 (sent until it acts) rewrites it, then sets g_rewritten. Of the
// first `npages` pages of its region, each that `existed(i)` at the freeze
// (written with i + 1) must hold that; every other one was first touched
// after the freeze and must be absent or zero.
template <class F>
void expect_freeze_while_rewritten(const Task& t, size_t npages, F existed) {
    ASSERT_TRUE(wait_for([&] {
        auto st = read_task_stat(t.pid);
        return st && st->state == 'S' && peek(t.pid, (const char*)&g_filled) == 1;
    }));
    auto img = checkpoint_task_live(t.pid, t.starttime());
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE((*img)->live()) << "memory was copied while frozen";
    Streaming s(std::move(*img));
    std::string bytes = read_some(s.out, 1 << 16);  // the task thawed, its pages not yet sent
    bool rewrote = wait_for([&] {
        kill(t.pid, SIGUSR1);  // again until it acts (see above)
        return peek(t.pid, (const char*)&g_rewritten) == 1;
    });
    bytes = s.finish(std::move(bytes));
    ASSERT_TRUE(rewrote) << "the task did not write its memory during the read";
    ASSERT_TRUE(s.wrote) << s.wrote.error().what;

    MemorySource src(bytes.data(), bytes.size());
    auto dec = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(dec) << dec.error().what;
    auto pages = region_pages(*dec, t.region, npages);
    for (size_t i = 0; i < npages; ++i) {
        auto it = pages.find(i);
        if (!existed(i)) {
            ASSERT_TRUE(it == pages.end() ||
                        std::all_of(it->second, it->second + kPage, [](char c) { return c == 0; }))
                << "page " << i << " was first touched after the freeze";
            continue;
        }
        ASSERT_NE(it, pages.end()) << "page " << i << " existed at the freeze";
        uint64_t v;
        std::memcpy(&v, it->second, 8);
        ASSERT_EQ(v, i + 1) << "page " << i << " is not as of the freeze";
    }
}

// Private anonymous memory is write-protected whole and which pages existed
// is asked after the thaw (docs/performance.md "Frozen time"): a page the task
// touches first after the freeze was not there at the freeze, so the image
// holds it as zero, never what the task wrote later; the pages that existed
// hold their freeze-instant content although the task rewrote them all.
TEST(LiveSnapshot, PagesFirstTouchedAfterTheFreezeAreZeroInTheImage) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    Task t([](char* r) {
        madvise(r, kPages * kPage, MADV_NOHUGEPAGE);  // one page per fault, not 2 MiB
        signal(SIGUSR1, [](int) { g_go = 1; });
        for (size_t i = 0; i < kPages; i += 2)
            reinterpret_cast<uint64_t*>(r + i * kPage)[0] = i + 1;
        g_filled = 1;
        while (!g_go) pause();
        // The new pages first, then the old ones: the fault on an old page
        // finds its new neighbours already written.
        for (size_t k = 1; k <= 2; ++k)
            for (size_t i = k % 2; i < kPages; i += 2)
                reinterpret_cast<volatile uint64_t*>(r + i * kPage)[0] = (1ull << 32) | i;
        g_rewritten = 1;
        for (;;) pause();
    });
    expect_freeze_while_rewritten(t, kPages, [](size_t i) { return i % 2 == 0; });
}

// Small areas (under 2 MiB) are scanned while frozen and their pages sent
// without a second scan; a whole area is asked after the thaw
// (checkpoint/live_snapshot.h LiveRun). Side by side, with holes between them
// and pages first touched after the freeze in both kinds, while the task
// rewrites everything during the read: each kind holds its pages as of the
// freeze and the new ones as zero. Fails if a whole area is sent without
// asking (its new pages carry what the task wrote later) or if a small
// area's runs are cut wrongly (pages missing).
TEST(LiveSnapshot, SmallAndWholeAreasSideBySideHoldTheFreeze) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    constexpr size_t kWhole = 2048;  // 8 MiB, 4 MiB of it written: protected whole
    constexpr size_t kSmall = 200;   // areas of 3 pages, one hole after each
    constexpr size_t kUsed = kWhole + 1 + kSmall * 4;
    // Pages the task writes before the freeze: the whole area's even pages,
    // the first two of each small area.
    auto before = [](size_t i) { return i < kWhole ? i % 2 == 0 : (i - kWhole - 1) % 4 < 2; };
    auto mapped = [](size_t i) { return i < kWhole || (i > kWhole && (i - kWhole - 1) % 4 < 3); };
    Task t([&](char* r) {
        madvise(r, kPages * kPage, MADV_NOHUGEPAGE);
        signal(SIGUSR1, [](int) { g_go = 1; });
        munmap(r + kUsed * kPage, (kPages - kUsed) * kPage);
        for (size_t i = 0; i < kUsed; ++i)
            if (!mapped(i)) munmap(r + i * kPage, kPage);
        for (size_t i = 0; i < kUsed; ++i)
            if (before(i)) reinterpret_cast<uint64_t*>(r + i * kPage)[0] = i + 1;
        g_filled = 1;
        while (!g_go) pause();
        for (size_t i = 0; i < kUsed; ++i)
            if (mapped(i))
                reinterpret_cast<volatile uint64_t*>(r + i * kPage)[0] = (1ull << 32) | i;
        g_rewritten = 1;
        for (;;) pause();
    });
    expect_freeze_while_rewritten(t, kUsed, before);
}

// The stream reads the task's memory by pid (process_vm_readv): a task that
// runs a new program mid-stream must fail the image, never fill it with the
// new program's memory.
TEST(LiveSnapshot, ExecMidStreamFailsTheImage) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    // The go signal: a file appearing (no fd or signal shared with us).
    struct GoFile {
        char dir[32] = "/tmp/crfs-exec.XXXXXX";
        std::string path = std::string(mkdtemp(dir)) + "/go";
        ~GoFile() { unlink(path.c_str()), rmdir(dir); }
    } gofile;
    const std::string& go = gofile.path;
    Task t([&](char* r) {
        memset(r, 7, kPages * kPage);
        while (access(go.c_str(), F_OK) != 0) usleep(1000);
        // A program whose memory is none of the region's pages.
        execl("/bin/sleep", "sleep", "600", nullptr);
        _exit(127);
    });
    auto stream = stalled_stream(t);
    ASSERT_TRUE(stream);
    Streaming& s = *stream;
    close(open(go.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    bool execd = wait_for([&] {
        auto exe = read_file(strfmt("/proc/{}/comm", t.pid));
        return exe && *exe == "sleep\n";
    });
    s.finish();
    ASSERT_TRUE(execd) << "the task did not exec";
    ASSERT_FALSE(s.wrote) << "an image of a task that ran a new program during the read";
    EXPECT_TRUE(s.wrote.error().code == ESRCH || s.wrote.error().code == EAGAIN)
        << s.wrote.error().what;
    EXPECT_NE(s.wrote.error().what.find("open the image again"), std::string::npos)
        << s.wrote.error().what;
}

// The checkpointer holds the only copy of the task's userfaultfd: killed in
// the middle of the stream, the kernel lets the task go.
TEST(LiveSnapshot, CheckpointerKilledMidStreamLeavesTheTaskRunningAndIntact) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    Task t([](char* r) { workload(r); });
    ASSERT_TRUE(wait_for([&] { return t.gen() >= 2 && t.gen() != ~0ull; }));
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t ckpt = fork();
    if (ckpt == 0) {
        close(p[0]);
        auto img = checkpoint_task_live(t.pid, t.starttime());
        if (!img || !(*img)->live()) _exit(2);
        (void)(*img)->write_to(p[1]);
        _exit(0);
    }
    close(p[1]);
    // Its first bytes: the task is thawed and write-protected, the stream stalled.
    std::string head = read_some(p[0], 1 << 16);
    ASSERT_EQ(head.substr(0, 7), "CRFSIMG");
    kill(ckpt, SIGKILL);
    int st = 0;
    waitpid(ckpt, &st, 0);
    close(p[0]);
    ASSERT_TRUE(WIFSIGNALED(st));
    uint64_t g0 = t.gen();
    EXPECT_TRUE(wait_for([&] { return t.gen() >= g0 + 2 && t.gen() != ~0ull; }))
        << "the task does not run on";
    EXPECT_EQ(t.error_flag(), 0u) << "its memory changed under it";
    EXPECT_EQ(read_tracer_pid(t.pid).value(), 0);
}

}  // namespace
}  // namespace crfs
