// check_fields (restorer/check_fields.cc) on images built in memory: each
// field out of range is EINVAL naming it.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

#include "common/strfmt.h"
#include "restorer/validate.h"
#include "state/seccomp.h"
#include "state/threads.h"
#include "state/timers.h"
#include "state/tty.h"
#include "state/vma_names.h"
#include "tests/support/check_fields.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace crfs {
namespace {

using test::expect_einval;

DecodedImage good() {
    DecodedImage img = test::minimal_image();
    FdEntry f{};
    f.rec.fd = 3, f.rec.kind = uint32_t(image::FdKind::kRegular);
    f.rec.open_flags = O_RDONLY | 0100000 /* the kernel's O_LARGEFILE */;
    f.path = "/tmp/x";
    img.fds.push_back(f);
    return img;
}

TEST(RestoreFields, GoodImagePasses) {
    EXPECT_TRUE(check_fields(good()));
}

// names: a name of anonymous memory is its VMA's path; the kernel takes at
// most 79 bytes and a NUL would cut it short.
TEST(RestoreFields, AnonymousMemoryNamesInRange) {
    auto img = good();
    img.vmas[1].path = "[anon:" + std::string(79, 'n') + "]";
    EXPECT_TRUE(check_fields(img));
    img.vmas[1].path = "[anon:" + std::string(80, 'n') + "]";
    expect_einval(img, "an anonymous memory name of 80 bytes (the kernel takes at most 79)");
    img.vmas[1].path = std::string("[anon:a\0b]", 10);
    expect_einval(img, "an anonymous memory name holding a NUL byte");
    img.vmas[1].path = "[anon:]";
    expect_einval(img, "an empty or unterminated anonymous memory name");
    img.vmas[1].path = "[heap]";  // no name
    EXPECT_TRUE(check_fields(img));
}

// A file made with O_TMPFILE (state/file_deleted.cc): a deleted fd with both
// bits of O_TMPFILE and write access; on no other kind, never read-only.
TEST(RestoreFields, TmpfileFlagsOnlyOnAWritableDeletedFile) {
    constexpr uint32_t kTmpfileBit = O_TMPFILE & ~O_DIRECTORY;
    auto img = good();
    img.fds[0].rec.kind = uint32_t(image::FdKind::kDeleted);
    img.fds[0].rec.open_flags = O_TMPFILE | O_RDWR | 0100000;
    EXPECT_TRUE(check_fields(img));
    img.fds[0].rec.open_flags = O_TMPFILE | O_WRONLY | O_APPEND;
    EXPECT_TRUE(check_fields(img));
    img.fds[0].rec.open_flags = O_TMPFILE | 0100000;  // read-only
    expect_einval(img, "O_TMPFILE with open flags");
    img.fds[0].rec.open_flags = kTmpfileBit | O_RDWR;  // without O_DIRECTORY
    expect_einval(img, "O_TMPFILE with open flags");
    img.fds[0].rec.open_flags = O_TMPFILE | O_RDWR;
    img.fds[0].rec.kind = uint32_t(image::FdKind::kRegular);
    expect_einval(img, "open flags 020200002");
    img.fds[0].rec.kind = uint32_t(image::FdKind::kCharDev);
    expect_einval(img, "open flags 020200002");
}

// deldir: a removed directory (state/dir_deleted.cc) names its old path plainly,
// has a directory's mode and a directory's read-only flags.
TEST(RestoreFields, DeletedDirectoryPathModeAndFlagsInRange) {
    auto img = good();
    auto& r = img.fds[0].rec;
    r.kind = uint32_t(image::FdKind::kDeletedDir);
    r.mode = S_IFDIR | 02751;
    r.open_flags = O_DIRECTORY | O_NONBLOCK | 0100000;
    EXPECT_TRUE(check_fields(img));
    for (const char* p : {"/tmp/../x", "/tmp/./x", "/tmp//x", "/tmp/x/", "/", "x", "/tmp/.."}) {
        img.fds[0].path = p;
        expect_einval(img, "deleted directory path");
    }
    img.fds[0].path = "/tmp/x";
    r.mode = S_IFREG | 0644;
    expect_einval(img, "deleted directory mode 0100644");
    r.mode = S_IFDIR | 010000;
    expect_einval(img, "deleted directory mode");
    r.mode = S_IFDIR | 0700;
    r.open_flags = O_DIRECTORY | O_RDWR;
    expect_einval(img, "deleted directory open flags");
    r.open_flags = O_DIRECTORY | O_APPEND;
    expect_einval(img, "deleted directory open flags");
    r.open_flags = O_DIRECTORY;
    r.mtime_nsec = 1000000000;
    expect_einval(img, "mtime nanoseconds");
}

// deltwice: another open file description of a deleted file or directory
// (fd kind 40, state/file_reopen.cc) names an earlier fd record that is its
// own description of one of those, of its inode; flags a reopen through
// /proc/self/fd gives; a directory's offset 0.
TEST(RestoreFields, ReopenedNamesAnEarlierDeletedFileOrDirectoryOfItsInode) {
    using K = image::FdKind;
    auto twice = [](K kind) {
        auto img = good();
        auto& r = img.fds[0].rec;
        bool dir = kind == K::kDeletedDir;
        r.kind = uint32_t(kind);
        r.dev = 5, r.ino = 77, r.mode = dir ? S_IFDIR | 0700 : S_IFREG | 0600;
        r.open_flags = dir ? O_DIRECTORY | 0100000 : O_RDWR | 0100000;
        FdEntry later = img.fds[0];
        later.rec.fd = 4, later.rec.kind = uint32_t(K::kReopened), later.rec.rdev = 3;
        later.rec.open_flags = dir ? O_DIRECTORY | O_NONBLOCK : O_WRONLY | O_APPEND | O_NONBLOCK;
        later.rec.pos = dir ? 0 : 9;
        img.fds.push_back(later);
        return img;
    };
    constexpr const char* kNoFirst = "which is no earlier fd of its own description";
    EXPECT_TRUE(check_fields(twice(K::kDeleted)));
    EXPECT_TRUE(check_fields(twice(K::kDeletedDir)));
    auto img = twice(K::kDeleted);
    img.fds.push_back(img.fds[1]);  // a dup of the second: repeats it
    img.fds[2].rec.fd = 6, img.fds[2].rec.same_as = 4;
    EXPECT_TRUE(check_fields(img));
    for (uint64_t first : {4ull, 5ull, 2ull, 1ull << 40}) {  // itself, later, none, huge
        img = twice(K::kDeleted);
        img.fds[1].rec.rdev = first;
        expect_einval(img, strfmt("fd 4: opened again from fd {}, {}", first, kNoFirst).c_str());
    }
    img = twice(K::kDeleted);
    img.fds[0].rec.kind = uint32_t(K::kRegular);  // a file with a name
    expect_einval(img, kNoFirst);
    img = twice(K::kDeleted);
    img.fds[1].rec.ino = 78;  // another inode
    expect_einval(img, kNoFirst);
    img = twice(K::kDeleted);
    img.fds[1].rec.mode = S_IFDIR | 0600;
    expect_einval(img, kNoFirst);
    img = twice(K::kDeleted);
    std::swap(img.fds[0], img.fds[1]);  // recorded before the fd it names
    expect_einval(img, kNoFirst);
    img = twice(K::kDeleted);  // names a dup, or another kind 40
    img.fds.push_back(img.fds[1]);
    img.fds[2].rec.fd = 5, img.fds[2].rec.same_as = 4;
    img.fds.push_back(img.fds[1]);
    img.fds[3].rec.fd = 7, img.fds[3].rec.rdev = 5;
    expect_einval(img, strfmt("fd 7: opened again from fd 5, {}", kNoFirst).c_str());
    img.fds[3].rec.rdev = 4;
    expect_einval(img, strfmt("fd 7: opened again from fd 4, {}", kNoFirst).c_str());
    for (uint32_t flags :
         {uint32_t(O_RDWR | FASYNC), uint32_t(O_ACCMODE), uint32_t(O_RDWR | O_TRUNC)}) {
        img = twice(K::kDeleted);
        img.fds[1].rec.open_flags = flags;
        expect_einval(img, "fd 4: open");
    }
    img = twice(K::kDeletedDir);
    img.fds[1].rec.open_flags = O_DIRECTORY | O_RDWR;
    expect_einval(img, "fd 4: opened again from fd 3 with open flags");
    img = twice(K::kDeletedDir);
    img.fds[1].rec.open_flags = O_DIRECTORY | O_NOFOLLOW;  // refuses the link
    expect_einval(img, "fd 4: opened again from fd 3 with open flags");
    img.fds[1].rec.pos = 1;  // fdshare: opened by the directory's name before the rmdir
    EXPECT_TRUE(check_fields(img));
    img.fds[1].rec.open_flags = O_DIRECTORY | FASYNC;
    expect_einval(img, "fd 4: opened again from fd 3 with open flags");
    // A directory's offset: made with its first, before the rmdir (state/dir_deleted.cc).
    img = twice(K::kDeletedDir);
    img.fds[1].rec.pos = 0x7fffffffffffffffull;  // ext4's end of a directory
    EXPECT_TRUE(check_fields(img));
    img.fds[1].rec.pos = 1ull << 63;
    expect_einval(img, "fd 4: opened again from fd 3 with open flags 0204000, offset");
    img = twice(K::kDeletedDir);  // a first that is an earlier member's cwd (kind 43)
    img.fds[0].rec.kind = uint32_t(K::kTreeCwdDir), img.fds[0].rec.open_flags = O_DIRECTORY;
    img.fds[0].path = "/tmp/gone";
    EXPECT_TRUE(check_fields(img));
    img.fds[1].rec.pos = 2;  // fdshare: opened with that member's cwd, before the rmdir
    EXPECT_TRUE(check_fields(img));
    img.fds[1].rec.pos = 1ull << 63;
    expect_einval(img, "fd 4: opened again from fd 3 with open flags 0204000, offset");
    // O_TMPFILE: the later description is the file's own (its first was opened
    // through /proc/self/fd): both bits, write access, only one.
    constexpr uint32_t kTmp = O_TMPFILE | O_WRONLY | O_APPEND;
    img = twice(K::kDeleted);
    img.fds[1].rec.open_flags = kTmp;
    EXPECT_TRUE(check_fields(img));
    for (uint32_t flags :
         {uint32_t(O_TMPFILE | O_RDONLY), uint32_t((O_TMPFILE & ~O_DIRECTORY) | O_RDWR)}) {
        img.fds[1].rec.open_flags = flags;
        expect_einval(img, "fd 4: opened again from fd 3 with O_TMPFILE");
    }
    img = twice(K::kDeleted);
    img.fds[0].rec.open_flags = O_TMPFILE | O_RDWR;  // the first is the O_TMPFILE one
    img.fds[1].rec.open_flags = kTmp;
    expect_einval(img, "fd 4: opened again from fd 3 with O_TMPFILE");
    img = twice(K::kDeleted);
    img.fds[1].rec.open_flags = kTmp;
    img.fds.push_back(img.fds[1]);  // a second O_TMPFILE description of one file
    img.fds[2].rec.fd = 5;
    expect_einval(img, "opened again from fd 3 with O_TMPFILE");
    img = twice(K::kDeletedDir);
    img.fds[1].rec.open_flags = O_TMPFILE | O_RDWR;
    expect_einval(img, "fd 4: opened again from fd 3 with O_TMPFILE");
}

// cwdtree: fd kind 43, a description of an earlier member's removed cwd
// (state/fs_tree.cc): a plain path, a directory's mode, a reopen's flags,
// offset 0, a member index in range; in an image of one process, refused at plan.
TEST(RestoreFields, TreeCwdDirPathModeFlagsAndOffset) {
    auto img = good();
    auto& r = img.fds[0].rec;
    r.kind = uint32_t(image::FdKind::kTreeCwdDir);
    r.mode = S_IFDIR | 0700;
    r.open_flags = O_DIRECTORY | O_NONBLOCK;
    r.rdev = 0;
    img.fds[0].path = "/tmp/gone";
    EXPECT_TRUE(check_fields(img));
    constexpr const char* kBad = "fd 3: a removed directory of process";
    img.fds[0].path = "/tmp/../gone";
    expect_einval(img, kBad);
    img.fds[0].path = "/tmp/gone";
    r.mode = S_IFREG | 0600;
    expect_einval(img, kBad);
    r.mode = S_IFDIR | 0700;
    for (uint32_t flags : {uint32_t(O_DIRECTORY | O_NOFOLLOW), uint32_t(O_DIRECTORY | O_RDWR),
                           uint32_t(O_DIRECTORY | FASYNC)}) {
        r.open_flags = flags;
        expect_einval(img, kBad);
    }
    r.open_flags = O_DIRECTORY;
    // cwdoffset: at an offset (read before the rmdir: opened with the first
    // holder's directory), up to the largest off_t; by its name, so
    // O_NOFOLLOW too (fdshare), not FASYNC.
    for (uint64_t pos : {uint64_t(1), uint64_t(INT64_MAX)}) {
        r.pos = pos;
        EXPECT_TRUE(check_fields(img)) << pos;
        r.open_flags = O_DIRECTORY | O_NOFOLLOW;
        EXPECT_TRUE(check_fields(img)) << pos;
        r.open_flags = O_DIRECTORY | FASYNC;
        expect_einval(img, kBad);
        r.open_flags = O_DIRECTORY;
    }
    r.pos = uint64_t(INT64_MAX) + 1;
    expect_einval(img, kBad);
    r.pos = 0;
    r.rdev = 1u << 20;
    expect_einval(img, kBad);
}

// delcwd: a removed cwd's path (the fs record's), mode, mtime and fd (state/fs.cc).
TEST(RestoreFields, DeletedCwdPathModeAndFdInRange) {
    auto img = good();
    img.cwd = "/tmp/gone";
    img.deleted_cwd = image::DeletedCwdRecord{S_IFDIR | 02751, -1, 1234567890, 123456789};
    EXPECT_TRUE(check_fields(img));
    for (const char* p : {"/tmp/../x", "/tmp/./x", "/tmp//x", "/tmp/x/", "/", "/tmp/.."}) {
        img.cwd = p;
        expect_einval(img, "deleted cwd: path");
    }
    img.cwd = "/tmp/gone";
    img.deleted_cwd->mode = S_IFREG | 0644;
    expect_einval(img, "deleted directory mode 0100644");
    img.deleted_cwd->mode = S_IFDIR | 010000;
    expect_einval(img, "deleted directory mode");
    img.deleted_cwd->mode = S_IFDIR | 0700;
    img.deleted_cwd->mtime_nsec = 1000000000;
    expect_einval(img, "mtime nanoseconds");
    img.deleted_cwd->mtime_nsec = -1;
    expect_einval(img, "mtime nanoseconds");
    img.deleted_cwd->mtime_nsec = 0;
    img.deleted_cwd->fd = -2;
    expect_einval(img, "deleted cwd: fd -2");
    img.deleted_cwd->fd = 4;
    expect_einval(img, "fd 4: no such fd record");
    img.deleted_cwd->fd = 3;  // a regular file
    expect_einval(img, "fd 3 is no removed directory");
    auto& r = img.fds[0].rec;
    r.kind = uint32_t(image::FdKind::kDeletedDir);
    r.mode = S_IFDIR | 0700;
    r.open_flags = O_DIRECTORY;
    img.fds[0].path = "/tmp/other";  // another removed directory
    expect_einval(img, "fd 3 is no removed directory");
    img.fds[0].path = "/tmp/gone";
    EXPECT_TRUE(check_fields(img));
}

TEST(RestoreFields, AnonymousMemoryNamesOnlyOfTheirKind) {
    using K = image::VmaKind;
    EXPECT_EQ(state::anon_vma_name(K::kAnonPrivate, "[anon:a b]"), "a b");
    EXPECT_EQ(state::anon_vma_name(K::kAnonShared, "[anon_shmem:x]"), "x");
    EXPECT_EQ(state::anon_vma_name(K::kAnonSharedTaken, "[anon_shmem:x]"), "x");
    EXPECT_EQ(state::anon_vma_name(K::kAnonPrivate, "[anon_shmem:x]"), "");
    EXPECT_EQ(state::anon_vma_name(K::kAnonShared, "[anon:x]"), "");
    EXPECT_EQ(state::anon_vma_name(K::kFilePrivate, "[anon:x]"), "");
    EXPECT_EQ(state::anon_vma_name(K::kAnonPrivate, "[stack]"), "");
}

TEST(RestoreFields, RegistersMustPointIntoTheImage) {
    auto img = good();
    img.regs.rip = 0x600010;  // writable, not executable
    expect_einval(img, "rip 0x600010");
    img = good();
    img.regs.rsp = 0x400100;  // executable, not writable
    expect_einval(img, "rsp 0x400100");
    img = good();
    img.regs.rsp = 0x1000;
    expect_einval(img, "rsp 0x1000");
}

TEST(RestoreFields, EnumsAndFlagsInRange) {
    auto img = good();
    img.vmas[0].rec.kind = 10;
    expect_einval(img, "kind 10");
    img = good();
    img.vmas[1].rec.start = 0x400800;  // overlaps
    expect_einval(img, "VMA 400800-602000");
    img = good();
    img.fds[0].rec.open_flags |= O_CREAT;
    expect_einval(img, "open flags");
    img = good();
    img.fds.push_back(img.fds[0]);
    expect_einval(img, "fd number 3");
    img = good();
    img.sigactions.action[8].handler = 0x400000;  // SIGKILL
    expect_einval(img, "signal 9");
    img = good();
    img.task.nice = -21;
    expect_einval(img, "nice -21");
    img = good();
    img.rlimits.cur[7] = 10, img.rlimits.max[7] = 5;
    expect_einval(img, "rlimit 7");
    img = good();
    img.fds[0].path = std::string("/tmp/a\0b", 8);
    expect_einval(img, "holds a NUL");
}

// same_as (one open file description, restored by dup) names an earlier fd of
// the image that is its own description, and repeats its fields.
TEST(RestoreFields, SameAsNamesAnEarlierFdOfTheImage) {
    auto shared = [](int fd, int same_as) {
        auto img = good();
        img.fds.push_back(img.fds[0]);
        img.fds[1].rec.fd = fd, img.fds[1].rec.same_as = same_as;
        return img;
    };
    EXPECT_TRUE(check_fields(shared(4, 3)));
    auto img = shared(4, 3);
    img.fds[1].rec.fd_flags = image::kFdCloexec;  // per fd: may differ
    EXPECT_TRUE(check_fields(img));
    expect_einval(shared(4, 7), "fd 4: same_as 7 is not a lower fd");  // not in the image
    expect_einval(shared(4, 4), "fd 4: same_as 4");                    // itself
    expect_einval(shared(4, -2), "fd 4: same_as -2");
    expect_einval(shared(2, 3), "fd 2: same_as 3");  // a higher fd
    img = shared(4, 3);
    std::swap(img.fds[0], img.fds[1]);  // recorded after the fd naming it
    img.fds[1].rec.same_as = -1;
    img.fds[0].rec.same_as = 3;
    expect_einval(img, "fd 4: same_as 3 is not a lower fd recorded before it");
    img = shared(4, 3);
    img.fds.push_back(img.fds[1]);
    img.fds[2].rec.fd = 5, img.fds[2].rec.same_as = 4;  // a chain
    expect_einval(img, "fd 5: same_as 4");
    img = shared(4, 3);
    img.fds[1].rec.kind = uint32_t(image::FdKind::kCharDev);
    expect_einval(img, "fd 4: same_as 3 but its kind differs");
    img = shared(4, 3);
    img.fds[1].path = "/tmp/y";
    expect_einval(img, "its path differs");
    img = shared(4, 3);
    img.fds[1].rec.pos = 9;
    expect_einval(img, "its pos differs");
    img = shared(4, 3);
    img.fds[1].rec.open_flags |= O_APPEND;
    expect_einval(img, "its open_flags differs");
    img = shared(4, 3);
    img.fds[1].rec.reserved = 1;
    expect_einval(img, "fd 4: reserved");
}

// fidelity: content fingerprints (docs/files.md) only where the policy
// checks content, of the size the record says, at most the mapping's bytes.
TEST(RestoreFields, ContentFingerprintsInRange) {
    auto img = good();
    img.fds[0].rec.size = 10;
    img.fds[0].content = image::FdContentRecord{3, 0, 10, 1};
    EXPECT_TRUE(check_fields(img));
    img.fds[0].content->size = 11;
    expect_einval(img, "fd 3: fd-content of 11 bytes");
    img.fds[0].content->size = 10, img.fds[0].content->reserved = 1;
    expect_einval(img, "fd 3: fd-content");
    img.fds[0].content->reserved = 0, img.fds[0].rec.open_flags |= O_WRONLY;
    expect_einval(img, "fd 3: fd-content");  // a written file is not checked by content

    img = good();
    VmaEntry v{};
    v.rec.start = 0x700000, v.rec.end = 0x702000,
    v.rec.kind = uint32_t(image::VmaKind::kFilePrivate);
    v.rec.flags = image::kVmaRead;
    v.path = "/bin/foo";
    v.content = image::VmaContentRecord{0x700000, 0x2000, 1};
    img.vmas.push_back(v);
    EXPECT_TRUE(check_fields(img));
    img.vmas[2].content->bytes = 0x2001;
    expect_einval(img, "VMA 700000-702000: vma-content of 8193 bytes");
    img.vmas[2].content->bytes = 1;
    img.vmas[2].rec.kind = uint32_t(image::VmaKind::kFileShared);
    img.vmas[2].rec.flags |= image::kVmaShared | image::kVmaWrite;  // the task's own file
    expect_einval(img, "vma-content of 1 bytes");
}

// fidelity: the settings record, each value one the restore's syscalls take
// to mean what the image says.
TEST(RestoreFields, SettingsInRange) {
    auto with = [](auto edit) {
        auto img = good();
        image::SettingsRecord r{};
        r.timer_slack_ns = 50000, r.dumpable = 1, r.cpus_len = 8;
        img.settings = r;
        img.cpu_mask = std::string("\x01\0\0\0\0\0\0\0", 8);
        edit(*img.settings, img.cpu_mask);
        return img;
    };
    EXPECT_TRUE(check_fields(with([](auto&, auto&) {})));
    EXPECT_TRUE(check_fields(
        with([](auto& r, auto&) { r.policy = 1, r.rt_priority = 99, r.timer_slack_ns = 0; })));
    expect_einval(with([](auto& r, auto&) { r.policy = 6; }), "scheduling policy 6");
    expect_einval(with([](auto& r, auto&) { r.policy = 1; }), "scheduling policy 1 priority 0");
    expect_einval(with([](auto& r, auto&) { r.rt_priority = 3; }), "priority 3");
    expect_einval(with([](auto& r, auto&) { r.timer_slack_ns = 0; }), "timer slack 0 ns");
    expect_einval(with([](auto& r, auto&) { r.oom_score_adj = -1001; }), "oom_score_adj -1001");
    expect_einval(with([](auto& r, auto&) { r.dumpable = 2; }), "dumpable 2");
    expect_einval(with([](auto& r, auto&) { r.membarrier = 1u << 3; }),
                  "membarrier registrations 0x8");
    expect_einval(with([](auto&, auto& m) { m.assign(8, '\0'); }), "or no CPU");
    expect_einval(with([](auto& r, auto&) { r.cpus_len = 12; }), "CPU affinity mask of 12 bytes");
}

// fid-exact: seccomp-filter records (state/seccomp.cc).
SeccompFilterEntry filter(std::vector<sock_filter> insns, uint32_t flags = 0) {
    SeccompFilterEntry f;
    f.rec.len = uint32_t(insns.size()), f.rec.flags = flags;
    f.prog.assign(reinterpret_cast<const char*>(insns.data()), insns.size() * sizeof(sock_filter));
    return f;
}

// Returns `action` for syscall `nr`, allows the rest.
SeccompFilterEntry deny(int nr, uint32_t action) {
    return filter({BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
                   BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 1),
                   BPF_STMT(BPF_RET | BPF_K, action),
                   BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)});
}

