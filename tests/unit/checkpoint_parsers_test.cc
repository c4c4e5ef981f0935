// The checkpoint's /proc parsers and page policy on fixed text: maps/smaps,
// VMA classification, which pagemap entries are stored, stat, status, fdinfo,
// and the syscall-restart rewrite of registers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "checkpoint/files.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/file_policy.h"
#include "state/memory_dump.h"
#include "state/restart.h"
#include "state/task_attrs.h"

namespace crfs {
namespace {

using image::VmaKind;

constexpr const char* kSmaps =
    "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 248056                     /usr/bin/sleep\n"
    "Size:                  8 kB\n"
    "Rss:                   8 kB\n"
    "VmFlags: rd mr mw me sd \n"
    "55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]\n"
    "VmFlags: rd wr mr mw me ac sd \n"
    "7f00000000-7f00001000 ---p 00000000 00:00 0 \n"
    "7f00001000-7f00009000 rw-s 00000000 00:01 1043                       /dev/zero (deleted)\n"
    "7f00009000-7f0000b000 rw-p 00003000 fe:00 77            /tmp/my file with spaces\n"
    "7f0000b000-7f0000c000 rw-s 00000000 fe:00 78            /tmp/shared (deleted)\n"
    "7f0000c000-7f0000d000 r--s 00000000 fe:00 79            /tmp/shared\n"
    "7ffc1000-7ffc2000 r--p 00000000 00:00 0                  [vvar]\n"
    "7ffc2000-7ffc3000 r--p 00000000 00:00 0                  [vvar_vclock]\n"
    "7ffc3000-7ffc5000 r-xp 00000000 00:00 0                  [vdso]\n"
    "7ffd0000-7ffd2000 rw-p 00000000 00:00 0                  [stack]\n"
    "VmFlags: rd wr mr mw me gd ac \n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]\n";

TEST(LimitsTest, ParsesProcLimitsLikeGetrlimit) {
    // This process's own limits, both ways.
    auto text = read_proc(::getpid(), "limits");
    ASSERT_TRUE(text) << text.error().what;
    auto l = parse_limits(*text);
    ASSERT_TRUE(l) << l.error().what;
    for (int r = 0; r < 16; ++r) {
        rlimit64 want;
        ASSERT_EQ(::getrlimit64(__rlimit_resource(r), &want), 0);
        EXPECT_EQ(l->cur[r], want.rlim_cur) << r;
        EXPECT_EQ(l->max[r], want.rlim_max) << r;
    }
    auto bad = parse_limits("Limit Soft\nMax cpu time  x\n");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().what, "parse limits: bad row 0");
}

TEST(MapsTest, ParsesMapsAndSmaps) {
    auto m = parse_maps(kSmaps);
    ASSERT_TRUE(m) << m.error().what;
    ASSERT_EQ(m->size(), 12u);
    const MapsEntry& bin = (*m)[0];
    EXPECT_EQ(bin.start, 0x55d0c0a00000u);
    EXPECT_EQ(bin.end, 0x55d0c0a02000u);
    EXPECT_STREQ(bin.perms, "r--p");
    EXPECT_EQ(bin.dev_major, 0xfeu);
    EXPECT_EQ(bin.ino, 248056u);
    EXPECT_EQ(bin.path, "/usr/bin/sleep");
    EXPECT_EQ((*m)[2].path, "");
    EXPECT_EQ((*m)[4].pgoff, 3u);  // 0x3000 bytes = page 3
    EXPECT_EQ((*m)[4].path, "/tmp/my file with spaces");
    // VmFlags: "gd" is bit 8 of kVmFlagNames.
    EXPECT_TRUE((*m)[10].vm_flags & (1ull << 8));
    EXPECT_FALSE((*m)[1].vm_flags & (1ull << 8));
    EXPECT_TRUE((*m)[1].vm_flags & 1);  // rd
    EXPECT_TRUE(vma_record((*m)[10]).flags & image::kVmaGrowsDown);
    EXPECT_TRUE(vma_record((*m)[10]).flags & image::kVmaStack);
    EXPECT_TRUE(vma_record((*m)[1]).flags & image::kVmaHeap);
    EXPECT_TRUE(vma_record((*m)[3]).flags & image::kVmaDeleted);
    EXPECT_EQ(vma_record((*m)[0]).dev, makedev(0xfe, 0));
}

// Detail lines other than VmFlags, Shared_*, Rss, Swap and Anonymous are
// skipped unsplit; those are still read, whatever comes between them. An
// area is counted once its Rss line is read; a maps line alone is not.
TEST(MapsTest, ReadsSharedBytesAmongSkippedDetails) {
    auto m = parse_maps(
        "1000-3000 rw-s 00000000 00:01 7   /dev/zero (deleted)\n"
        "Size:                  8 kB\n"
        "Rss:                  12 kB\n"
        "Shared_Clean:          4 kB\n"
        "Private_Dirty:       100 kB\n"
        "Anonymous:             5 kB\n"
        "AnonHugePages:      2048 kB\n"
        "Swap:                  3 kB\n"
        "SwapPss:               7 kB\n"
        "Shared_Dirty:          8 kB\n"
        "THPeligible:    0\n"
        "VmFlags: rd wr sh mr mw me ms sd \n"
        "3000-4000 r--p 00000000 00:00 0\n"
        "Shared_Dirty:          0 kB\n"
        "4000-5000 r--p 00000000 00:00 0\n");
    ASSERT_TRUE(m) << m.error().what;
    ASSERT_EQ(m->size(), 3u);
    EXPECT_EQ((*m)[0].shared_kb, 12u);
    EXPECT_EQ((*m)[0].resident_kb, 15u);  // Rss + Swap
    EXPECT_EQ((*m)[0].anon_kb, 5u);
    EXPECT_EQ((*m)[0].swap_kb, 3u);
    EXPECT_TRUE((*m)[0].counted);
    EXPECT_TRUE((*m)[0].vm_flags & 1);  // rd
    EXPECT_EQ((*m)[1].shared_kb, 0u);
    EXPECT_EQ((*m)[1].resident_kb, 0u);
    EXPECT_EQ((*m)[1].vm_flags, 0u);
    EXPECT_FALSE((*m)[1].counted);  // no Rss line: its counts say nothing
    EXPECT_FALSE((*m)[2].counted);
    EXPECT_EQ(vm_flag_mask("gd"), 1ull << 8);
    EXPECT_EQ(vm_flag_mask("zz"), 0u);
}

// read_file reads in growing chunks: every byte, and EFBIG one byte past max.
TEST(ReadFileTest, LargeFilesWholeAndBounded) {
    char path[] = "/tmp/crfs-read-file-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string data(300000, 'x');
    for (size_t i = 0; i < data.size(); ++i) data[i] = char('a' + i % 26);
    ASSERT_EQ(::write(fd, data.data(), data.size()), ssize_t(data.size()));
    ::close(fd);
    auto all = read_file(path);
    ASSERT_TRUE(all) << all.error().what;
    EXPECT_EQ(*all, data);
    auto exact = read_file(path, data.size());
    ASSERT_TRUE(exact) << exact.error().what;
    EXPECT_EQ(exact->size(), data.size());
    auto over = read_file(path, data.size() - 1);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, EFBIG);
    EXPECT_EQ(read_file(path, 5000).error().code, EFBIG);
    ::unlink(path);
}

