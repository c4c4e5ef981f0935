// Checkpoints through the mount, the way a user takes them: cp, cat | zstd,
// dd, of /crfs/<pid>/image.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/io.h"
#include "common/procfs.h"
#include "common/unique_fd.h"
#include "tests/support/harness.h"

#ifndef CRFS_TOOL
#error "CRFS_TOOL must name the crfs command"
#endif
#ifndef CKPT_WORKLOAD
#error "CKPT_WORKLOAD must name the checkpoint workload"
#endif

namespace crfs::test {
namespace {

class Image : public ::testing::Test {
  protected:
    void SetUp() override { ASSERT_TRUE(crfs.ok()) << crfs.log(); }
    void TearDown() override {
        if (workload > 0) kill_and_reap(workload);
        if (HasFailure()) std::cerr << "crfsd log:\n" << crfs.log();
    }
    ShellResult run(const std::string& cmd) {
        return sh(crfs.env() + cmd, std::chrono::seconds(120));
    }

    // Starts the self-checking workload and waits until it is ready.
    void start_workload(const std::string& mode, const std::string& arg = "") {
        std::vector<std::string> argv{CKPT_WORKLOAD, tmp.path(), mode};
        if (!arg.empty()) argv.push_back(arg);
        workload = spawn(argv);
        ASSERT_GT(workload, 0);
        ASSERT_TRUE(wait_until([&] { return read_file(tmp.path() + "/ready").has_value(); },
                               std::chrono::seconds(30)));
    }
    // SIGTERM, then the workload's own verdict.
    std::string verdict() {
        ::kill(workload, SIGTERM);
        wait_until([&] { return read_file(tmp.path() + "/result").has_value(); },
                   std::chrono::seconds(30));
        kill_and_reap(workload);
        workload = -1;
        return read_file(tmp.path() + "/result").value_or("no result");
    }
    std::string image_path() const {
        return crfs.mnt() + "/" + std::to_string(workload) + "/image";
    }
    // `crfs show --json` of an image without the parts that differ between
    // two checkpoints of an unchanged task (timings, and so size/checksum).
    std::string state_of(const std::string& file) {
        auto r = run(std::string(CRFS_TOOL) + " show --json " + file +
                     " | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop(\"stats\"); "
                     "d.pop(\"image\"); [t.pop(\"value_us\") for t in d[\"itimers\"].values()]; "
                     "print(json.dumps(d, sort_keys=True))'");
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out;
    }
    void expect_verifies(const std::string& file) {
        auto v = run(std::string(CRFS_TOOL) + " verify " + file);
        EXPECT_EQ(v.status, 0) << file << ": " << v.out << v.err;
        EXPECT_TRUE(v.out.starts_with("ok:")) << v.out;
    }
    char state() { return read_stat(workload).value_or(ProcStat{}).state; }
    pid_t tracer() { return read_status(workload).value_or(ProcStatus{}).tracer_pid; }
    // Whether the workload's SIGALRM (its 10 ms itimer in busy mode) waits in
    // its shared pending queue, as it does soon after the task stops.
    bool alarm_pending() {
        std::string st = read_file("/proc/" + std::to_string(workload) + "/status").value_or("");
        size_t at = st.find("ShdPnd:");
        if (at == std::string::npos) return false;
        return std::stoull(st.substr(at + 7), nullptr, 16) & (1ull << (SIGALRM - 1));
    }