TEST(RestoreFields, SeccompFiltersInRange) {
    auto img = good();
    img.seccomp.push_back(deny(SYS_getpid, SECCOMP_RET_ERRNO | 13));
    img.seccomp.push_back(deny(SYS_getuid, SECCOMP_RET_KILL_PROCESS));
    img.seccomp[1].rec.index = 1;
    EXPECT_TRUE(check_fields(img));
    img.seccomp[1].rec.flags = SECCOMP_FILTER_FLAG_LOG;
    EXPECT_TRUE(check_fields(img));
    img.seccomp[1].rec.flags = SECCOMP_FILTER_FLAG_TSYNC;
    expect_einval(img, "seccomp filter 1: flags 0x1");
    img.seccomp[1].rec.flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
    expect_einval(img, "flags 0x8");
    img.seccomp[1].rec.flags = 0;
    img.seccomp[1].rec.reserved = 1;
    expect_einval(img, "reserved 0x1");
    img.seccomp[1].rec.reserved = 0;
    img.seccomp[1].rec.len = 5;  // the program holds 4
    expect_einval(img, "seccomp filter 1: 5 instructions");
    // The kernel's limit along one path: 32768 instructions, 4 more per filter.
    img = good();
    for (uint32_t i = 0; i < 8; ++i) {
        img.seccomp.push_back(
            filter(std::vector<sock_filter>(4096, BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW))));
        img.seccomp.back().rec.index = i;
    }
    expect_einval(img, "more than 32768 instructions in all");
}