// perf (session 48): a file is read first into a buffer on the stack, so a
// small one comes back as a string of its own size (a checkpoint keeps
// many: fdinfo, timers). Around that buffer's size each is read whole, and
// EFBIG one byte past max, before the buffer is full or after.
TEST(ReadFileTest, AroundTheFirstBufferWholeAndBounded) {
    char path[] = "/tmp/crfs-read-file-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    for (size_t size : {0ul, 1ul, 100ul, 8191ul, 8192ul, 8193ul, 12289ul}) {
        std::string data(size, 'x');
        for (size_t i = 0; i < size; ++i) data[i] = char('a' + i % 26);
        ASSERT_TRUE(write_file_atomic(path, data, 0600));
        auto all = read_file(path);
        ASSERT_TRUE(all) << all.error().what;
        EXPECT_EQ(*all, data) << size;
        auto exact = read_file(path, size);
        ASSERT_TRUE(exact) << size;
        EXPECT_EQ(*exact, data) << size;
        if (size > 0) {
            auto over = read_file(path, size - 1);
            ASSERT_FALSE(over) << size;
            EXPECT_EQ(over.error().code, EFBIG) << size;
        }
        if (size == 100) {
            EXPECT_LT(all->capacity(), 1024u);  // not a 4 KiB string
        }
    }
    ::unlink(path);
}

// read_maps parses a MiB at a time: lines cut by a read are carried over, so
// it answers what parse_maps of the whole text answers (entries, line
// numbers of errors), and EFBIG past max.
TEST(MapsTest, ReadInPiecesAsWhole) {
    std::string text;
    for (int i = 0; i < 6000; ++i) {  // ~2.7 MB: lines cut at several MiB edges
        uint64_t start = 0x10000000ull + uint64_t(i) * 0x2000;
        text += strfmt("{:x}-{:x} {}p {:08x} fe:{:02x} {}", start, start + 0x1000 * (1 + i % 2),
                       i % 3 ? "rw-" : "r--", i * 4096, i % 7, i % 5 ? i : 0);
        text += i % 4 ? strfmt("      /tmp/file {} with spaces\n", i) : std::string("\n");
        text += strfmt("Size:           {} kB\nRss:            {} kB\nPss:  1 kB\n", 4 + i % 2 * 4,
                       i % 9);
        text += strfmt("Anonymous:      {} kB\n", i % 5);
        text += strfmt("Shared_Clean:   {} kB\nShared_Dirty:   {} kB\nSwap:   {} kB\n", i % 3,
                       i % 4, i % 2);
        text += std::string("THPeligible:    0\nProtectionKey:  0\n");
        text += i % 11 ? "VmFlags: rd wr mr mw me ac sd \n" : "VmFlags: rd zz mr qq sd\n";
    }
    text += "7f0000000000-7f0000001000 rw-p 00000000 00:00 0";  // no '\n' at the very end
    std::vector<std::string> made;  // removed at the end, a failed assertion too
    struct Unlink {
        std::vector<std::string>& paths;
        ~Unlink() {
            for (const auto& p : paths) ::unlink(p.c_str());
        }
    } unlink_made{made};
    auto write = [&made](const std::string& data) {
        char path[] = "/tmp/crfs-read-maps-XXXXXX";
        int fd = ::mkstemp(path);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::write(fd, data.data(), data.size()), ssize_t(data.size()));
        ::close(fd);
        made.push_back(path);
        return std::string(path);
    };
    std::string path = write(text);
    auto whole = parse_maps(text);
    auto pieces = read_maps(path, 256 << 20);
    ASSERT_TRUE(whole) << whole.error().what;
    ASSERT_TRUE(pieces) << pieces.error().what;
    ASSERT_EQ(pieces->size(), 6001u);
    ASSERT_EQ(pieces->size(), whole->size());
    for (size_t i = 0; i < whole->size(); ++i) {
        const MapsEntry &a = (*whole)[i], &b = (*pieces)[i];
        EXPECT_EQ(
            std::tie(a.start, a.end, a.pgoff, a.dev_major, a.dev_minor, a.ino, a.path, a.vm_flags,
                     a.unknown_flags, a.shared_kb, a.resident_kb, a.anon_kb, a.swap_kb, a.counted),
            std::tie(b.start, b.end, b.pgoff, b.dev_major, b.dev_minor, b.ino, b.path, b.vm_flags,
                     b.unknown_flags, b.shared_kb, b.resident_kb, b.anon_kb, b.swap_kb, b.counted))
            << i;
        EXPECT_EQ(std::string_view(a.perms), std::string_view(b.perms)) << i;
    }
    EXPECT_EQ((*pieces)[11].unknown_flags, "zz qq");
    EXPECT_EQ((*pieces)[1].path, "/tmp/file 1 with spaces");
    EXPECT_EQ((*pieces)[6].shared_kb, 0u + 2u);
    EXPECT_EQ(read_maps(path, text.size() - 1).error().code, EFBIG);

    std::string bad = text + "\nhello world\n";  // an error past the first MiB: same line number
    path = write(bad);
    auto bad_pieces = read_maps(path, 256 << 20);
    ASSERT_FALSE(bad_pieces);
    EXPECT_EQ(bad_pieces.error().what, path + ": " + parse_maps(bad).error().what);
    EXPECT_NE(bad_pieces.error().what.find("line 66002:"), std::string::npos)
        << bad_pieces.error().what;
}

