// The state registry on real tasks: a child sets one kind of state up, the
// registry must name it; the same child without it has no reason.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <optional>
#include <thread>

#include "crfs/image_format.h"
#include "state/fds.h"
#include "state/fs.h"
#include "state/kcmp_cache.h"
#include "state/kobj.h"
#include "state/pidfd.h"
#include "state/registry.h"
#include "state/thread_attrs.h"
#include "state/timerfd.h"
#include "state/tree_restore.h"
#include "state/tree_share.h"

namespace crfs::state {
namespace {

constexpr int kReadyFd = 1000;

// The test binary's own fds (gtest's pipes, a terminal) would be reasons of
// the child: start from /dev/null only.
void clean_fds();

// A child that runs `setup`, reports ready on a pipe and waits to be killed.
class Child {
  public:
    explicit Child(const std::function<void()>& setup) {
        int p[2];
        EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
        pid_ = fork();
        if (pid_ == 0) {
            // The ready pipe lives above what the setup uses, and is closed
            // before the parent looks (it waits for EOF, not for the byte).
            if (dup3(p[1], kReadyFd, O_CLOEXEC) < 0) _exit(1);
            clean_fds();
            setup();
            char c = 'r';
            if (write(kReadyFd, &c, 1) != 1) _exit(1);
            close(kReadyFd);
            for (;;) pause();
        }
        close(p[1]);
        char c;
        EXPECT_EQ(read(p[0], &c, 1), 1);  // bounded by the child's exit too
        EXPECT_EQ(read(p[0], &c, 1), 0);
        close(p[0]);
    }
    ~Child() {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    pid_t pid() const { return pid_; }

    // The detected reasons, one per line.
    std::string reasons() const {
        auto r = detect_reasons(pid_, getpid());
        EXPECT_TRUE(r) << r.error().what;
        std::string out;
        if (r)
            for (auto& l : *r) out += l + "\n";
        return out;
    }

  private:
    pid_t pid_;
};

void clean_fds() {
    int n = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) dup2(n, fd);
    if (n > 2) close(n);
    close_range(3, kReadyFd - 1, 0);
    close_range(kReadyFd + 1, ~0u, 0);
    // Each dup of /dev/null shares one description: give each its own.
    for (int fd = 0; fd < 3; ++fd) {
        int x = open("/dev/null", O_RDWR);
        dup2(x, fd);
        close(x);
    }
}

TEST(Registry, PlainTaskHasNoReason) {
    Child c([] {});
    EXPECT_EQ(c.reasons(), "");
}

TEST(Registry, EachKindNamesItsState) {
    struct Case {
        const char* what;
        std::function<void()> setup;
        const char* expect;
    };
    Case cases[] = {
        {"inotify", [] { inotify_add_watch(inotify_init1(0), "/usr/share", IN_CREATE); },
         "fd 3: inotify watch 1 on inode "},
        {"userfaultfd", [] { syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */); },
         "fd 3: userfaultfd not supported yet"},
        {"pipe",  // a read end alone is restored (its write end closed everywhere)
         [] {
             int p[2];
             (void)!pipe(p);
             close(p[0]);
         },
         "(write end): its read end is not open in this task"},
        {"dup of a refused kind",  // refused through its kind, for each fd holding it
         [] {
             syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */);
             dup(3);
         },
         "fd 4: userfaultfd not supported yet"},
        {"O_PATH in /proc", [] { open("/proc/self/status", O_PATH); },
         "fd 3: O_PATH descriptor of a file in /proc /proc/"},
        {"nsfs", [] { open("/proc/self/ns/net", O_RDONLY); }, "fd 3: file without a path net:["},
        {"tty", [] { open("/dev/ptmx", O_RDWR); },
         "fd 3: terminal /dev/ptmx (5:2: a pseudo-terminal master) not supported yet"},
        // fid-exact: locks on regular files and timers signalling the task are
        // captured (state/locks.cc, timers.cc); these variants are not.
        {"flock on a directory", [] { flock(open("/usr/share", O_RDONLY), LOCK_SH); },
         "fd 3: holds a file lock on a file that is not a regular file"},
        {"timer to an exited thread",  // timer: one to a live thread is restored
         [] {
             std::thread([] {
                 timer_t t;
                 sigevent ev{};
                 ev.sigev_notify = SIGEV_THREAD_ID;
                 ev.sigev_signo = SIGUSR1;
                 ev._sigev_un._tid = int(syscall(SYS_gettid));
                 timer_create(CLOCK_MONOTONIC, &ev, &t);
             }).join();
         },
         "timers: POSIX timer 0 signalling thread "},
        {"madvise",
         [] {
             void* p =
                 mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
             madvise(p, 8192, MADV_SEQUENTIAL);
         },
         "is MADV_SEQUENTIAL not supported yet"},
        {"guard",
         [] {
             char* p = static_cast<char*>(mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE,
                                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
             madvise(p + 4096, 4096, 102 /* MADV_GUARD_INSTALL */);
         },
         "is guard regions (MADV_GUARD_INSTALL)"},
        {"child",
         [] {
             // trees: inherited descriptions are restored shared (state/tree_share.h);
             // one deleted directory opened by each process separately is too (at an
             // offset: opened and seeked before the rmdir, share39, O_NOFOLLOW too:
             // fdshare), but not at offset 0 with a flag an open through
             // /proc/self/fd cannot give (O_NOFOLLOW).
             char dir[] = "/tmp/crfs-s12mq-XXXXXX";
             if (!mkdtemp(dir)) return;
             int fd = open(dir, O_RDONLY | O_DIRECTORY);
             int done[2];
             if (pipe(done) != 0) return;
             if (fork() == 0) {
                 prctl(PR_SET_PDEATHSIG, SIGKILL);
                 close(kReadyFd);
                 int again = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);  // at offset 0
                 close(fd);
                 close(done[0]);
                 close(done[1]);
                 for (;;) pause();
                 (void)again;
             }
             close(done[1]);
             char c;
             (void)!read(done[0], &c, 1);  // end of file: the child opened it
             close(done[0]);
             rmdir(dir);
         },
         "opened separately by two processes of the tree"},
        {"memfd", [] { memfd_create("probe", MFD_HUGETLB); },
         "fd 3: memfd:probe on hugetlbfs (MFD_HUGETLB)"},
    };
    for (auto& k : cases) {
        Child c(k.setup);
        EXPECT_NE(c.reasons().find(k.expect), std::string::npos) << k.what << ": " << c.reasons();
    }
}

