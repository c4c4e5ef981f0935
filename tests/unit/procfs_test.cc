#include "common/procfs.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace crfs {
namespace {

constexpr std::string_view kStat =
    "1234 (my (odd) prog) S 1 1234 1234 34816 1234 4194560 100 0 0 0 5 3 0 0 20 0 1 0 "
    "987654 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

TEST(ParseStat, FieldsAfterCommWithParensAndSpaces) {
    auto st = parse_stat(kStat);
    ASSERT_TRUE(st) << st.error().what;
    EXPECT_EQ(st->pid, 1234);
    EXPECT_EQ(st->comm, "my (odd) prog");
    EXPECT_EQ(st->state, 'S');
    EXPECT_EQ(st->ppid, 1);
    EXPECT_EQ(st->pgrp, 1234);
    EXPECT_EQ(st->session, 1234);
    EXPECT_EQ(st->flags, 4194560u);
    EXPECT_EQ(st->num_threads, 1);
    EXPECT_EQ(st->starttime, 987654u);
}

TEST(ParseStat, RejectsTruncatedAndGarbage) {
    EXPECT_FALSE(parse_stat("1234 (x) S 1 2 3"));
    EXPECT_FALSE(parse_stat("garbage"));
    auto r = parse_stat("12 (x) S a 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().what, "parse stat: bad number");
}

TEST(ParseStatm, AnonymousIsResidentLessShared) {
    const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
    EXPECT_EQ(parse_statm_anon("2000 700 450 1 0 300 0\n").value(), 250 * page);
    EXPECT_EQ(parse_statm_anon("5 3 3 1 0 2 0").value(), 0u);
    // Shared past resident: two counters read apart on a running task.
    EXPECT_EQ(parse_statm_anon("2000 400 450 1 0 300 0\n").value(), 0u);
    for (const char* bad : {"", "1 2\n", "2000 700 450 1 0 300\n", "2000 7x0 450 1 0 300 0\n"})
        EXPECT_FALSE(parse_statm_anon(bad)) << bad;
}

TEST(ReadStatm, AnonymousMemoryTouchedIsCounted) {
    auto before = read_anon_bytes(getpid());
    ASSERT_TRUE(before) << before.error().what;
    constexpr size_t kBytes = 16 << 20;
    char* p = static_cast<char*>(
        mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(p, MAP_FAILED);
    memset(p, 1, kBytes);
    auto after = read_anon_bytes(getpid());
    munmap(p, kBytes);
    ASSERT_TRUE(after) << after.error().what;
    // The kernel's RSS counters are per CPU, summed with some slack.
    EXPECT_GE(*after, *before + kBytes * 3 / 4);
    EXPECT_EQ(read_anon_bytes(-1).error().code, ESRCH);
}

TEST(ParseStatus, ReadsIdsTracerThreadsCaps) {
    auto st = parse_status(
        "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t77\nNgid:\t0\nPid:\t78\n"
        "PPid:\t1\nTracerPid:\t4410\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\n"
        "Threads:\t3\nCapEff:\t000001ffffffffff\n");
    ASSERT_TRUE(st) << st.error().what;
    EXPECT_EQ(st->state, 'S');
    EXPECT_EQ(st->tgid, 77);
    EXPECT_EQ(st->tracer_pid, 4410);
    EXPECT_EQ(st->uid[0], 1000u);
    EXPECT_EQ(st->uid[3], 1003u);
    EXPECT_EQ(st->gid[2], 2002u);
    EXPECT_EQ(st->threads, 3);
    EXPECT_EQ(st->cap_eff, 0x1ffffffffffULL);
}

TEST(ParseStatus, StateIsOneLetter) {
    const char* ids = "Tgid:\t5\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
    EXPECT_EQ(parse_status(std::string("State:\tZ (zombie)\n") + ids).value().state, 'Z');
    EXPECT_EQ(parse_status(ids).value().state, '?');  // no State line: not known
    EXPECT_FALSE(parse_status(std::string("State:\tZZ (zombie)\n") + ids));
    EXPECT_FALSE(parse_status(std::string("State:\n") + ids));
}

TEST(ParseStatus, ReadsSignalSets) {
    auto st = parse_status(
        "Tgid:\t77\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nSigQ:\t1/63\n"
        "SigPnd:\t0000000000000010\nShdPnd:\t0000000000000100\nSigBlk:\t0000000000000010\n"
        "SigIgn:\t0000000000001000\nSigCgt:\t0000000180000000\n");
    ASSERT_TRUE(st) << st.error().what;
    EXPECT_EQ(st->sig_pnd, 0x10u);  // the thread's own, not ShdPnd
    EXPECT_EQ(st->sig_ign, 0x1000u);
    EXPECT_EQ(st->sig_cgt, 0x180000000u);
    EXPECT_EQ(st->sig_sets, 3);
    auto none = parse_status("Tgid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->sig_sets, 0);
    EXPECT_FALSE(parse_status("Tgid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nSigPnd:\tzz\n"));
}

TEST(ParseStatus, MissingFieldsAreErrors) {
    auto st = parse_status("Name:\tx\nTgid:\t1\n");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().what, "parse status: missing Tgid, Uid or Gid");
}

TEST(ReadStat, SelfAndGoneTask) {
    auto st = read_stat(::getpid());
    ASSERT_TRUE(st) << st.error().what;
    EXPECT_EQ(st->pid, ::getpid());
    auto gone = read_stat(4194304 - 1);  // above any pid_max in use here
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ESRCH);
    EXPECT_EQ(gone.error().what, "open /proc/4194303/stat: No such file or directory");
}

TEST(NetTables, TcpStateAndInode) {
    auto v = parse_net_inet(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        "
        "0 5511 1 0 100 0 0 10 0\n"
        "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        "
        "0 5512 1 0 20 4 30 10 -1\n",
        "TCP", true);
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].inode, 5511u);
    EXPECT_EQ(v[0].description, "TCP socket in state LISTEN");
    EXPECT_EQ(v[1].description, "TCP socket in state ESTABLISHED");
    EXPECT_EQ(tcp_state_name(99), "UNKNOWN");
}

TEST(NetTables, UnixAndSimple) {
    auto u = parse_net_unix(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 20233 /run/x.sock\n"
        "0000000000000000: 00000003 00000000 00000000 0002 03 20240\n");
    ASSERT_EQ(u.size(), 2u);
    EXPECT_EQ(u[0].description, "unix stream socket (unconnected) at /run/x.sock");
    EXPECT_EQ(u[1].description, "unix datagram socket (connected)");
    auto n = parse_net_simple(
        "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
        "0000000041483efe 0   0          00000000 0        0        0     2        0        4\n",
        "netlink", 9);
    ASSERT_EQ(n.size(), 1u);
    EXPECT_EQ(n[0].inode, 4u);
}

}  // namespace
}  // namespace crfs