// A line no read of maps could hold (past 1 MiB without a newline) is
// refused, not carried over for ever; also past the first piece read.
TEST(MapsTest, ALineLongerThanAMiBIsRefused) {
    std::string text = "10000-11000 rw-p 00000000 00:00 0\n";
    text += "20000-21000 rw-p 00000000 00:00 0 /" + std::string(1536 << 10, 'a') + "\n";
    char path[] = "/tmp/crfs-read-maps-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size()));
    ::close(fd);
    auto m = read_maps(path, 256 << 20);
    ::unlink(path);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, EINVAL);
    EXPECT_NE(m.error().what.find("a line longer than 1 MiB"), std::string::npos) << m.error().what;
}

// In a forked child, as root: the child becomes nobody at RLIMIT_NPROC 0, so
// that no thread can start (exits 2 if it cannot, 3 if a thread still starts).
void become_nobody_who_may_start_no_thread() {
    rlimit none{0, 0};
    if (::setrlimit(RLIMIT_NPROC, &none) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
        ::_exit(2);
    try {
        std::thread([] {}).join();
        ::_exit(3);
    } catch (const std::system_error&) {
    }
}

// read_maps reads on without a thread when it may not start one (a caller
// at its RLIMIT_NPROC): the same entries, not an error.
TEST(MapsTest, ReadsOnWithoutAThreadWhenNoneCanStart) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
    std::string text;
    for (int i = 0; i < 8000; ++i) {  // ~300 KB: more than one piece
        uint64_t start = 0x10000000ull + uint64_t(i) * 0x2000;
        text += strfmt("{:x}-{:x} {}p 00000000 00:00 0\n", start, start + 0x1000,
                       i % 2 ? "rw-" : "r--");
    }
    char path[] = "/tmp/crfs-read-maps-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size()));
    ASSERT_EQ(::fchmod(fd, 0644), 0);
    ::close(fd);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        become_nobody_who_may_start_no_thread();
        auto m = read_maps(path, 256 << 20);
        ::_exit(!m                                                 ? 4
                : m->size() != 8000                                ? 5
                : m->back().start != 0x10000000ull + 7999 * 0x2000 ? 6
                                                                   : 0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ::unlink(path);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "2: setup, 3: a thread started, 4: read_maps failed, "
                                         "5/6: other entries";
}

// smaps of a process with thousands of areas, as the kernel serves it (a
// page of records per read: ~5 areas), read on by a second thread while the
// first parses: every area of ours, in order, with its protection and flags.
TEST(MapsTest, SmapsOfThousandsOfAreasReadOnWhileParsed) {
    auto vm_flag_index = [](std::string_view name) {
        auto it = std::find(std::begin(image::kVmFlagNames), std::end(image::kVmFlagNames), name);
        return size_t(it - std::begin(image::kVmFlagNames));
    };
    constexpr size_t kAreas = 4000;
    const size_t page = size_t(::sysconf(_SC_PAGESIZE));
    // A PROT_NONE page on each side: the first and last areas merge with no
    // neighbour of the process (ASan's mappings lie next to ours).
    char* whole = static_cast<char*>(::mmap(nullptr, (kAreas + 2) * page, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(whole, MAP_FAILED);
    struct Unmap {
        void* p;
        size_t n;
        ~Unmap() { ::munmap(p, n); }
    } unmap{whole, (kAreas + 2) * page};
    char* base = whole + page;
    ASSERT_EQ(::mprotect(whole, page, PROT_NONE), 0);
    ASSERT_EQ(::mprotect(base + kAreas * page, page, PROT_NONE), 0);
    for (size_t i = 0; i < kAreas; i += 2)
        ASSERT_EQ(::mprotect(base + i * page, page, PROT_READ), 0);
    for (size_t i = 1; i < kAreas; i += 2) base[i * page] = 1;  // Rss in every other area
    ASSERT_EQ(::madvise(base + page, page, MADV_DONTDUMP), 0);
    auto m = read_maps("/proc/self/smaps", 256 << 20);
    ASSERT_TRUE(m) << m.error().what;
    std::vector<const MapsEntry*> ours;
    for (const auto& e : *m)
        if (e.start >= uint64_t(base) && e.end <= uint64_t(base) + kAreas * page)
            ours.push_back(&e);
    ASSERT_EQ(ours.size(), kAreas);
    for (size_t i = 0; i < kAreas; ++i) {
        const MapsEntry& e = *ours[i];
        ASSERT_EQ(e.start, uint64_t(base) + i * page) << i;
        ASSERT_EQ(e.end, e.start + page) << i;
        ASSERT_EQ(std::string_view(e.perms), i % 2 ? "rw-p" : "r--p") << i;
        ASSERT_EQ(e.resident_kb, i % 2 ? page / 1024 : 0) << i;
        ASSERT_TRUE(e.vm_flags & (1ull << vm_flag_index("rd"))) << i;
        ASSERT_EQ(bool(e.vm_flags & (1ull << vm_flag_index("dd"))), i == 1) << i;
    }
}

TEST(MapsTest, Classifies) {
    auto m = parse_maps(kSmaps).value();
    VmaKind want[] = {VmaKind::kFilePrivate, VmaKind::kAnonPrivate, VmaKind::kAnonPrivate,
                      VmaKind::kAnonShared,  VmaKind::kFilePrivate, VmaKind::kAnonShared,
                      VmaKind::kFileShared,  VmaKind::kVvar,        VmaKind::kVvar,
                      VmaKind::kVdso,        VmaKind::kAnonPrivate, VmaKind::kVsyscall};
    for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(classify_vma(m[i]), want[i]) << m[i].path;
}

TEST(MapsTest, RejectsGarbage) {
    auto m = parse_maps("hello world\n");
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().what, "parse maps line 1: \"hello world\"");
    EXPECT_FALSE(parse_maps("2000-1000 rw-p 00000000 00:00 0\n"));  // end before start
    EXPECT_FALSE(parse_maps("1000-2000 rw-p 00000000 00:00 x\n"));
}

TEST(PagemapTest, WhichPagesAreStored) {
    constexpr uint64_t present = kPmPresent, swapped = kPmSwapped, file = kPmFileOrSharedAnon;
    EXPECT_TRUE(page_needed(VmaKind::kAnonPrivate, present));
    EXPECT_TRUE(page_needed(VmaKind::kAnonPrivate, swapped));
    EXPECT_FALSE(page_needed(VmaKind::kAnonPrivate, 0));  // never touched
    // Private file mapping: a page-cache page is clean, an anonymous copy is dirty.
    EXPECT_FALSE(page_needed(VmaKind::kFilePrivate, present | file));
    EXPECT_TRUE(page_needed(VmaKind::kFilePrivate, present));
    EXPECT_TRUE(page_needed(VmaKind::kFilePrivate, swapped));
    EXPECT_FALSE(page_needed(VmaKind::kFilePrivate, 0));
    for (VmaKind k : {VmaKind::kFileShared, VmaKind::kVdso, VmaKind::kVvar, VmaKind::kVsyscall})
        EXPECT_FALSE(page_needed(k, present));
}

// perf (session 18): a buffer of 1 MiB or more is mapped on huge-page
// boundaries in whole huge pages, so MADV_HUGEPAGE can take effect and the
// pre-fault is a few huge-page faults; it keeps its bytes when it grows.
TEST(PageBufferTest, AMiBOrMoreLiesOnHugePageBoundaries) {
    constexpr uintptr_t kHuge = 2 << 20;
    PageBuffer b;
    ASSERT_TRUE(b.reserve((1 << 20) + (128 << 10)));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHuge, 0u);
    auto off = b.grow(3 << 20);  // past the first mapping: mremap
    ASSERT_TRUE(off);
    EXPECT_EQ(*off, 0u);
    std::memset(b.data(), 'x', 3 << 20);
    ASSERT_TRUE(b.grow(4 << 20));
    EXPECT_EQ(std::string(b.data(), 3 << 20), std::string(3 << 20, 'x'));
    PageBuffer small;  // a small member of a tree: not rounded up
    ASSERT_TRUE(small.reserve(64 << 10));
    ASSERT_TRUE(small.grow(64 << 10));
}

// perf (session 19): a tree's members take their page buffers from one arena
// (PageArena): slices of exactly the bytes asked, from several threads at
// once, that never overlap, in huge-page-aligned chunks that are not faulted
// in beyond what is written.
TEST(PageArenaTest, SlicesFromThreadsNeverOverlap) {
    constexpr size_t kPage = 4096;
    PageArena arena(2 << 20);  // small chunks: many chunk changes
    struct Slice {
        char* p;
        size_t n;
    };
    std::vector<std::vector<Slice>> got(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t)
        threads.emplace_back([&, t] {
            for (size_t i = 0; i < 200; ++i) {
                size_t n = ((i * 7 + t * 13) % 100 + 1) * kPage;  // 4 .. 400 KiB
                if (i % 50 == 49) n = 3 << 20;                    // more than a chunk
                char* p = arena.take(n - (i % 3));                // rounded up to whole pages
                ASSERT_NE(p, nullptr);
                std::memset(p, int(t * 200 + i) & 0xff, n);
                got[t].push_back({p, n});
            }
        });
    for (auto& th : threads) th.join();
    std::vector<Slice> all;
    for (size_t t = 0; t < got.size(); ++t)
        for (size_t i = 0; i < got[t].size(); ++i) {
            const Slice& s = got[t][i];
            EXPECT_EQ(reinterpret_cast<uintptr_t>(s.p) % kPage, 0u);
            // Each still holds what its thread wrote: no other slice overlapped it.
            char want = char(int(t * 200 + i) & 0xff);
            EXPECT_TRUE(std::all_of(s.p, s.p + s.n, [want](char c) { return c == want; }))
                << "thread " << t << " slice " << i;
            all.push_back(s);
        }
    std::sort(all.begin(), all.end(), [](const Slice& a, const Slice& b) { return a.p < b.p; });
    for (size_t i = 1; i < all.size(); ++i) EXPECT_LE(all[i - 1].p + all[i - 1].n, all[i].p);
}

TEST(PageArenaTest, ChunksLieOnHugePagesAndAreNotFaultedInAhead) {
    constexpr uintptr_t kHuge = 2 << 20;
    PageArena arena;  // 64 MiB chunks
    char* first = arena.take(3 << 20);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % kHuge, 0u);
    char* next = arena.take(1 << 20);
    EXPECT_EQ(next, first + (3 << 20));  // one slice after another in a chunk
    char* big = arena.take(65 << 20);    // a chunk of its own
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % kHuge, 0u);
    EXPECT_EQ(arena.take(4096), next + (1 << 20));  // the current chunk goes on after it
    // Nothing is resident until written: the copy faults in what it fills.
    std::vector<unsigned char> in(16);
    ASSERT_EQ(mincore(first, 16 * 4096, in.data()), 0);
    for (unsigned char c : in) EXPECT_EQ(c & 1, 0);
    std::memset(first, 1, 4096);
    ASSERT_EQ(mincore(first, 4096, in.data()), 0);
    EXPECT_EQ(in[0] & 1, 1);
}