// fidelity: settings the settings record restores exactly are no reason.
TEST(Registry, RestoredSettingsAreNoReason) {
    Child c([] {
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
        prctl(PR_SET_TIMERSLACK, 12345);
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        sched_param p{};
        sched_setscheduler(0, SCHED_BATCH, &p);
    });
    EXPECT_EQ(c.reasons(), "");
}

// Fds sharing a description of a kind crfs captures are saved once and
// restored by dup: no reason (`prog >log 2>&1`, `</dev/null >/dev/null`).
TEST(Registry, SharedDescriptionsOfCapturedKindsAreNoReason) {
    Child c([] {
        int n = open("/dev/null", O_RDWR);
        dup2(n, 0), dup2(n, 1), dup2(n, 2);
        close(n);
        open("/etc/passwd", O_RDONLY);  // 3
        dup(3);                         // 4
    });
    EXPECT_EQ(c.reasons(), "");
}

// The one grouping (state/fds.h): each fd names the lowest fd of its
// description; another open of the same file is another description.
TEST(Registry, DescriptionGroupsNameTheLowestFd) {
    int a = open("/etc/passwd", O_RDONLY);
    int b = open("/etc/passwd", O_RDONLY);
    int a2 = dup(a), b2 = dup(b), a3 = dup(a);
    ASSERT_GE(a3, 0);
    std::vector<state::FdIdentity> ids;
    for (int fd : {a, b, a2, b2, a3}) {
        struct stat st;
        ASSERT_EQ(fstat(fd, &st), 0);
        ids.push_back({fd, st.st_dev, st.st_ino});
    }
    auto g = state::description_groups(getpid(), ids);
    ASSERT_TRUE(g) << g.error().what;
    EXPECT_EQ(*g, (std::vector<int>{-1, -1, a, b, a}));
    for (int fd : {a, b, a2, b2, a3}) close(fd);
}

// fifo (state/tree_share.h): a FIFO two members opened separately is each
// one's own description, the later one joining the first's bytes; a dup of
// the first's is that description given; two descriptions of one end of an
// anonymous pipe stay a reason. (Both "members" are this process: kcmp of its
// own fds tells descriptions apart as between two processes.)
TEST(TreeShare, AFifoOpenedByTwoMembersJoinsTheFirstsBytes) {
    char dir[] = "/tmp/crfs-fifo-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    std::string path = std::string(dir) + "/p";
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    int r = open(path.c_str(), O_RDONLY | O_NONBLOCK), w = open(path.c_str(), O_WRONLY);
    int r2 = dup(r), p[2];
    ASSERT_GE(r2, 0);
    ASSERT_EQ(pipe(p), 0);
    int p0b = open(("/proc/self/fd/" + std::to_string(p[0])).c_str(), O_RDONLY);
    ASSERT_GE(p0b, 0);
    auto one = [](int fd, uint32_t acc, bool fifo, bool pipe) {
        struct stat st;
        EXPECT_EQ(fstat(fd, &st), 0);
        return MemberFd{fd, st.st_dev, st.st_ino, acc, pipe, fifo, false, 0};
    };
    pid_t me = getpid();
    std::vector<pid_t> pids{me, me, me};
    std::vector<std::vector<MemberFd>> fds{{one(r, O_RDONLY, true, false)},
                                           {one(w, O_WRONLY, true, false)},
                                           {one(r2, O_RDONLY, true, false)}};
    std::vector<ShareRef> refs;
    Reasons why;
    classify_sharing(pids, fds, refs, why);
    EXPECT_TRUE(why.empty()) << why.front();
    ASSERT_EQ(refs.size(), 2u);
    EXPECT_EQ(refs[0].member, 1u);
    EXPECT_EQ(refs[0].end, kShareFifoJoin);
    EXPECT_EQ(refs[0].owner, 0u);
    EXPECT_EQ(refs[0].owner_fd, r);
    EXPECT_EQ(refs[1].member, 2u);  // the first's own description, given
    EXPECT_EQ(refs[1].end, image::kShareSame);
    EXPECT_EQ(refs[1].owner_fd, r);

    std::vector<std::vector<MemberFd>> ends{{one(p[0], O_RDONLY, false, true)},
                                            {one(p0b, O_RDONLY, false, true)}};
    refs.clear();
    classify_sharing(std::span(pids).first(2), ends, refs, why);
    ASSERT_EQ(why.size(), 1u);
    EXPECT_NE(why[0].find("two open file descriptions of one end of a pipe"), std::string::npos)
        << why[0];
    for (int fd : {r, w, r2, p[0], p[1], p0b}) close(fd);
    unlink(path.c_str());
    rmdir(dir);
}

