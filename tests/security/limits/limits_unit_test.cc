// The per-user bounds' bookkeeping (fs/limits.h) and the escape helper
// (common/escape.h). The mounted behaviour is in limits_test.py.
#include <gtest/gtest.h>

#include "common/escape.h"
#include "fs/limits.h"

namespace crfs::fs {
namespace {

LimitConfig small() {
    LimitConfig c = LimitConfig::defaults();
    EXPECT_TRUE(c.set("user_spool", "1K"));
    EXPECT_TRUE(c.set("user_slots", "2"));
    EXPECT_TRUE(c.set("user_checkpoints", "1"));
    EXPECT_TRUE(c.set("user_restores", "1"));
    return c;
}

TEST(Limits, EachResourceHasItsErrnoAndOtherUsersDoNotNotice) {
    Limits limits(small());
    auto a1 = limits.take(1000, Resource::kCheckpoints);
    ASSERT_TRUE(a1);
    auto a2 = limits.take(1000, Resource::kCheckpoints);
    ASSERT_FALSE(a2);
    EXPECT_EQ(a2.error().code, EAGAIN);
    EXPECT_EQ(a2.error().what,
              "uid 1000: at its limit of 1 concurrent checkpoints (user_checkpoints)");
    EXPECT_TRUE(limits.take(1001, Resource::kCheckpoints));  // another user
    a1->reset();
    EXPECT_TRUE(limits.take(1000, Resource::kCheckpoints));  // given back

    auto r = limits.take(1000, Resource::kRestores);
    ASSERT_TRUE(r);
    EXPECT_EQ(limits.take(1000, Resource::kRestores).error().code, EAGAIN);

    auto s1 = limits.take(1000, Resource::kSlots), s2 = limits.take(1000, Resource::kSlots);
    ASSERT_TRUE(s1 && s2);
    EXPECT_EQ(limits.take(1000, Resource::kSlots).error().code, EMFILE);
}

TEST(Limits, SpoolGrowsToItsLimitAndComesBack) {
    Limits limits(small());
    auto spool = limits.take(1000, Resource::kSpoolBytes, 0);
    ASSERT_TRUE(spool);
    EXPECT_TRUE(spool->grow(1000));
    auto over = spool->grow(25);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, ENOSPC);
    EXPECT_EQ(spool->amount(), 1000u);
    EXPECT_TRUE(spool->grow(24));
    EXPECT_EQ(limits.used(1000, Resource::kSpoolBytes), 1024u);
    Lease moved = std::move(*spool);
    EXPECT_EQ(limits.used(1000, Resource::kSpoolBytes), 1024u);
    moved.reset();
    EXPECT_EQ(limits.used(1000, Resource::kSpoolBytes), 0u);
}

TEST(Limits, RootIsCountedNotBounded) {
    Limits limits(small());
    std::vector<Lease> held;
    for (int i = 0; i < 5; ++i) {
        auto l = limits.take(0, Resource::kSlots);
        ASSERT_TRUE(l);
        held.push_back(std::move(*l));
    }
    EXPECT_EQ(limits.used(0, Resource::kSlots), 5u);
}

TEST(Limits, Options) {
    LimitConfig c = LimitConfig::defaults();
    EXPECT_GT(c.max[0], 0u);
    EXPECT_LE(c.max[0], uint64_t{16} << 30);
    ASSERT_TRUE(c.set("user_spool", "4M"));
    EXPECT_EQ(c.max[0], 4u << 20);
    ASSERT_TRUE(c.set("user_spool", "3g"));
    EXPECT_EQ(c.max[0], uint64_t{3} << 30);
    ASSERT_TRUE(c.set("user_image_handles", "0"));
    EXPECT_EQ(c.max[2], 0u);
    for (auto [name, value] : {std::pair{"user_spool", "lots"},
                               {"user_slots", "-1"},
                               {"user_slots", "4M"},
                               {"user_restores", ""},
                               {"user_spool", "99999999999G"}})
        EXPECT_EQ(c.set(name, value).error().code, EINVAL) << name << "=" << value;
    ASSERT_TRUE(c.set("restore_pid_group", "0"));
    EXPECT_EQ(c.restore_pid_group, 0u);
    ASSERT_TRUE(c.set("restore_pid_group", "root"));
    EXPECT_EQ(c.restore_pid_group, 0u);
    auto bad = c.set("restore_pid_group", "no-such-group-crfslm");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().what, "restore_pid_group=no-such-group-crfslm: no such group");
    EXPECT_TRUE(LimitConfig::is_option("user_slots"));
    EXPECT_FALSE(LimitConfig::is_option("bogus"));
}

TEST(Escape, ControlBytesAreEscapedAndUtf8Stays) {
    EXPECT_EQ(escape_nonprintable("plain text"), "plain text");
    EXPECT_EQ(escape_nonprintable("a\x1b[31mb\x07\x7f"), "a\\x1b[31mb\\x07\\x7f");
    EXPECT_EQ(escape_nonprintable("l1\nl2\t\r\\"), "l1\\nl2\\t\\r\\\\");
    EXPECT_EQ(escape_nonprintable(std::string_view("nul\0x", 5)), "nul\\x00x");
    EXPECT_EQ(escape_nonprintable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT_EQ(escape_nonprintable("\xc2\x9b"), "\\xc2\\x9b");  // C1 CSI in UTF-8
    EXPECT_EQ(escape_nonprintable("\x9b"
                                  "2J"),
              "\\x9b2J");                                               // raw C1 CSI
    EXPECT_EQ(escape_nonprintable("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
    EXPECT_EQ(escape_nonprintable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
    EXPECT_EQ(escape_nonprintable("\xe2\x82"), "\\xe2\\x82");           // truncated
}

}  // namespace
}  // namespace crfs::fs
