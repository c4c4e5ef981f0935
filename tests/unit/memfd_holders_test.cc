// Who else holds or maps a memfd (state/memfd.cc `other_users`): a memfd a
// process outside the image holds by an fd or maps is a reason naming it
// (its sharing could not be restored); one the image's members alone hold is
// not. Asked from one walk of /proc/*/fd and /proc/*/maps per `reason` read
// or checkpoint (HolderScan, state/holders.h; session 16), not a walk per
// memfd per member: the same answers, on real processes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "state/holders.h"
#include "state/kind.h"
#include "state/registry.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

constexpr size_t kSize = 4096;

// Processes forked by the test, each running `setup` (the memfd inherited at
// g_memfd), reporting ready on a pipe and waiting to be killed; with `kid`,
// a child of its own running `setup` too (a member of its tree). Killed (and
// the test's own children reaped) at the end.
class Procs {
  public:
    ~Procs() {
        for (pid_t p : others_) ::kill(p, SIGKILL);
        for (pid_t p : pids_) {
            ::kill(p, SIGKILL);
            ::waitpid(p, nullptr, 0);
        }
    }
    pid_t make(const std::function<void()>& setup, pid_t* kid = nullptr) {
        bool with_child = kid != nullptr;
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        pid_t pid = ::fork();
        if (pid == 0) {
            ::close(p[0]);
            if (with_child) {
                pid_t k = ::fork();
                if (k < 0) _exit(1);
                if (k == 0) {
                    setup();
                    if (::write(p[1], "c", 1) != 1) _exit(1);
                    ::close(p[1]);
                    for (;;) ::pause();
                }
            }
            setup();
            if (::write(p[1], "p", 1) != 1) _exit(1);
            ::close(p[1]);
            for (;;) ::pause();
        }
        EXPECT_GT(pid, 0) << std::strerror(errno);
        ::close(p[1]);
        pids_.push_back(pid);
        char c[2];
        size_t want = with_child ? 2 : 1, got = 0;
        while (got < want) {  // bounded: the pipe's ends close when they exit
            ssize_t n = ::read(p[0], c, want - got);
            if (n <= 0) break;
            got += size_t(n);
        }
        EXPECT_EQ(got, want);
        ::close(p[0]);
        if (with_child) {
            auto kids = list_children(pid);
            EXPECT_TRUE(kids && kids->size() == 1);
            *kid = kids && kids->size() == 1 ? kids->front() : 0;
            if (*kid) others_.push_back(*kid);
        }
        return pid;
    }

  private:
    std::vector<pid_t> pids_, others_;
};

int g_memfd = -1;

void hold_and_map() {
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, g_memfd, 0);
    if (p == MAP_FAILED) _exit(2);
}
void hold_only() {}
void map_only() {
    hold_and_map();
    ::close(g_memfd);
}
void hold_nothing() {
    ::close(g_memfd);
}
// Another memfd of the same name (the same fd link, another inode).
void hold_a_namesake() {
    ::close(g_memfd);
    if (::memfd_create("holders", 0) < 0) _exit(2);
}

// The reasons' lines that name memfd:holders.
std::vector<std::string> memfd_lines(const Result<Reasons>& r) {
    std::vector<std::string> out;
    EXPECT_TRUE(r) << r.error().what;
    if (r)
        for (const std::string& l : *r)
            if (l.find("memfd:holders") != std::string::npos) out.push_back(l);
    return out;
}

std::string joined(const std::vector<std::string>& lines) {
    std::ostringstream s;
    for (const auto& l : lines) s << l << "\n";
    return s.str();
}

class MemfdHoldersTest : public ::testing::Test {
  protected:
    void SetUp() override {
        g_memfd = ::memfd_create("holders", MFD_CLOEXEC);  // kept across fork, no exec
        ASSERT_GE(g_memfd, 0);
        ASSERT_EQ(::ftruncate(g_memfd, kSize), 0);
    }
    void TearDown() override {
        ::close(g_memfd);
        g_memfd = -1;
    }
    Procs procs;
};

std::string held_by(pid_t p) {
    return "is also held or mapped by pid " + std::to_string(p) + " (";
}