// perf (classify_sharing's index of the first holder of each description):
// 16 members each holding one fd of one file, enough that the descriptions
// are sorted; members 0-2 open three descriptions, each later member either
// holds a dup of one of them (a ref to its first holder) or opens its own
// (no ref). (All "members" are this process, as above.)
TEST(TreeShare, ManyMembersOfOneFileFindTheFirstHolderOfTheirDescription) {
    int first[3];
    for (int& fd : first) ASSERT_GE(fd = open("/etc/passwd", O_RDONLY), 0);
    std::vector<int> fds_held;
    std::vector<std::vector<MemberFd>> fds;
    std::vector<ShareRef> want;
    for (size_t m = 0; m < 16; ++m) {
        int fd = m < 3 ? first[m] : m % 4 == 3 ? open("/etc/passwd", O_RDONLY) : dup(first[m % 4]);
        ASSERT_GE(fd, 0);
        if (m >= 3) fds_held.push_back(fd);
        struct stat st;
        ASSERT_EQ(fstat(fd, &st), 0);
        MemberFd f{fd, st.st_dev, st.st_ino, O_RDONLY};
        f.reopenable = true;
        fds.push_back({f});
        if (m >= 3 && m % 4 != 3) want.push_back({m, fd, m % 4, first[m % 4], image::kShareSame});
    }
    std::vector<pid_t> pids(16, getpid());
    std::vector<ShareRef> refs;
    Reasons why;
    KcmpCache kcmp;
    classify_sharing(pids, fds, refs, why, &kcmp);
    EXPECT_TRUE(why.empty()) << why.front();
    ASSERT_EQ(refs.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(refs[i].member, want[i].member) << i;
        EXPECT_EQ(refs[i].fd, want[i].fd) << i;
        EXPECT_EQ(refs[i].owner, want[i].owner) << i;
        EXPECT_EQ(refs[i].owner_fd, want[i].owner_fd) << i;
        EXPECT_EQ(refs[i].end, want[i].end) << i;
    }
    // Sorted (about n log2 n questions, not 120 pairs): the index was used.
    EXPECT_LT(kcmp.calls(), 80u);
    for (int fd : first) close(fd);
    for (int fd : fds_held) close(fd);
}

// A name the task chose cannot forge a second reason line.
TEST(Registry, ControlCharactersAreEscaped) {
    Child c([] { memfd_create("a\nnocr: forged", MFD_HUGETLB); });
    EXPECT_NE(c.reasons().find("fd 3: memfd:a\\nnocr: forged"), std::string::npos) << c.reasons();
    EXPECT_EQ(c.reasons().find("\nnocr:"), std::string::npos) << c.reasons();
}

// Reasons are recomputed on every call: close the userfaultfd and its reason is gone.
TEST(Registry, AReasonGoesAwayWithItsCause) {
    Child c([] {
        syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */);  // fd 3
        signal(SIGUSR1, [](int) { close(3); });
    });
    EXPECT_NE(c.reasons().find("fd 3: userfaultfd"), std::string::npos) << c.reasons();
    ASSERT_EQ(kill(c.pid(), SIGUSR1), 0);
    std::string now;
    for (int i = 0; i < 5000 && !(now = c.reasons()).empty(); ++i) usleep(1000);  // bounded
    EXPECT_EQ(now, "");
}

TEST(Registry, GoneTaskIsEsrch) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
    auto r = detect_reasons(pid, getpid());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ESRCH);
}

// A kernel without CONFIG_BLOCK has no I/O priorities: ioprio_get is ENOSYS
// there, and the task has none (0), the only value; any other failure is still
// an error naming the syscall and the thread.
// A thread that answers PR_GET_TIMERSLACK 50000, `answer` for what it gives,
// 0 to the rest, and zeros from its scratch.
InTask fake_thread(std::function<std::optional<int64_t>(long nr, uint64_t a1)> answer) {
    InTask in;
    in.call = [answer](long nr, uint64_t a1, uint64_t) -> Result<int64_t> {
        if (auto v = answer(nr, a1)) return *v;
        if (nr == SYS_prctl && a1 == PR_GET_TIMERSLACK) return 50000;
        return 0;
    };
    in.read_scratch = [](void* out, size_t len) -> Status {
        std::memset(out, 0, len);
        return {};
    };
    return in;
}

TEST(ThreadAttrs, IoprioGetEnosysIsNoneOtherErrorsFail) {
    int ioprio_errno = ENOSYS;
    InTask in = fake_thread([&](long nr, uint64_t) -> std::optional<int64_t> {
        if (nr == SYS_ioprio_get) return -ioprio_errno;
        return std::nullopt;
    });
    auto r = dump_thread_attrs(4242, in);
    ASSERT_TRUE(r) << r.error().what;
    EXPECT_EQ(r->ioprio, 0u);
    EXPECT_EQ(r->timer_slack_ns, 50000u);
    ioprio_errno = EPERM;
    r = dump_thread_attrs(4242, in);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPERM);
    EXPECT_NE(r.error().what.find("ioprio_get in thread 4242"), std::string::npos)
        << r.error().what;
}

// fid: a thread's securebits are its own answer to PR_GET_SECUREBITS (asked
// in the thread, as the parasite's batch does), kept whole.
TEST(ThreadAttrs, SecurebitsAreTheThreadsOwnAnswer) {
    InTask in = fake_thread([](long nr, uint64_t a1) -> std::optional<int64_t> {
        if (nr == SYS_prctl && a1 == PR_GET_SECUREBITS) return 0x43;
        return std::nullopt;
    });
    auto r = dump_thread_attrs(4242, in);
    ASSERT_TRUE(r) << r.error().what;
    EXPECT_EQ(r->securebits, 0x43u);
}