// The blob's calls after installing the filters, evaluated on each filter.
TEST(RestoreFields, SeccompFiltersMustLetTheRestorerFinish) {
    auto img = good();
    img.seccomp.push_back(deny(SYS_getpid, SECCOMP_RET_ERRNO | 13));
    state::BlobCall k{"write", SYS_write, {5, std::nullopt, 1, 0, 0, 0}, 1};
    state::BlobCall pid{"getpid", SYS_getpid, {}, 1};
    EXPECT_TRUE(state::check_seccomp_allows(img, std::array{k}));
    auto s = state::check_seccomp_allows(img, std::array{k, pid});
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, EPERM);
    EXPECT_NE(s.error().what.find("seccomp filter 0 (of 1, oldest first) answers "
                                  "SECCOMP_RET_ERRNO 13 to the restorer's getpid(2)"),
              std::string::npos)
        << s.error().what;
    // Not yet installed when the call runs: no matter.
    pid.filters = 0;
    EXPECT_TRUE(state::check_seccomp_allows(img, std::array{pid}));
    // A filter looking at an argument the restorer cannot tell in advance.
    img.seccomp[0] = filter({BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1])),
                             BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)});
    s = state::check_seccomp_allows(img, std::array{k});
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().what.find("looks at argument 1 of the restorer's write(2)"),
              std::string::npos)
        << s.error().what;
    // ... or at a known one: fd 5, high half 0.
    img.seccomp[0] =
        filter({BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 5, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_THREAD),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0]) + 4),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_THREAD),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_LOG)});
    EXPECT_TRUE(state::check_seccomp_allows(img, std::array{k}));
    k.args[0] = 6;
    s = state::check_seccomp_allows(img, std::array{k});
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().what.find("SECCOMP_RET_KILL_THREAD"), std::string::npos) << s.error().what;
    // Hostile programs: a jump past the end, a read of an unwritten scratch
    // word, division by X = 0 (the kernel's filter then answers 0: kill).
    for (auto bad : std::vector<std::vector<sock_filter>>{
             {BPF_JUMP(BPF_JMP | BPF_JA, 7, 0, 0), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)},
             {BPF_STMT(BPF_LD | BPF_MEM, 3), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)},
             {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)},
             {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0)},
             {BPF_STMT(BPF_LDX | BPF_IMM, 0), BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0),
              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)}}) {
        img.seccomp[0] = filter(bad);
        EXPECT_FALSE(state::check_seccomp_allows(img, std::array{k}));
    }
}