// perf (session 43): an arena warmed ahead (a tree's, before its freeze) has
// exactly the bytes asked faulted in, rounded up to huge pages, at the start
// of its first chunk, which take() hands out as before.
TEST(PageArenaTest, WarmedAheadItHasThatMuchFaultedInAndSlicesAsBefore) {
    constexpr size_t kHuge = 2 << 20, kPage = 4096;
    PageArena arena;
    ASSERT_TRUE(arena.warm(2 * kHuge + 1));  // three huge pages
    char* first = arena.take(3 << 20);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % kHuge, 0u);
    std::memset(first, 'a', 3 << 20);  // written while (or after) the thread faults it in
    EXPECT_EQ(arena.warmed(), 3 * kHuge);
    std::vector<unsigned char> in(4 * kHuge / kPage);
    ASSERT_EQ(mincore(first, 4 * kHuge, in.data()), 0);
    for (size_t i = 0; i < in.size(); ++i)
        EXPECT_EQ(in[i] & 1, i < 3 * kHuge / kPage ? 1 : 0) << "page " << i;
    EXPECT_EQ(std::string(first, 3 << 20), std::string(3 << 20, 'a'));  // the fault-in kept it
    char* next = arena.take(1 << 20);
    EXPECT_EQ(next, first + (3 << 20));
    // Warmed once, before any take: later calls change nothing.
    EXPECT_FALSE(arena.warm(16 << 20));
    EXPECT_EQ(arena.take(4096), next + (1 << 20));
    ASSERT_EQ(mincore(first + 4 * kHuge, kPage, in.data()), 0);
    EXPECT_EQ(in[0] & 1, 0);
}