// pidfd2 (state/pidfd.cc check): a hostile image's pidfd-target. The tree:
// 100 -> {101 -> {103, 104}, 102}; the holder is 102 (or 104). A sibling (101) and a nephew
// (103) are restored (the target's parent opens them after its clone); the
// holder itself, a pid outside the image, and a target made after another's
// fds (a share-task record on its way up, or its parent sharing an fd table)
// are refused.
TEST(Pidfd, ATargetIsAnyMemberClonedBeforeAnyFds) {
    auto check = [](pid_t target, std::vector<std::pair<uint32_t, image::ShareTaskRecord>> share,
                    pid_t holder = 102) {
        DecodedImage img;
        img.header.version = 12;
        img.task.pid = holder;
        for (auto [pid, ppid] : {std::pair{100, 1}, {101, 100}, {102, 100}, {103, 101}, {104, 101}})
            img.processes.push_back({pid, ppid, 100, 100, 0, 0});
        img.share_tasks = std::move(share);
        FdEntry f;
        f.rec = {};
        f.rec.fd = 3;
        f.rec.kind = uint32_t(image::FdKind::kPidfd);
        f.kobj.push_back(
            kobj_record(image::RecordType::kPidfdTarget, image::PidfdTargetRecord{3, target}));
        auto r = kobj_check(f, img);
        return r ? std::string() : r.error().what;
    };
    EXPECT_EQ(check(101, {}), "");  // an earlier sibling
    EXPECT_EQ(check(103, {}), "");  // a nephew
    EXPECT_EQ(check(100, {}), "");  // its parent
    EXPECT_NE(check(102, {}).find("pidfd of pid 102, not another process"), std::string::npos);
    EXPECT_NE(check(1, {}).find("pidfd of pid 1, not another process"), std::string::npos);
    EXPECT_NE(check(103, {{1, {100, 0, 0, 0}}}).find("made after another process's fds"),
              std::string::npos);  // 101 shares 100's fd table: made after 100's fds
    EXPECT_NE(check(103, {{3, {0, 101, 0, 0}}}).find("made after another process's fds"),
              std::string::npos);  // 103 shares 101's cwd
    EXPECT_NE(check(101, {{1, {100, 0, 0, 0}}}).find("made after another process's fds"),
              std::string::npos);
    EXPECT_EQ(check(103, {}, 104), "");  // its sibling, under 101
    EXPECT_NE(check(103, {{1, {100, 0, 0, 0}}}, 104).find("made by a process that shares an fd"),
              std::string::npos);  // its cloner 101 shares 100's fd table
}

// thpidfd (state/pidfd.cc check_thread, tree_pidfd_plan): a PIDFD_THREAD
// pidfd-target that is no process of the image. A single task's must be one
// of its threads; a tree member's is found among the members' threads once
// every member is planned (before any process is made): a tid of a process
// outside, or of none, is refused then. thpidfd2: an epoll watch of it is
// the blob's (stage 1 leaves it out), after its pidfds.
TEST(Pidfd, AThreadTargetIsAThreadOfAMemberOfTheTree) {
    auto image = [](bool tree, int32_t tid) {
        DecodedImage img;
        img.header.version = 12;
        img.task.pid = 100;
        ThreadImage t;
        t.rec.tid = 101;
        img.threads.push_back(t);
        if (tree)
            for (auto [pid, ppid] : {std::pair{100, 1}, {102, 100}})
                img.processes.push_back({pid, ppid, 100, 100, 0, 0});
        FdEntry f;
        f.rec = {};
        f.rec.fd = 3;
        f.rec.kind = uint32_t(image::FdKind::kPidfd);
        f.rec.open_flags = O_EXCL;  // PIDFD_THREAD
        f.kobj.push_back(
            kobj_record(image::RecordType::kPidfdTarget, image::PidfdTargetRecord{3, tid}));
        img.fds.push_back(f);
        return img;
    };
    auto check = [](const DecodedImage& img) {
        auto r = kobj_check(img.fds[0], img);
        return r ? std::string() : r.error().what;
    };
    EXPECT_EQ(check(image(false, 101)), "");  // its own thread
    EXPECT_NE(check(image(false, 555)).find("pidfd of thread 555, not a thread of this task"),
              std::string::npos);
    EXPECT_EQ(check(image(true, 555)), "");  // a tree: tree_pidfd_plan decides
    auto watched = image(false, 101);
    FdEntry ep;
    ep.rec = {};
    ep.rec.fd = 4;
    ep.rec.kind = uint32_t(image::FdKind::kEpoll);
    ep.kobj.push_back(
        kobj_record(image::RecordType::kEpollWatch, image::EpollWatchRecord{4, 3, 1, 0, 0}));
    watched.fds.push_back(ep);
    EXPECT_EQ(check(watched), "");
    {
        FdPlan wfds;
        FdAction pa, ea;
        pa.target = 3;
        ASSERT_TRUE(kobj_plan(watched.fds[0], pa.kobj));
        ea.target = 4;
        ASSERT_TRUE(kobj_plan(watched.fds[1], ea.kobj));
        ea.kobj.watches.push_back({7, 4, 9});  // another fd's: stage 1's
        wfds.actions = {pa, ea};
        auto planned = plan_thread_pidfds(watched, wfds, nullptr);
        ASSERT_TRUE(planned);
        ASSERT_EQ(planned->size(), 2u);  // the pidfd, then its watch
        EXPECT_EQ((*planned)[1].epfd, 4);
        EXPECT_EQ((*planned)[1].fd, 3);
        EXPECT_EQ((*planned)[1].events, 1u);
        ASSERT_EQ(wfds.actions[1].kobj.watches.size(), 1u);
        EXPECT_EQ(wfds.actions[1].kobj.watches[0].tfd, 7);
    }

    // The tree 100 (threads 101) -> 102; 102 holds fd 3, a pidfd of `tid`.
    auto plan = [&](int32_t tid) {
        auto parent = image(true, 101), holder = image(true, tid);
        holder.task.pid = 102;
        holder.threads.clear();
        FdPlan hfds, pfds;
        FdAction a;
        a.target = 3;
        a.cloexec = true;
        ASSERT_TRUE(kobj_plan(holder.fds[0], a.kobj));
        hfds.actions.push_back(a);
        FdAction dup;
        dup.target = 5;
        dup.same_as = 3;
        hfds.actions.push_back(dup);
        TreeRestore tree;
        tree.members.resize(2);
        EXPECT_FALSE(plan_thread_pidfds(holder, hfds, nullptr));  // not a tree: refused
        auto planned = plan_thread_pidfds(holder, hfds, &tree, 1);
        ASSERT_TRUE(planned);
        auto& list = *planned;
        EXPECT_EQ(list.size(), 2u);  // it, then its dup
        if (list.size() == 2) {
            EXPECT_EQ(list[0].fd, 3);
            EXPECT_EQ(list[0].tid, tid);
            EXPECT_EQ(list[0].wait, 1);
            EXPECT_EQ(list[1].dup_of, 3);
        }
        crfs_restorer_args args{};
        tree.members[0].pid = 100;
        tree.members[0].img = &parent;
        tree.members[0].fds = &pfds;
        tree.members[0].min_fd = 10;
        tree.members[0].args = &args;
        tree.members[1].pid = 102;
        tree.members[1].parent = 0;
        tree.members[1].img = &holder;
        tree.members[1].fds = &hfds;
        tree.members[1].min_fd = 10;
        auto r = tree_pidfd_plan(tree);
        if (tid == 101) {
            EXPECT_TRUE(r) << r.error().what;
            EXPECT_EQ(args.has_threads_made, 1);  // 100's blob closes its pipe's end
            EXPECT_EQ(tree.members[0].share_keep,
                      std::vector<int>{args.threads_made_fd});  // kept in its stage 1
            EXPECT_EQ(tree.members[1].share_keep, std::vector<int>{int(hfds.actions[0].kobj.n[1])});
        } else {
            ASSERT_FALSE(r);
            EXPECT_NE(r.error().what.find("fd 3: pidfd of thread " + std::to_string(tid) +
                                          ", not a thread of a process of the tree"),
                      std::string::npos)
                << r.error().what;
            EXPECT_EQ(args.has_threads_made, 0);
        }
    };
    plan(101);
    plan(1);                  // a process outside
    plan(int32_t(getpid()));  // this test: a process outside
}