    MountedCrfs crfs;
    TempDir tmp;
    pid_t workload = -1;
};

TEST_F(Image, CpWhileRunningManyTimesAndTheTaskNoticesNothing) {
    start_workload("busy");
    ASSERT_EQ(run("cat " + crfs.mnt() + "/" + std::to_string(workload) + "/reason").out, "");
    for (int i = 0; i < 8; ++i) {
        std::string snap = tmp.path() + "/snap" + std::to_string(i) + ".img";
        auto r = run("cp " + image_path() + " " + snap);
        ASSERT_EQ(r.status, 0) << r.err;
        expect_verifies(snap);
        EXPECT_EQ(tracer(), 0);
        EXPECT_NE(state(), 't');
        EXPECT_NE(state(), 'T');
    }
    EXPECT_EQ(verdict(), "PASS\n");
}

TEST_F(Image, SleepingTaskSleepsOnAndItsTimerStillFires) {
    start_workload("sleep", "2");
    for (int i = 0; i < 4; ++i)
        ASSERT_EQ(run("cat " + image_path() + " > /dev/null").status, 0) << i;
    // The workload checks that its one nanosleep ran its full time.
    EXPECT_TRUE(wait_until([&] { return read_file(tmp.path() + "/woke").has_value(); },
                           std::chrono::seconds(30)));
    EXPECT_EQ(verdict(), "PASS\n");
}

TEST_F(Image, StoppedTaskGivesTheSameImageToEveryReader) {
    start_workload("busy");
    ASSERT_EQ(::kill(workload, SIGSTOP), 0);
    // The itimer keeps running while the task is stopped: its first SIGALRM
    // after the stop is a pending signal in every later image. Wait for it,
    // or a checkpoint made before it (under load, the first) differs from the
    // others by that one siginfo record (152 bytes).
    ASSERT_TRUE(wait_until([&] { return state() == 'T' && alarm_pending(); }));
    std::string d = tmp.path();
    const std::pair<const char*, std::string> readers[] = {
        {"cp", "cp " + image_path() + " " + d + "/cp.img"},
        {"zstd", "cat " + image_path() + " | zstd -q -c > " + d + "/z.zst && zstd -q -d -c " + d +
                     "/z.zst > " + d + "/zstd.img"},
        {"dd 4k", "dd if=" + image_path() + " of=" + d + "/dd4k.img bs=4k status=none"},
        {"dd 1k", "dd if=" + image_path() + " of=" + d + "/dd1k.img bs=1k status=none"},
    };
    std::string first;
    for (auto& [name, cmd] : readers) {
        auto r = run(cmd);
        ASSERT_EQ(r.status, 0) << name << ": " << r.err;
        std::string file = d + "/" +
                           (std::string(name) == "cp"      ? "cp.img"
                            : std::string(name) == "zstd"  ? "zstd.img"
                            : std::string(name) == "dd 4k" ? "dd4k.img"
                                                           : "dd1k.img");
        expect_verifies(file);
        std::string s = state_of(file);
        EXPECT_NE(s.find("\"task_was_stopped\": true"), std::string::npos) << name;
        if (first.empty())
            first = s;
        else
            EXPECT_TRUE(s == first) << name << " decodes to another state than cp: " << [&] {
                size_t i = 0;
                while (i < s.size() && i < first.size() && s[i] == first[i]) ++i;
                size_t from = i < 200 ? 0 : i - 200;
                return "\n  cp:   ..." + first.substr(from, 400) + "\n  this: ..." +
                       s.substr(from, 400);
            }();
        EXPECT_EQ(state(), 'T') << "a stopped task must stay stopped (" << name << ")";
        EXPECT_EQ(tracer(), 0);
    }
    ::kill(workload, SIGCONT);
    EXPECT_TRUE(wait_until([&] { return state() != 'T'; }));
    EXPECT_EQ(verdict(), "PASS\n");
}

// The checkpoint starts at the first read, not at open (issue 9 item 5): an
// open and close without a read, and tar over the directory (it opens files of
// size 0 without reading them), neither freeze the task nor checkpoint it. A
// sleeping task that is seized and interrupted runs (its context switch
// counters move); one left alone does not. The first read then checkpoints,
// which moves them: the positive control that this observation can fail.
TEST_F(Image, OpenWithoutReadFreezesNothing) {
    workload = spawn({"/bin/sleep", "1000"});
    ASSERT_GT(workload, 0);
    ASSERT_TRUE(wait_until([&] {
        auto st = read_stat(workload);
        return st && st->comm == "sleep" && st->state == 'S';
    }));
    auto switches = [&] {
        std::string st = read_file("/proc/" + std::to_string(workload) + "/status").value_or("");
        auto num = [&](const char* key) {
            size_t at = st.find(key);
            return at == std::string::npos ? -1ll : std::stoll(st.substr(at + strlen(key)));
        };
        return std::pair{num("\nvoluntary_ctxt_switches:"), num("nonvoluntary_ctxt_switches:")};
    };
    std::string dir = crfs.mnt() + "/" + std::to_string(workload);
    std::string line = "checkpoint " + std::to_string(workload) + ":";
    auto before = switches();
    ASSERT_GE(before.first, 0);
    auto r = run("exec 3< " + dir + "/image; exec 3<&-; tar cf - -C " + dir + " . | tar tvf -");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("./image"), std::string::npos) << r.out;
    EXPECT_EQ(switches(), before) << "the task ran: it was frozen";
    EXPECT_EQ(crfs.log().find(line), std::string::npos) << "checkpointed without a read";
    // The issue's own command, over the whole tree (tasks come and go meanwhile:
    // its status is not the point): no checkpoint of anything.
    run("tar cf " + tmp.path() + "/all.tar -C " + crfs.mnt() + " . 2>/dev/null");
    EXPECT_EQ(switches(), before) << "tar of the whole tree froze the task";
    std::string log = crfs.log();
    for (size_t at = log.find("checkpoint "); at != std::string::npos;
         at = log.find("checkpoint ", at + 1))
        EXPECT_FALSE(std::isdigit(static_cast<unsigned char>(log[at + 11])))
            << "tar of the tree checkpointed: " << log.substr(at, log.find('\n', at) - at);
    EXPECT_EQ(tracer(), 0);