// fid-exact: posix-timer records (state/timers.cc).
TEST(RestoreFields, PosixTimersInRange) {
    auto with = [](auto edit) {
        auto img = good();
        image::PosixTimerRecord t{};
        t.id = 3, t.clockid = CLOCK_MONOTONIC, t.notify = SIGEV_SIGNAL, t.signo = SIGUSR1;
        t.value_ns = 1000, t.interval_ns = 1000;
        img.posix_timers.push_back(t);
        edit(img.posix_timers.back());
        return img;
    };
    EXPECT_TRUE(check_fields(with([](auto&) {})));
    EXPECT_TRUE(check_fields(with([](auto& t) { t.notify = SIGEV_NONE, t.signo = 0; })));
    expect_einval(with([](auto& t) { t.clockid = -6; }), "POSIX timer 3: clock -6");
    expect_einval(with([](auto& t) { t.clockid = 4; }), "clock 4");  // CLOCK_MONOTONIC_RAW
    expect_einval(with([](auto& t) { t.notify = 2; }), "notify 2");  // SIGEV_THREAD
    expect_einval(with([](auto& t) { t.signo = SIGKILL; }), "signal 9");
    expect_einval(with([](auto& t) { t.signo = 65; }), "signal 65");
    expect_einval(with([](auto& t) { t.signo = 0; }), "signal 0");
    expect_einval(with([](auto& t) { t.id = -1; }), "POSIX timer -1: id");
    expect_einval(with([](auto& t) { t.id = 1 << 20; }), "POSIX timer id 1048576");
    expect_einval(with([](auto& t) { t.value_ns = 1ull << 63; }), "time left 9223372036854775808");
}