// thpidfd2 (state/pidfd.cc plan_taken): a later member given the description
// of an earlier member's pidfd of a thread (a share-fd record: a fork after
// the pidfd_open) gets a placeholder, the receiving end of a channel the
// giver's blob sends it on once per taker (its entry's give and gives); a
// record naming it as another end, or with other open flags, is refused.
TEST(Pidfd, AThreadPidfdGivenToALaterMemberIsSentByTheGiversBlob) {
    auto run = [](uint32_t end, uint32_t flags) -> std::string {
        DecodedImage giver, taker;
        giver.task.pid = 100;
        taker.task.pid = 102;
        FdEntry g;
        g.rec = {};
        g.rec.fd = 3;
        g.rec.kind = uint32_t(image::FdKind::kPidfd);
        g.rec.open_flags = O_RDWR | O_EXCL;
        giver.fds.push_back(g);
        FdEntry t;
        t.rec = {};
        t.rec.fd = 3;
        t.rec.kind = uint32_t(image::FdKind::kShared);
        t.rec.open_flags = flags;
        t.kobj.push_back(
            kobj_record(image::RecordType::kShareFd, image::ShareFdRecord{3, 0, 3, end}));
        taker.fds.push_back(t);
        FdPlan gfds, tfds;
        FdAction ga;
        ga.target = 3;
        ga.kobj.kind = uint32_t(image::FdKind::kPidfd);
        ga.kobj.n[0] = 101;
        ga.kobj.n[2] = 1;  // kOwnThread: plan_thread_pidfds marked it
        gfds.actions.push_back(ga);
        FdAction ta;
        ta.target = 3;
        ta.shared = true;
        ta.cloexec = true;
        tfds.actions.push_back(ta);
        FdAction dup;
        dup.target = 6;
        dup.same_as = 3;
        tfds.actions.push_back(dup);
        tfds.min_fd = 900;
        crfs_ra_thread_pidfd entries[1] = {};
        entries[0].fd = 3;
        entries[0].tid = 101;
        entries[0].flags = O_EXCL;
        entries[0].dup_of = entries[0].give = entries[0].epfd = -1;
        crfs_restorer_args args{};
        args.thread_pidfds = reinterpret_cast<uint64_t>(entries);
        args.nr_thread_pidfds = 1;
        TreeRestore tree;
        tree.members.resize(2);
        tree.members[0].pid = 100;
        tree.members[0].img = &giver;
        tree.members[0].fds = &gfds;
        tree.members[0].min_fd = 800;
        tree.members[0].args = &args;
        tree.members[1].pid = 102;
        auto planned = plan_thread_pidfds(taker, tfds, &tree, 1);
        if (!planned) return planned.error().what;
        EXPECT_EQ(planned->size(), 2u);  // received, then its dup
        if (planned->size() != 2) return "size";
        EXPECT_EQ((*planned)[0].recv, 1);
        EXPECT_EQ((*planned)[0].tid, 101);
        EXPECT_EQ((*planned)[1].dup_of, 3);
        EXPECT_FALSE(tfds.actions[0].shared);  // no stage 1 hand-over of the placeholder
        int take = int(tfds.actions[0].kobj.n[1]);
        EXPECT_GE(take, 900);
        EXPECT_EQ(tree.members[1].share_keep, std::vector<int>{take});
        EXPECT_GE(entries[0].give, 800);  // the giver's blob sends on it, once
        EXPECT_EQ(entries[0].gives, 1u);
        EXPECT_EQ(tree.members[0].share_keep, std::vector<int>{entries[0].give});
        return "";
    };
    EXPECT_EQ(run(image::kShareSame, O_RDWR | O_EXCL), "");
    EXPECT_NE(run(image::kShareReadEnd, O_RDWR | O_EXCL).find("as share end 1"), std::string::npos);
    EXPECT_NE(run(image::kShareSame, O_RDWR | O_EXCL | O_NONBLOCK).find("not one description"),
              std::string::npos);
}