    r = run("head -c 8 " + dir + "/image | od -c");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(wait_until([&] { return crfs.log().find(line) != std::string::npos; }))
        << "the first read did not checkpoint";
    EXPECT_NE(switches(), before) << "a checkpoint that leaves no trace: the test cannot fail";
    EXPECT_EQ(tracer(), 0);
}

// One byte and room for one descriptor (SCM_RIGHTS), to send or receive.
struct FdMessage {
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    FdMessage() {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl;
        msg.msg_controllen = sizeof ctl;
    }
    FdMessage(const FdMessage&) = delete;
    FdMessage& operator=(const FdMessage&) = delete;
};

// The checkpoint runs at the first read with the rights of whoever opened
// the file, as the kernel keeps a file's f_cred: an unprivileged user who
// opens root's task's image and hands the descriptor to a root process (here
// over a unix socket) gets that process nothing its opener could not read.
TEST_F(Image, ReadOfAnImageOpenedByAnotherUserUsesTheOpenersRights) {
    start_workload("busy");
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(sv[0]);
        gid_t nobody = 65534;
        if (::setgroups(0, nullptr) != 0 || ::setresgid(nobody, nobody, nobody) != 0 ||
            ::setresuid(nobody, nobody, nobody) != 0)
            ::_exit(2);
        int fd = ::open(image_path().c_str(), O_RDONLY);
        if (fd < 0) ::_exit(3);
        FdMessage m;
        cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
        ::_exit(::sendmsg(sv[1], &m.msg, 0) == 1 ? 0 : 4);
    }
    ::close(sv[1]);
    FdMessage m;
    ssize_t got = ::recvmsg(sv[0], &m.msg, MSG_CMSG_CLOEXEC);
    ::close(sv[0]);
    int st = 0;
    ::waitpid(child, &st, 0);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the opener failed: status " << st;
    ASSERT_EQ(got, 1);
    cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    ASSERT_NE(c, nullptr);
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    std::vector<char> buf(1 << 16);
    errno = 0;
    EXPECT_EQ(::read(fd, buf.data(), buf.size()), -1) << "root's read used root's rights";
    EXPECT_EQ(errno, EACCES);
    ::close(fd);
    EXPECT_EQ(tracer(), 0);
    EXPECT_EQ(verdict(), "PASS\n");
}