// timer: a posix-timer-thread record names one of the other threads of a
// SIGEV_THREAD_ID timer.
TEST(RestoreFields, PosixTimerThreadInRange) {
    auto with = [](int32_t notify, int32_t tid) {
        auto img = good();
        img.task.pid = 100;
        ThreadImage th;
        th.rec.tid = 101;
        img.threads.push_back(th);
        image::PosixTimerRecord t{};
        t.id = 2, t.clockid = CLOCK_MONOTONIC, t.notify = notify, t.signo = SIGRTMIN;
        img.posix_timers.push_back(t);
        img.posix_timer_threads.push_back({2, tid});
        return img;
    };
    EXPECT_TRUE(state::check_posix_timers(with(SIGEV_THREAD_ID, 101)));
    auto einval = [](const DecodedImage& img, std::string_view words) {
        auto s = state::check_posix_timers(img);
        ASSERT_FALSE(s);
        EXPECT_EQ(s.error().code, EINVAL);
        EXPECT_NE(s.error().what.find(words), std::string::npos) << s.error().what;
    };
    einval(with(SIGEV_THREAD_ID, 100), "target thread 100 is not one of the other threads");
    einval(with(SIGEV_THREAD_ID, 102), "target thread 102 is not one of the other threads");
    einval(with(SIGEV_SIGNAL, 101), "a target thread for a timer that signals no thread");
    einval(with(SIGEV_NONE, 101), "a target thread for a timer that signals no thread");
    auto other = with(SIGEV_THREAD_ID, 101);
    other.posix_timer_threads[0].id = 3;  // no timer 3
    einval(other, "POSIX timer 3: a target thread for a timer that signals no thread");
}