// An arena that may not start its warming thread (a caller at its
// RLIMIT_NPROC) says so and hands out its first chunk cold, as without.
TEST(PageArenaTest, WithoutAThreadToWarmItItsChunkIsUsedCold) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to become nobody";
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        become_nobody_who_may_start_no_thread();
        PageArena arena;
        if (arena.warm(4 << 20)) ::_exit(4);
        char* p = arena.take(3 << 20);
        if (!p || reinterpret_cast<uintptr_t>(p) % (2 << 20) != 0) ::_exit(5);
        std::memset(p, 'x', 3 << 20);
        ::_exit(arena.warmed() != 0 || p[(3 << 20) - 1] != 'x' ? 6 : 0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "2: setup, 3: a thread started, 4: warm() said yes, "
                                         "5: no first chunk, 6: warmed or lost bytes";
}

TEST(PageBufferTest, DrawnFromAnArenaItKeepsItsBytesWhenItOutgrowsItsSlice) {
    auto arena = std::make_shared<PageArena>();
    PageBuffer a, b;
    a.draw_from(arena);
    b.draw_from(arena);
    auto off = a.grow(8192);
    ASSERT_TRUE(off);
    EXPECT_EQ(*off, 0u);
    ASSERT_TRUE(b.grow(4096));
    EXPECT_EQ(b.data(), a.data() + 8192);  // the next slice of the arena
    std::memset(a.data(), 'a', 8192);
    std::memset(b.data(), 'b', 4096);
    auto more = a.grow(3 << 20);  // past its slice: a mapping of its own
    ASSERT_TRUE(more);
    EXPECT_EQ(*more, 8192u);
    EXPECT_EQ(std::string(a.data(), 8192), std::string(8192, 'a'));
    std::memset(a.data() + 8192, 'c', 3 << 20);
    EXPECT_EQ(std::string(b.data(), 4096), std::string(4096, 'b'));  // its neighbour untouched
    arena.reset();                                                   // b's slice lives as long as b
    PageBuffer moved = std::move(b);
    EXPECT_EQ(std::string(moved.data(), 4096), std::string(4096, 'b'));
}