// `count` lines, each naming `out`.
void expect_each_names(const std::vector<std::string>& lines, size_t count, pid_t out) {
    ASSERT_EQ(lines.size(), count) << joined(lines);
    for (const auto& l : lines) EXPECT_NE(l.find(held_by(out)), std::string::npos) << l;
}

// The line of member `kid` ("pid K (fd N): ..."), and the root's own ("fd N: ...").
const std::string* line_of(const std::vector<std::string>& lines, const std::string& start) {
    for (const auto& l : lines)
        if (l.rfind(start, 0) == 0) return &l;
    return nullptr;
}

TEST_F(MemfdHoldersTest, NoneOutsideIsNoReason) {
    // The task and its child hold and map it; an outsider holds nothing (the
    // test holds it: the daemon here, self_tgid, which is never counted).
    pid_t kid = 0;
    pid_t task = procs.make(hold_and_map, &kid);
    procs.make(hold_nothing);
    auto lines = memfd_lines(detect_reasons(task, getpid()));
    EXPECT_TRUE(lines.empty()) << joined(lines);
}

TEST_F(MemfdHoldersTest, AnOutsiderHoldingItByAnFdIsNamed) {
    pid_t kid = 0;
    pid_t task = procs.make(hold_and_map, &kid);
    ASSERT_GT(kid, 0);
    pid_t out = procs.make(hold_only);
    auto lines = memfd_lines(detect_reasons(task, getpid()));
    // The root's fd and mapping (its fd's line says it), and its member's;
    // the member, inside the image, is not named.
    ASSERT_EQ(lines.size(), 2u) << joined(lines);
    const std::string* root = line_of(lines, "fd ");
    const std::string* member = line_of(lines, "pid " + std::to_string(kid) + " (fd ");
    ASSERT_TRUE(root && member) << joined(lines);
    EXPECT_NE(root->find(held_by(out)), std::string::npos) << *root;
    EXPECT_EQ(root->find(held_by(kid)), std::string::npos) << *root;
    EXPECT_NE(member->find(held_by(out)), std::string::npos) << *member;
    EXPECT_EQ(member->find(held_by(task)), std::string::npos) << *member;
}

TEST_F(MemfdHoldersTest, AnOutsiderOnlyMappingItIsNamed) {
    pid_t kid = 0;
    pid_t task = procs.make(hold_and_map, &kid);
    pid_t out = procs.make(map_only);
    expect_each_names(memfd_lines(detect_reasons(task, getpid())), 2, out);
}

TEST_F(MemfdHoldersTest, ATaskOnlyMappingItIsAskedToo) {
    // No fd in the task: its mapping's reason (read through map_files) names the outsider.
    pid_t task = procs.make(map_only);
    pid_t out = procs.make(hold_only);
    auto lines = memfd_lines(detect_reasons(task, getpid()));
    expect_each_names(lines, 1, out);
    if (!lines.empty()) {
        EXPECT_EQ(lines[0].rfind("vma ", 0), 0u) << lines[0];
    }
}

TEST_F(MemfdHoldersTest, ANamesakeOutsideIsNotIt) {
    pid_t task = procs.make(hold_and_map);
    procs.make(hold_a_namesake);
    auto lines = memfd_lines(detect_reasons(task, getpid()));
    EXPECT_TRUE(lines.empty()) << joined(lines);
}

TEST_F(MemfdHoldersTest, OneWalkPerRead) {
    // The walk is made once per reason read: a read whose walk was made
    // before the outsider mapped the memfd does not see it (each memfd and
    // each member asked from that one walk); a new read does.
    pid_t kid = 0;
    pid_t task = procs.make(hold_and_map, &kid);
    auto scan = std::make_shared<HolderScan>();
    scan->load();
    scan->load_maps();
    pid_t out = procs.make(map_only);
    TaskView view(task, getpid());
    view.set_holder_scan(scan);
    auto lines = memfd_lines(detect_reasons(view));
    EXPECT_TRUE(lines.empty()) << joined(lines);
    expect_each_names(memfd_lines(detect_reasons(task, getpid())), 2, out);
}

}  // namespace
}  // namespace crfs::state