// Without PR_TIMER_CREATE_RESTORE_IDS (a kernel before 6.17: here a seccomp
// filter answers it EINVAL) the ids are handed out in order and the gaps
// freed again.
TEST(RestoreFields, PosixTimersKeepTheirIdsWithoutThePrctl) {
    state::TimersPlan p;
    for (int id : {0, 2, 5}) {
        image::PosixTimerRecord t{};
        t.id = id, t.clockid = CLOCK_MONOTONIC, t.notify = SIGEV_NONE;
        t.value_ns = id == 5 ? 0 : 500'000'000'000ull;
        p.timers.push_back(t);
    }
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 77 /* PR_TIMER_CREATE_RESTORE_IDS */, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        sock_fprog prog{static_cast<unsigned short>(std::size(f)), f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, 2, &prog)) _exit(10);
        if (prctl(77, 1, 0, 0, 0) == 0) _exit(11);
        if (state::child_posix_timers(p).err) _exit(12);
        std::ifstream in("/proc/self/timers");
        std::stringstream ss;
        ss << in.rdbuf();
        std::string text = ss.str(), ids;
        for (size_t pos = 0; (pos = text.find("ID: ", pos)) != std::string::npos; pos += 4)
            if (pos == 0 || text[pos - 1] == '\n') ids += text.substr(pos + 4, 1);
        if (ids != "520") _exit(13);  // newest first
        itimerspec its{};
        if (syscall(SYS_timer_gettime, 2, &its) || its.it_value.tv_sec < 400) _exit(14);
        _exit(0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(child, &st, 0), child);
    EXPECT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