// perf (session 19): a checkpoint's fingerprints open each mapped file once
// (OpenedFiles), not once per area of each member; the records are the same.
TEST(OpenedFilesTest, AFileMappedInSeveralAreasIsOpenedOnceAndHashedAsBefore) {
    char path[] = "/tmp/crfs-opened-files-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    std::string bytes(3 * 4096, 'x');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 31 % 251);
    ASSERT_EQ(write(fd, bytes.data(), bytes.size()), ssize_t(bytes.size()));
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    close(fd);
    std::vector<MapsEntry> maps(2);
    for (size_t i = 0; i < maps.size(); ++i) {  // the file's first page, then its other two
        maps[i].start = 0x10000 + i * 0x1000;
        maps[i].end = i ? 0x13000 : 0x11000;
        maps[i].pgoff = i;
        maps[i].ino = st.st_ino;
        maps[i].dev_major = major(st.st_dev);
        maps[i].dev_minor = minor(st.st_dev);
        std::memcpy(maps[i].perms, "r--p", 5);
        maps[i].path = path;
    }
    OpenedFiles opened;
    UniqueFd spare;
    int first = opened.get(path, spare);
    ASSERT_GE(first, 0);
    EXPECT_EQ(opened.get(path, spare), first);  // kept, not opened again
    EXPECT_FALSE(spare);
    EXPECT_EQ(opened.get("/nonexistent/crfs-opened-files", spare), -1);
    Fingerprints shared = fingerprint_files({}, maps, &opened);
    Fingerprints own = fingerprint_files({}, maps);
    unlink(path);
    ASSERT_EQ(shared.vmas.size(), 2u);
    ASSERT_EQ(own.vmas.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(shared.vmas[i].start, own.vmas[i].start);
        EXPECT_EQ(shared.vmas[i].bytes, own.vmas[i].bytes);
        EXPECT_EQ(shared.vmas[i].hash, own.vmas[i].hash);
    }
    EXPECT_EQ(shared.vmas[1].bytes, 2u * 4096);
    EXPECT_NE(shared.vmas[0].hash, shared.vmas[1].hash);
}

// perf (session 47): a kept file is fstatted once per checkpoint, at its
// first use; a spare (not kept: too many open) each time.
TEST(OpenedFilesTest, AKeptFileIsStattedOnceASpareEachTime) {
    char path[] = "/tmp/crfs-opened-stat-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "abc", 3), 3);
    OpenedFiles opened;
    UniqueFd spare;
    int kept = opened.get(path, spare);
    ASSERT_GE(kept, 0);
    struct stat first, again, fresh;
    ASSERT_TRUE(opened.stat(path, kept, first));
    EXPECT_EQ(first.st_size, 3);
    ASSERT_EQ(write(fd, "defg", 4), 4);  // the file grows after its first use
    ASSERT_TRUE(opened.stat(path, kept, again));
    EXPECT_EQ(again.st_size, 3);  // what its first use saw
    // An fd the caller holds for a path not kept: fstatted now.
    ASSERT_TRUE(opened.stat("/not/kept", fd, fresh));
    EXPECT_EQ(fresh.st_size, 7);
    close(fd);
    EXPECT_FALSE(opened.stat("/not/kept", fd, fresh));  // closed: fstat fails
    unlink(path);
}

TEST(PagemapTest, ZeroPage) {
    std::vector<char> page(4096, 0);
    EXPECT_TRUE(is_zero_page(page.data()));
    page[4095] = 1;
    EXPECT_FALSE(is_zero_page(page.data()));
}

TEST(TaskStatTest, ParsesCommWithSpacesAndParens) {
    std::string stat =
        "1234 (a (weird) name) S 1 1234 1234 34816 1234 4194304 100 0 0 0 1 2 0 0 20 5 1 0 "
        "98765 10000000 300 18446744073709551615 94000000 94100000 140730000000000 0 0 0 0 0 0 "
        "0 0 0 17 1 0 0 0 0 0 94200000 94300000 94400000 140730000100000 140730000200000 "
        "140730000300000 140730000400000 0\n";
    auto s = parse_stat(stat);
    ASSERT_TRUE(s) << s.error().what;
    EXPECT_EQ(s->comm, "a (weird) name");
    EXPECT_EQ(s->state, 'S');
    EXPECT_EQ(s->ppid, 1);
    EXPECT_EQ(s->pgrp, 1234);
    EXPECT_EQ(s->nice, 5);
    EXPECT_EQ(s->num_threads, 1);
    EXPECT_EQ(s->starttime, 98765u);
    EXPECT_EQ(s->start_code, 94000000u);
    EXPECT_EQ(s->start_stack, 140730000000000u);
    EXPECT_EQ(s->start_data, 94200000u);
    EXPECT_EQ(s->start_brk, 94400000u);
    EXPECT_EQ(s->env_end, 140730000400000u);
    EXPECT_FALSE(parse_stat("1234 (x) S 1 2"));
    EXPECT_FALSE(parse_stat("no parens"));
}