// A removed directory `dir` and a second description `early` of it, read
// before the rmdir (at `pos`): what a first holder's plan makes; `other`
// another removed directory.
struct RemovedWithEarly {
    std::string path;
    UniqueFd dir, early, other;
    off_t pos = 0;
};
void removed_with_early(const char* prefix, RemovedWithEarly& r) {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    r.path = tmpl + "/gone";
    std::string other = tmpl + "/other";
    ASSERT_EQ(mkdir(r.path.c_str(), 0700), 0);
    ASSERT_EQ(mkdir(other.c_str(), 0700), 0);
    r.dir.reset(open(r.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    r.early.reset(open(r.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    r.other.reset(open(other.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    char buf[4096];
    ASSERT_GT(syscall(SYS_getdents64, r.early.get(), buf, sizeof buf), 0);
    r.pos = lseek(r.early.get(), 0, SEEK_CUR);
    ASSERT_GT(r.pos, 0);
    ASSERT_EQ(rmdir(r.path.c_str()), 0);
    ASSERT_EQ(rmdir(other.c_str()), 0);
    ASSERT_EQ(rmdir(tmpl.c_str()), 0);
}

// A tree of two: process 100 (`parent`, its plan `pfds`) whose removed cwd
// `path` of mode `mode` is the daemon's fd `dir`, and its child 101.
void cwd_holder_tree(TreeRestore& tree, DecodedImage& parent, FdPlan& pfds, const std::string& path,
                     uint32_t mode, int dir) {
    parent.cwd = path;
    parent.deleted_cwd = image::DeletedCwdRecord{mode, -1, 0, 0};
    tree.members.resize(2);
    tree.members[0].pid = 100;
    tree.members[0].img = &parent;
    tree.members[0].fds = &pfds;
    tree.members[0].removed_cwd = dir;
    tree.members[1].pid = 101;
    tree.members[1].parent = 0;
}

// cwdoffset (state/fs_tree.cc): a later member's kind 43 description at an
// offset is the one the first holder's plan opened with its directory before
// the rmdir (early_descs), taken only when it is that directory's inode
// with the record's flags and offset; one none was opened for is a bad image.
TEST(FsTree, LaterDescriptionAtAnOffsetIsTheFirstHoldersEarlyOne) {
    RemovedWithEarly r;
    ASSERT_NO_FATAL_FAILURE(removed_with_early("crfs-cwdoffset", r));
    const std::string& path = r.path;
    const UniqueFd &dir = r.dir, &early = r.early;
    off_t pos = r.pos;
    struct stat st {};
    ASSERT_EQ(fstat(dir.get(), &st), 0);

    DecodedImage parent, child;
    FdPlan pfds;
    crfs::TreeRestore tree;
    cwd_holder_tree(tree, parent, pfds, path, st.st_mode, dir.get());
    tree.members[0].early_descs = {{1, 3, early.get()}};
    FdEntry e;
    e.path = path;
    e.rec.fd = 3;
    e.rec.same_as = -1;
    e.rec.kind = uint32_t(image::FdKind::kTreeCwdDir);
    e.rec.rdev = 0;
    e.rec.mode = st.st_mode;
    e.rec.open_flags = O_DIRECTORY;
    e.rec.pos = uint64_t(pos);
    auto plan = [&](const FdEntry& f) {
        child.fds = {f};
        FdPlan cfds;
        cfds.min_fd = 20;
        FdAction a;
        a.target = 3;
        cfds.actions.push_back(a);
        auto r = plan_deleted_cwd(child, cfds, &tree, 1);
        int prepared = cfds.actions[0].prepared;
        off_t at = prepared >= 0 ? lseek(prepared, 0, SEEK_CUR) : -1;
        return std::make_pair(r ? std::string() : r.error().what, at);
    };
    auto ok = plan(e);
    EXPECT_EQ(ok, std::make_pair(std::string(), pos));
    auto refused = [&](FdEntry f, const char* what) {
        auto [err, at] = plan(f);
        EXPECT_NE(err.find(what), std::string::npos) << err;
    };
    FdEntry f = e;
    f.rec.pos = uint64_t(pos) - 1;  // another offset than the one opened
    refused(f, "opened with it is not this one");
    f = e;
    f.rec.open_flags = O_DIRECTORY | O_NONBLOCK;  // other flags
    refused(f, "opened with it is not this one");
    tree.members[0].early_descs = {{1, 3, -1}};  // none made
    refused(e, "opened with it is not this one");
    tree.members[0].early_descs = {{1, 4, early.get()}};  // another fd's
    refused(e, "that its restore did not open");
    tree.members[0].early_descs = {{0, 3, early.get()}};  // another member's
    refused(e, "that its restore did not open");
    FdEntry zero = e;  // at offset 0: opened again through /proc/self/fd
    zero.rec.pos = 0;
    EXPECT_EQ(plan(zero), std::make_pair(std::string(), off_t(0)));
}

// fdshare (state/fs_tree.cc plan_deleted_cwd): a later member's second
// description of its own of an earlier member's removed cwd (kind 40 naming
// its kind 43) at an offset is the one the first holder's plan opened before
// the rmdir, as a kind 43's; checked the same way.
TEST(FsTree, LaterReopenedOfAKind43AtAnOffsetIsTheFirstHoldersEarlyOne) {
    RemovedWithEarly r;
    ASSERT_NO_FATAL_FAILURE(removed_with_early("crfs-fdshare", r));
    const UniqueFd &dir = r.dir, &early = r.early;
    struct stat st {};
    ASSERT_EQ(fstat(dir.get(), &st), 0);
    DecodedImage parent, child;
    FdPlan pfds;
    crfs::TreeRestore tree;
    cwd_holder_tree(tree, parent, pfds, r.path, st.st_mode, dir.get());
    tree.members[0].early_descs = {{1, 4, early.get()}};
    FdEntry first{};  // the kind 43 at offset 0: opened again through /proc/self/fd
    first.path = r.path;
    first.rec.fd = 3;
    first.rec.same_as = -1;
    first.rec.kind = uint32_t(image::FdKind::kTreeCwdDir);
    first.rec.mode = st.st_mode;
    first.rec.open_flags = O_DIRECTORY;
    FdEntry later = first;  // fd 4: kind 40 naming fd 3, at the early one's offset
    later.rec.fd = 4;
    later.rec.kind = uint32_t(image::FdKind::kReopened);
    later.rec.rdev = 3;
    later.rec.pos = uint64_t(r.pos);
    auto plan = [&](const FdEntry& f) {
        child.fds = {first, f};
        FdPlan cfds;
        cfds.min_fd = 20;
        for (int t : {3, 4}) {
            FdAction a;
            a.target = t;
            cfds.actions.push_back(a);
        }
        auto res = plan_deleted_cwd(child, cfds, &tree, 1);
        int prepared = cfds.actions[1].prepared;
        off_t at = prepared >= 0 ? lseek(prepared, 0, SEEK_CUR) : -1;
        return std::make_pair(res ? std::string() : res.error().what, at);
    };
    EXPECT_EQ(plan(later), std::make_pair(std::string(), r.pos));
    FdEntry f = later;
    f.rec.pos = uint64_t(r.pos) - 1;  // another offset than the one opened
    EXPECT_NE(plan(f).first.find("opened with it is not this one"), std::string::npos);
    f = later;
    f.rec.fd = 5;  // none opened for it
    EXPECT_NE(plan(f).first.find("that its restore did not open"), std::string::npos);
}

// share39 (state/fs_tree.cc early_shared_desc): a later member's share-fd end
// 4 description at an offset of an earlier member's removed directory (kind
// 39) is the one that member's plan opened before the rmdir (early_descs),
// taken only when it is the giver's directory's inode with the record's flags
// and offset (else ESTALE); one none was opened for is a bad image.
TEST(FsTree, SharedDescriptionAtAnOffsetIsTheMakersEarlyOne) {
    RemovedWithEarly r;
    ASSERT_NO_FATAL_FAILURE(removed_with_early("crfs-share39", r));
    const std::string& path = r.path;
    const UniqueFd &dir = r.dir, &early = r.early, &elsewhere = r.other;
    off_t pos = r.pos;

    FdEntry g;  // the giver's kind 39 fd 3, made by its plan
    g.path = path;
    g.rec.fd = 3;
    g.rec.same_as = -1;
    g.rec.kind = uint32_t(image::FdKind::kDeletedDir);
    FdPlan gfds;
    FdAction made;
    made.target = 3;
    made.prepared = dir.get();
    gfds.actions.push_back(made);
    crfs::TreeRestore tree;
    tree.members.resize(2);
    tree.members[0].pid = 100;
    tree.members[0].fds = &gfds;
    tree.members[0].early_descs = {{1, 5, early.get()}};
    tree.members[1].pid = 101;
    tree.members[1].parent = 0;
    FdEntry f;  // the taker's fd 5
    f.rec.fd = 5;
    f.rec.same_as = -1;
    f.rec.kind = uint32_t(image::FdKind::kShared);
    f.rec.open_flags = O_DIRECTORY;
    f.rec.pos = uint64_t(pos);
    auto take = [&](const FdEntry& e) -> std::pair<std::string, off_t> {
        FdPlan tfds;
        tfds.min_fd = 20;
        auto r = early_shared_desc(tree, 1, e, 0, g, tfds);
        if (!r) return {r.error().what, r.error().code};
        return {std::string(), *r >= 20 ? lseek(*r, 0, SEEK_CUR) : -1};
    };
    EXPECT_EQ(take(f), std::make_pair(std::string(), pos));
    auto refused = [&](const FdEntry& e, const char* what, int code) {
        auto [err, at] = take(e);
        EXPECT_NE(err.find(what), std::string::npos) << err;
        EXPECT_EQ(at, code) << err;
    };
    FdEntry e = f;
    e.rec.pos = uint64_t(pos) + 1;  // another offset than the one opened
    refused(e, "opened with it is not this one", ESTALE);
    e = f;
    e.rec.open_flags = O_DIRECTORY | O_NOATIME;  // other flags
    refused(e, "opened with it is not this one", ESTALE);
    gfds.actions[0].prepared = elsewhere.get();  // the giver's fd: another directory
    refused(f, "opened with it is not this one", ESTALE);
    gfds.actions[0].prepared = dir.get();
    tree.members[0].early_descs = {{1, 4, early.get()}};  // another fd's
    refused(f, "that its restore did not open", EINVAL);
    tree.members[0].early_descs = {{0, 5, early.get()}};  // another member's
    refused(f, "that its restore did not open", EINVAL);
}

// /proc/timer_list as 6.18 prints it (one cpu, two of its eight clocks).
std::string timer_list(std::string_view timers, std::string_view expires_next = "60828988000000",
                       std::string_view hres = "1") {
    return "Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 60406998525458 nsecs\n\n"
           "cpu: 0\n clock 0:\n  .base:       0000000057271c96\n  .index:      0\n"
           "  .resolution: 1 nsecs\n  .offset:     0 nsecs\nactive timers:\n"
           " #0: <000000005cf4aee7>, tick_nohz_handler, S:01\n"
           " # expires at 60407000000000-60407000000000 nsecs [in -1474542 to -1474542 nsecs]\n" +
           std::string(timers) +
           " clock 1:\n  .base:       0000000072fe2e59\n  .index:      1\n"
           "  .resolution: 1 nsecs\n  .offset:     1796120920289524225 nsecs\nactive timers:\n"
           "  .expires_next   : " +
           std::string(expires_next) +
           " nsecs\n"
           "  .hres_active    : " +
           std::string(hres) +
           "\n  .nr_events      : 16219919\n\n"
           "Tick Device: mode:     1\nPer CPU device: 0\nClock Event Device: lapic-deadline\n";
}

TEST(TimerfdDue, ATimerfdPastItsExpiryIsDueAnotherDueTimerIsNot) {
    // The tick's own timer is due (its interrupt late): not a timerfd's.
    EXPECT_EQ(state::timer_list_due(timer_list("")), false);
    auto fd = [](std::string_view fn, std::string_view in) {
        return " #1: <00000000510858d3>, " + std::string(fn) +
               ", S:01\n # expires at 60406998000000-60406998000000 nsecs [in " + std::string(in) +
               " nsecs]\n";
    };
    EXPECT_EQ(state::timer_list_due(timer_list(fd("timerfd_tmrproc", "-525458 to -525458"))), true);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("timerfd_tmrproc", "0 to 0"))), true);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("timerfd_tmrproc", "15 to 15"))), false);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("alarmtimer_fired", "-1 to -1"))), true);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("0xffffffff8133a0c0", "-1 to -1"))), true);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("hrtimer_wakeup", "-1 to -1"))), false);
    // A cpu in the middle of its timers' interrupt: the running one is off the queue.
    EXPECT_EQ(state::timer_list_due(timer_list("", "9223372036854775807")), true);
    // Low resolution, or text this crfs does not know: cannot tell.
    EXPECT_EQ(state::timer_list_due(timer_list("", "60828988000000", "0")), std::nullopt);
    EXPECT_EQ(state::timer_list_due("Timer List Version: v0.10\n"), std::nullopt);
    EXPECT_EQ(state::timer_list_due("something else"), std::nullopt);
    EXPECT_EQ(state::timer_list_due(timer_list(fd("timerfd_tmrproc", "soon"))), std::nullopt);
}