DecodedImage threaded() {
    auto img = good();
    img.task.pid = 42;
    img.main_thread = image::ThreadRecord{};
    img.main_thread->tid = 42;
    ThreadImage t;
    t.rec.tid = 43;
    t.regs.rip = 0x400020;
    t.regs.rsp = 0x600ff0;
    img.threads.push_back(t);
    return img;
}

TEST(RestoreFields, ThreadRecordsInRange) {
    EXPECT_TRUE(check_fields(threaded()));
    auto img = threaded();
    img.threads[0].rec.tid = -5;
    expect_einval(img, "thread id -5");
    img = threaded();
    img.threads[0].rec.tid = 1 << 30;
    expect_einval(img, "thread id 1073741824");
    img = threaded();
    img.threads[0].regs.rip = 0x600010;
    expect_einval(img, "thread 43: rip 0x600010");
    img = threaded();
    img.threads[0].regs.rsp = 0x1000;
    expect_einval(img, "thread 43: rsp 0x1000");
    img = threaded();
    img.threads[0].rec.robust_head = 0x600100, img.threads[0].rec.robust_len = 4096;
    expect_einval(img, "thread 43: robust list 0x600100 of 4096 bytes");
    img = threaded();
    img.main_thread->rseq_addr = 0x600010, img.main_thread->rseq_len = 32;
    expect_einval(img, "thread 42: rseq area 0x600010");
    img = threaded();
    img.threads[0].rec.clear_child_tid = 0x600001;
    expect_einval(img, "thread 43: clear_child_tid 0x600001");
    img = threaded();
    image::SiginfoRecord si{};
    si.info[0] = 9;
    img.threads[0].pending.push_back(si);
    expect_einval(img, "thread 43: pending signal number 9");
    img = threaded();
    si.info[0] = 10;
    si.queue = image::kSigqueueShared;
    img.threads[0].pending.push_back(si);
    expect_einval(img, "thread 43: a signal of the process queue");
    img = threaded();
    img.threads[0].sigstate.altstack_flags = 0x40;
    expect_einval(img, "thread 43: alternate stack flags 0x40");
}