TEST(TaskStatusTest, ParsesCredsCapsUmask) {
    const char* text =
        "Name:\tsleep\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t7\nTracerPid:\t42\n"
        "Uid:\t1000\t1001\t1002\t1003\nGid:\t10\t11\t12\t13\nGroups:\t4 24 27 \n"
        "RssAnon:\t     100 kB\nRssShmem:\t       8 kB\nVmSwap:\t       4 kB\n"
        "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
        "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000001\nNoNewPrivs:\t1\n";
    auto s = parse_status(text);
    ASSERT_TRUE(s) << s.error().what;
    EXPECT_EQ(s->tracer_pid, 42);
    EXPECT_EQ(s->uid[0], 1000u);
    EXPECT_EQ(s->uid[3], 1003u);
    EXPECT_EQ(s->gid[2], 12u);
    EXPECT_EQ(s->groups, (std::vector<uint32_t>{4, 24, 27}));
    EXPECT_EQ(s->umask, 027u);
    EXPECT_EQ(s->cap_prm, 0x1ffffffffffu);
    EXPECT_EQ(s->cap_amb, 1u);
    EXPECT_EQ(s->no_new_privs, 1u);
    EXPECT_EQ(s->rss_bytes, 112u * 1024);
    EXPECT_FALSE(parse_status("Uid:\t1 2 3\n"));  // three fields, not four
}

TEST(FdinfoTest, ParsesPosAndOctalFlags) {
    auto f = parse_fdinfo("pos:\t1234\nflags:\t02102002\nmnt_id:\t25\nino:\t77\n");
    ASSERT_TRUE(f) << f.error().what;
    EXPECT_EQ(f->pos, 1234u);
    EXPECT_EQ(f->flags, uint32_t(O_CLOEXEC | O_APPEND | O_RDWR | 0100000));
    EXPECT_FALSE(parse_fdinfo("pos:\t12\n"));
    EXPECT_FALSE(parse_fdinfo("pos:\tx\nflags:\t0\n"));
}

TEST(RestartFixupTest, RewritesInterruptedSyscalls) {
    user_regs_struct r{};
    r.rip = 0x1002;
    r.orig_rax = 0;          // read
    r.rax = uint64_t(-512);  // -ERESTARTSYS
    auto f = restart_fixup(r);
    EXPECT_EQ(f.rip, 0x1000u);
    EXPECT_EQ(f.rax, 0u);
    EXPECT_EQ(f.orig_rax, ~0ull);

    r.orig_rax = 230;        // clock_nanosleep
    r.rax = uint64_t(-516);  // -ERESTART_RESTARTBLOCK
    f = restart_fixup(r);
    EXPECT_EQ(f.rip, 0x1000u);
    EXPECT_EQ(f.rax, 219u);  // restart_syscall

    r.rax = uint64_t(-4);  // -EINTR: the syscall already failed; nothing to redo
    f = restart_fixup(r);
    EXPECT_EQ(f.rip, 0x1002u);
    EXPECT_EQ(f.rax, uint64_t(-4));

    r.orig_rax = ~0ull;  // not in a syscall
    r.rax = uint64_t(-512);
    f = restart_fixup(r);
    EXPECT_EQ(f.rip, 0x1002u);
}

// The hand-off is taken only where a handler could run before the task is
// inside its syscall again: without one a re-executed syscall is the kernel's
// restart (state/restart.cc handler_may_run).
TEST(RestartHandoffTest, OnlyWhereAHandlerCouldRunFirst) {
    DecodedImage img;
    crfs_restorer_args a{};
    auto takes = [&] {
        auto h = RestartHandoff::plan(img, true, 3, a);  // a tree member: no gate, `a` untouched
        EXPECT_TRUE(h) << h.error().what;
        return h && h->active();
    };
    EXPECT_FALSE(takes());                                // no restart record
    img.restart = image::SyscallRestartRecord{34, -514};  // pause, -ERESTARTNOHAND
    EXPECT_FALSE(takes());                                // every signal SIG_DFL
    img.sigactions.action[SIGUSR1 - 1].handler = 1;       // SIG_IGN
    EXPECT_FALSE(takes());
    img.sigactions.action[SIGUSR1 - 1].handler = 0x401000;
    EXPECT_TRUE(takes());
    img.sigstate.blocked = 1ull << (SIGUSR1 - 1);  // its one handler's signal blocked
    EXPECT_FALSE(takes());
    img.sigactions.action[SIGRTMAX - 1].handler = 0x401000;  // signal 64
    EXPECT_TRUE(takes());
    EXPECT_EQ(a.has_go, 0u);
}