TEST(TimerfdDue, ThisKernelsTimerListIsReadable) {
    int fd = open("/proc/timer_list", O_RDONLY);
    ASSERT_GE(fd, 0);
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) text.append(buf, size_t(n));
    close(fd);
    EXPECT_TRUE(state::timer_list_due(text).has_value()) << text.substr(0, 2000);
}

}  // namespace
}  // namespace crfs::state

// A tree member is the restore's own while it holds the very go pipe end the
// daemon holds at the same number: not another pipe there, not a pid gone.
TEST(TreeRestoreGo, AMemberIsOursByTheOpenFileAtItsGoNumber) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    int go = fcntl(p[0], F_DUPFD_CLOEXEC, 200);
    ASSERT_GE(go, 0);
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    // Two children: one keeps the daemon's go end, the other puts another
    // pipe's end at the same number.
    pid_t kids[2];
    for (int k = 0; k < 2; ++k) {
        kids[k] = fork();
        ASSERT_GE(kids[k], 0);
        if (kids[k] == 0) {
            if (k == 1) {
                int q[2];
                if (pipe(q) != 0 || dup2(q[0], go) != go) _exit(1);
            }
            (void)!write(ready[1], "r", 1);
            pause();
            _exit(0);
        }
    }
    char c;
    for (int k = 0; k < 2; ++k) ASSERT_EQ(read(ready[0], &c, 1), 1);
    crfs::TreeRestore tree;
    tree.members.resize(3);
    for (int k = 0; k < 2; ++k) tree.members[k].pid = kids[k], tree.members[k].go = go;
    EXPECT_TRUE(crfs::tree_member_is_ours(tree, 0));
    EXPECT_FALSE(crfs::tree_member_is_ours(tree, 1));
    for (int k = 0; k < 2; ++k) {
        kill(kids[k], SIGKILL);
        ASSERT_EQ(waitpid(kids[k], nullptr, 0), kids[k]);
    }
    EXPECT_FALSE(crfs::tree_member_is_ours(tree, 0));  // gone
    tree.members[2].pid = getpid();
    tree.members[2].go = -1;
    EXPECT_FALSE(crfs::tree_member_is_ours(tree, 2));  // no copy
    for (int fd : {p[0], p[1], go, ready[0], ready[1]}) close(fd);
}