TEST(RestoreFields, ThreadsNeedTheirOriginalTids) {
    auto img = threaded();
    RestoreRequest req;
    req.want_pid = 0;
    auto s = check_thread_ids(img, req);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, EPERM);
    EXPECT_NE(s.error().what.find("restore it into /crfs/42"), std::string::npos);
    req.want_pid = 42;
    EXPECT_TRUE(check_thread_ids(img, req));
}

}  // namespace
}  // namespace crfs

namespace crfs {
namespace {

// fid: the syscall-restart record (state/restart.cc) must describe the
// registers it comes with: a restart code, a syscall number, rax the
// syscall run again (restart_syscall for -ERESTART_RESTARTBLOCK), orig_rax -1.
TEST(RestoreFields, SyscallRestartMatchesTheRegisters) {
    auto img = test::minimal_image();
    img.regs.orig_rax = ~0ull;
    img.regs.rax = 34;  // pause
    img.restart = image::SyscallRestartRecord{34, -514};
    EXPECT_TRUE(check_fields(img));
    img.restart->code = -4;  // EINTR: no restart
    test::expect_einval(img, "code -4 is no restart code");
    img.restart = image::SyscallRestartRecord{4096, -514};
    test::expect_einval(img, "syscall restart: syscall 4096");
    img.restart = image::SyscallRestartRecord{35, -514};  // rax says 34
    test::expect_einval(img, "are not syscall 35 restarted");
    img.restart = image::SyscallRestartRecord{35, -516};  // restart_syscall expected
    test::expect_einval(img, "are not syscall 35 restarted");
    img.regs.rax = 219;
    EXPECT_TRUE(check_fields(img));
    img.regs.orig_rax = 35;
    test::expect_einval(img, "orig_rax 0x23");
}

// tty: the shell job's terminal record (state/tty.cc check_tty): every field
// in range, only in the root's records, a foreground group the tree makes.
void expect_tty_einval(const DecodedImage& img, uint32_t index, const char* words) {
    auto s = state::check_tty(img, index);
    ASSERT_FALSE(s) << words;
    EXPECT_EQ(s.error().code, EINVAL);
    EXPECT_NE(s.error().what.find(words), std::string::npos) << s.error().what;
}

TEST(RestoreFields, TtyRecordInRange) {
    auto img = good();
    img.task.pid = img.task.pgid = 100, img.task.sid = 7;
    img.fds[0].rec.kind = uint32_t(image::FdKind::kTty);
    expect_tty_einval(img, 0, "fds on a terminal in an image without its tty record");
    image::TtyRecord r{};
    r.fg_pgid = 100, r.iflag = 0500, r.oflag = 05, r.cflag = 0277, r.lflag = 0105073;
    r.ispeed = r.ospeed = 38400, r.rows = 24, r.cols = 80;
    img.tty = r;
    EXPECT_TRUE(state::check_tty(img, 0));
    expect_tty_einval(img, 1, "a tty record in process 1's records");
    auto edit = [&](auto change, const char* words) {
        auto bad = img;
        change(*bad.tty);
        expect_tty_einval(bad, 0, words);
    };
    edit([](auto& t) { t.flags = 1; }, "flags 0x1");
    edit([](auto& t) { t.reserved = 2; }, "reserved 0x2");
    edit([](auto& t) { t.line = 2; }, "line discipline 2");
    edit([](auto& t) { t.iflag = 0100000; }, "termios flags 0100000");
    edit([](auto& t) { t.lflag = 01000000; }, "termios flags");
    edit([](auto& t) { t.ospeed = 200000000; }, "speeds 38400 200000000");
    edit([](auto& t) { t.index = 1u << 20; }, "index 1048576");
    edit([](auto& t) { t.fg_pgid = 1; },
         "foreground process group 1, which the tree does not lead");
    edit([](auto& t) { t.fg_pgid = -5; }, "foreground process group -5");
    auto follower = img;
    follower.task.pgid = 99;
    follower.tty->fg_pgid = 99;
    expect_tty_einval(follower, 0, "its root (pid 100) leads neither its session nor its group");
    // A tree: a group a live member leads may be in the foreground; a zombie's may not.
    auto tree = img;
    tree.processes = {{100, 1, 100, 7, 0, 0}, {101, 100, 101, 7, 0, 0}};
    tree.tty->fg_pgid = 101;
    EXPECT_TRUE(state::check_tty(tree, 0));
    tree.processes[1].flags = image::kProcessZombie;
    expect_tty_einval(tree, 0, "foreground process group 101, which the tree does not lead");
}

}  // namespace
}  // namespace crfs