// `image` is a stream from the checkpoint worker (checkpoint/piped_image.h):
// one handle serves one image, in order. The open is non-seekable (so that a
// sendfile or splice reader fails loudly instead of getting 0 bytes: fs/ops.cc
// op_open), so pread and lseek are ESPIPE and reads go on where they were.
// The task holds 24 MiB so the image outgrows the stream's window.
TEST_F(Image, OneHandleIsOneStreamReadInOrder) {
    std::string ready = tmp.path() + "/ready";
    workload = spawn({"/usr/bin/python3", "-c",
                      "import os, sys, time\n"
                      "b = bytearray(os.urandom(24 << 20))\n"
                      "open(sys.argv[1], 'w').close()\n"
                      "time.sleep(1000)\n",
                      ready});
    ASSERT_GT(workload, 0);
    ASSERT_TRUE(wait_until([&] { return read_file(ready).has_value(); }));
    ASSERT_TRUE(wait_until([&] { return state() == 'S'; }));
    UniqueFd fd(::open(image_path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    constexpr size_t kMiB = 1 << 20;
    auto next = [&](size_t len) {
        std::string buf(len, '\0');
        size_t got = 0;
        while (got < len) {
            ssize_t n = ::read(fd.get(), buf.data() + got, len - got);
            EXPECT_GT(n, 0) << "at " << got << ": " << std::strerror(errno);
            if (n <= 0) break;
            got += size_t(n);
        }
        return buf.substr(0, got);
    };
    char b;
    errno = 0;
    EXPECT_EQ(::pread(fd.get(), &b, 1, 0), -1) << "pread before the first read";
    EXPECT_EQ(errno, ESPIPE);
    std::string first = next(2 * kMiB);
    ASSERT_EQ(first.substr(0, 7), "CRFSIMG");
    errno = 0;
    EXPECT_EQ(::lseek(fd.get(), 0, SEEK_SET), -1);
    EXPECT_EQ(errno, ESPIPE);
    errno = 0;
    EXPECT_EQ(::pread(fd.get(), &b, 1, 4096), -1);
    EXPECT_EQ(errno, ESPIPE);
    // The refused calls moved nothing: the stream goes on past its window.
    EXPECT_EQ(next(12 * kMiB).size(), 12 * kMiB);
    fd.reset();  // closes the stream early: the worker stops, the task is untouched
    EXPECT_EQ(tracer(), 0);
    EXPECT_EQ(state(), 'S');
    // A new open is a new image, whole.
    ASSERT_EQ(run("cp " + image_path() + " " + tmp.path() + "/whole.img").status, 0);
    expect_verifies(tmp.path() + "/whole.img");
}

TEST_F(Image, TaskWithAReasonIsBusyUntilTheReasonGoes) {
    start_workload("busy");
    std::string dir = crfs.mnt() + "/" + std::to_string(workload);
    ASSERT_EQ(run("echo 'CR: in a transaction' > " + dir + "/nocr").status, 0);
    auto r = run("cp " + dir + "/image " + tmp.path() + "/x.img");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Device or resource busy"), std::string::npos) << r.err;
    EXPECT_EQ(run("cat " + dir + "/reason").out, "nocr: CR: in a transaction\n");
    ASSERT_EQ(run("echo 0 > " + dir + "/nocr").status, 0);
    EXPECT_EQ(run("cp " + dir + "/image " + tmp.path() + "/x.img").status, 0);
    expect_verifies(tmp.path() + "/x.img");
    EXPECT_EQ(verdict(), "PASS\n");
}

TEST_F(Image, DetectedReasonMakesItBusyToo) {
    // A pipe on stdout: `reason` says so, and `image` refuses.
    auto r =
        run("sleep 1000 | (p=$(pgrep -n -P $$ sleep); cat $M/$p/image > /dev/null; "
            "echo rc=$?; kill $p)");
    EXPECT_NE(r.out.find("rc=1"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("Device or resource busy"), std::string::npos) << r.err;
}

TEST_F(Image, UnprivilegedUserCannotCheckpointAnotherUsersTask) {
    start_workload("busy");
    auto r = run("setpriv --reuid=65534 --regid=65534 --clear-groups cat " + image_path() +
                 " > /dev/null");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
    EXPECT_EQ(tracer(), 0);
    EXPECT_EQ(verdict(), "PASS\n");
}

TEST_F(Image, UnprivilegedUserCheckpointsItsOwnTask) {
    // Root here may lack CAP_SYS_RESOURCE: nothing in the checkpoint may need it.
    auto r =
        run("cd / && setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '"
            "sleep 100 </dev/null >/dev/null 2>&1 & p=$!; "
            "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
            "cat $M/$p/reason; cat $M/$p/image > /dev/null; echo rc=$?; kill $p'");
    EXPECT_EQ(r.out, "rc=0\n") << r.err;
}

TEST_F(Image, ConcurrentReadersEachGetAConsistentImage) {
    start_workload("busy");
    std::string d = tmp.path();
    auto r = run("cp " + image_path() + " " + d + "/a.img & cp " + image_path() + " " + d +
                 "/b.img & cat " + image_path() + " > " + d + "/c.img & wait");
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* f : {"/a.img", "/b.img", "/c.img"}) expect_verifies(d + f);
    EXPECT_EQ(verdict(), "PASS\n");
}

TEST_F(Image, TaskKilledDuringCheckpointsLeavesTheDaemonServing) {
    start_workload("busy");
    std::string p = std::to_string(workload);
    // Whether each checkpoint wins the race or fails, the daemon must live on.
    auto r = run("for i in 1 2 3 4 5; do cat " + image_path() +
                 " > /dev/null 2>&1 & done; kill -9 " + p + "; wait; cat $M/self/nocr");
    EXPECT_EQ(r.out, "0\n") << r.err;
    kill_and_reap(workload);
    workload = -1;
    auto gone = run("cat $M/" + p + "/image > /dev/null");
    EXPECT_NE(gone.status, 0);
    EXPECT_EQ(::kill(crfs.daemon_pid(), 0), 0) << "crfsd died";
}

}  // namespace
}  // namespace crfs::test