TEST(RestartHandoffTest, ThreadsOtherThanTheMainOne) {
    DecodedImage img;
    crfs_restorer_args a{};
    img.sigactions.action[SIGUSR1 - 1].handler = 0x401000;
    img.sigstate.blocked = ~0ull;  // the main thread: no handler can run on it
    img.restart = image::SyscallRestartRecord{202, -512};  // futex, -ERESTARTSYS
    ThreadImage t;
    t.rec.tid = 4321;
    t.restart = image::SyscallRestartRecord{34, -514};
    t.regs.rax = 34;
    t.regs.orig_rax = ~0ull;
    t.regs.rip = 0x401002;
    img.threads.push_back(t);
    img.regs.rax = 202;
    img.regs.orig_rax = ~0ull;
    img.regs.rip = 0x402002;
    EXPECT_TRUE(check_restart(img));
    auto h = RestartHandoff::plan(img, true, 3, a);
    ASSERT_TRUE(h) << h.error().what;
    // The main thread traced only (it must not run its threads' frames
    // before they are attached), then the thread.
    EXPECT_EQ(h->tracers().size(), 2u);
    img.threads[0].sigstate.blocked = 1ull << (SIGUSR1 - 1);  // the thread's one handler blocked
    h = RestartHandoff::plan(img, true, 3, a);
    ASSERT_TRUE(h) << h.error().what;
    EXPECT_FALSE(h->active());
    // Hostile: a thread's record must describe that thread's registers.
    img.threads[0].regs.rax = 35;
    auto bad = check_restart(img);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().what.find("thread 4321: registers"), std::string::npos)
        << bad.error().what;
}

// A child for the hand-off's ptrace half (RestartTracer): its main thread
// runs `main_loop`, a second thread (whose tid it sends back) sleeps in
// pause(), and `extra`, if any, is a third. Both halves are attached.
int g_tid_pipe = -1, g_exit_pipe = -1;

struct HandoffChild {
    pid_t pid = -1, tid = 0;
    std::vector<RestartTracer> tracers;

    HandoffChild(void (*main_loop)(), void* (*extra)(void*)) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) return;
        g_tid_pipe = p[1];
        pid = fork();
        if (pid == 0) {
            pthread_t t;
            auto sleeper = [](void*) -> void* {
                pid_t me = gettid();
                if (write(g_tid_pipe, &me, sizeof me) != sizeof me) _exit(2);
                for (;;) pause();
            };
            if (pthread_create(&t, nullptr, sleeper, nullptr) != 0 ||
                (extra && pthread_create(&t, nullptr, extra, nullptr) != 0))
                _exit(2);
            main_loop();
            _exit(2);
        }
        close(p[1]);
        if (pid > 0 && read(p[0], &tid, sizeof tid) != ssize_t(sizeof tid)) tid = 0;
        close(p[0]);
        tracers = {RestartTracer(0x401002, 0), RestartTracer(0x401002, -514, tid)};
    }
    // Its wait status, reaped within 10 s; else it is killed and its thread
    // and it reaped, and -1.
    int reap() {
        int st = 0;
        pid_t w = 0;
        for (int i = 0; i < 1000 && (w = waitpid(pid, &st, WNOHANG)) == 0; ++i) usleep(10'000);
        if (w == pid) return st;
        ::kill(pid, SIGKILL);
        waitpid(tid, nullptr, __WALL);
        waitpid(pid, &st, 0);
        return -1;
    }
};

// The restore's error path (RestartHandoff::follow_all): a process whose main
// thread fails its follow (here it never reaches rt_sigreturn: it only calls
// getppid) is killed, and its other thread, still traced, is reaped by its
// tracer. Before, that thread stayed a traced zombie, whose process could not
// be reaped: the restore's reap, and the restore with it, waited for good.
TEST(RestartHandoffTest, AnErrorLeavesNoTracedThreadBehind) {
    HandoffChild c(
        [] {
            for (;;) getppid();
        },
        nullptr);
    ASSERT_GT(c.pid, 0);
    ASSERT_GT(c.tid, 0);
    auto attached = RestartHandoff::attach_all(c.tracers, c.pid);
    ASSERT_TRUE(attached) << attached.error().what;
    auto r = RestartHandoff::follow_all(c.tracers, c.pid, false);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().what.find("did not reach rt_sigreturn"), std::string::npos)
        << r.error().what;
    int st = c.reap();
    EXPECT_NE(st, -1) << "the process could not be reaped within 10 s";
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
}

// A process that ends by itself while its threads' hand-offs are followed
// (state/restart.h RestartTracer::follow): a thread without a hand-off does
// exit_group after the main thread and another are attached, before they
// are followed. Both follows find their thread gone with its process: no
// error, and the process is reaped with its own exit status. Before, the
// main thread's end was not reported (its traced thread held it) and its
// follow failed after 10 s.
TEST(RestartHandoffTest, AProcessThatEndsByItselfIsNoError) {
    int go[2];
    ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
    g_exit_pipe = go[0];
    HandoffChild c(
        [] {
            for (;;) pause();
        },
        [](void*) -> void* {
            char x;
            if (read(g_exit_pipe, &x, 1) == 1) _exit(7);  // exit_group
            _exit(2);
        });
    close(go[0]);
    ASSERT_GT(c.pid, 0);
    ASSERT_GT(c.tid, 0);
    auto attached = RestartHandoff::attach_all(c.tracers, c.pid);
    ASSERT_TRUE(attached) << attached.error().what;
    ASSERT_EQ(write(go[1], "x", 1), 1);  // the process ends
    close(go[1]);
    for (int i = 0; i < 1000; ++i) {  // its main thread gone: a zombie
        auto st = read_stat(c.pid);
        if (st && st->state == 'Z') break;
        usleep(10'000);
    }
    auto r = RestartHandoff::follow_all(c.tracers, c.pid, false);
    EXPECT_TRUE(r) << r.error().what;
    int st = c.reap();
    EXPECT_NE(st, -1) << "the process could not be reaped within 10 s";
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 7) << st;
}

}  // namespace
}  // namespace crfs
