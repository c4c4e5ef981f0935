#include <gtest/gtest.h>

#include <set>

#include "fs/access.h"
#include "fs/inode.h"
#include "fs/tree.h"

namespace crfs::fs {
namespace {

TEST(Inode, RoundTripsAndKeepsRootAndSelfApart) {
    uint64_t ino = make_ino(4242, 123456789, 2);
    auto p = split_ino(ino);
    EXPECT_EQ(p.pid, 4242);
    EXPECT_EQ(p.start_low, 123456789u);
    EXPECT_EQ(p.entry, 2u);
    EXPECT_NE(make_ino(1, 0, kDirEntry), kRootIno);
    EXPECT_NE(make_ino(1, 0, kDirEntry), kSelfIno);
    // A reused pid (new start time) gets a different inode.
    EXPECT_NE(make_ino(4242, 1000, 1), make_ino(4242, 1001, 1));
}

TEST(PidTable, NamesUniqueAndLookupsAgree) {
    std::set<std::string_view> names;
    for (unsigned i = 0; i < std::size(kPidEntries); ++i) {
        const auto& e = kPidEntries[i];
        EXPECT_TRUE(names.insert(e.name).second) << e.name;
        EXPECT_EQ(find_pid_entry(e.name), i);
        EXPECT_TRUE(S_ISREG(e.mode)) << e.name;
        // What ls shows must not promise more than the table allows; the one
        // exception is image's (and delta's) owner write bit, there for cp (fs/tree.h).
        if (e.name != "image" && e.name != "delta")
            EXPECT_EQ((e.mode & 0222) != 0, e.write != nullptr) << e.name;
        else
            EXPECT_EQ(e.mode & 0777, 0600u);
        EXPECT_EQ((e.mode & 0444) != 0, e.read != nullptr) << e.name;
    }
    EXPECT_FALSE(find_pid_entry("self"));
    EXPECT_FALSE(find_pid_entry(""));
    EXPECT_LT(std::size(kPidEntries), size_t{1} << kEntryBits);
}

TEST(PidTable, NocrAndReasonRights) {
    auto nocr = kPidEntries[*find_pid_entry("nocr")];
    EXPECT_EQ(nocr.read_right, Right::kAnyone);
    EXPECT_EQ(nocr.write_right, Right::kPtrace);
    auto reason = kPidEntries[*find_pid_entry("reason")];
    EXPECT_EQ(reason.read_right, Right::kPtraceInHandler);
    EXPECT_EQ(reason.write, nullptr);
}

}  // namespace
}  // namespace crfs::fs
