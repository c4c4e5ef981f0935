#include "fs/marks.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/io.h"
#include "common/procfs.h"
#include "tests/support/harness.h"

namespace crfs::fs {
namespace {

TaskId self_id() {
    return TaskId{::getpid(), read_stat(::getpid())->starttime};
}

TEST(ParseNocrWrite, ZeroOneAndText) {
    EXPECT_TRUE(std::holds_alternative<ClearMark>(*parse_nocr_write("0\n")));
    EXPECT_TRUE(std::holds_alternative<ClearMark>(*parse_nocr_write("0")));
    EXPECT_EQ(std::get<SetMark>(*parse_nocr_write("1\n")).reason, kDefaultReason);
    EXPECT_EQ(std::get<SetMark>(*parse_nocr_write("CR: PI futexes not supported yet.\n")).reason,
              "CR: PI futexes not supported yet.");
    // Only one newline is stripped; a second one is a control character.
    EXPECT_FALSE(parse_nocr_write("x\n\n"));
    EXPECT_EQ(std::get<SetMark>(*parse_nocr_write("grüße ✓")).reason, "grüße ✓");
}

TEST(ParseNocrWrite, RejectsBadInputWithEinval) {
    for (std::string bad : {std::string(""), std::string("\n"), std::string(1025, 'a'),
                            std::string("\x01"), std::string("a\tb"), std::string("a\0b", 3),
                            std::string("\xff\xfe"), std::string("\xc3"), std::string("x\x7f")}) {
        auto r = parse_nocr_write(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error().code, EINVAL);
    }
    EXPECT_TRUE(parse_nocr_write(std::string(1024, 'a')));
    EXPECT_TRUE(parse_nocr_write(std::string(1024, 'a') + "\n"));
}

TEST(MarkStoreFormat, SerializeParseRoundTrip) {
    std::map<std::pair<pid_t, uint64_t>, std::string> m{{{5, 77}, "CR: a b"}, {{6, 1}, "x"}};
    auto back = MarkStore::parse(MarkStore::serialize(m));
    ASSERT_TRUE(back) << back.error().what;
    EXPECT_EQ(*back, m);
}

TEST(MarkStoreFormat, ParseErrorsNameTheLine) {
    auto r = MarkStore::parse("crfs-marks 1\n5 77 ok\n6 x bad\n");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().what, "marks state: line 3 malformed");
    EXPECT_FALSE(MarkStore::parse("something else\n"));
    EXPECT_FALSE(MarkStore::parse("crfs-marks 1\n5 77 no newline"));
    EXPECT_FALSE(MarkStore::parse("crfs-marks 1\n5 77 \x01\n"));
}

class MarkStoreTest : public ::testing::Test {
  protected:
    test::TempDir dir;
    ExitWatcher exits;  // declared before the stores: outlives them
    std::string file() const { return dir.path() + "/marks"; }
};

TEST_F(MarkStoreTest, SetGetClearPersist) {
    MarkStore s(exits, file());
    ASSERT_TRUE(s.load());
    TaskId me = self_id();
    EXPECT_FALSE(s.get(me));
    ASSERT_TRUE(s.set(me, "CR: one"));
    EXPECT_EQ(s.get(me), "CR: one");
    ASSERT_TRUE(s.set(me, "CR: two"));  // replaces
    EXPECT_EQ(s.get(me), "CR: two");
    EXPECT_NE(read_file(file())->find("CR: two"), std::string::npos);
    // Same pid, other start time: a different task.
    EXPECT_FALSE(s.get(TaskId{me.pid, me.starttime + 1}));

    MarkStore again(exits, file());
    ASSERT_TRUE(again.load());
    EXPECT_EQ(again.get(me), "CR: two");
    ASSERT_TRUE(again.clear(me));
    EXPECT_FALSE(again.get(me));
    EXPECT_EQ(*read_file(file()), "crfs-marks 1\n");
}

TEST_F(MarkStoreTest, LoadDropsMarksOfGoneTasks) {
    TaskId me = self_id();
    ASSERT_TRUE(write_file_atomic(file(),
                                  "crfs-marks 1\n" + std::to_string(me.pid) + " " +
                                      std::to_string(me.starttime + 1) + " CR: old task\n" +
                                      std::to_string(me.pid) + " " + std::to_string(me.starttime) +
                                      " CR: me\n",
                                  0600));
    MarkStore s(exits, file());
    ASSERT_TRUE(s.load());
    EXPECT_EQ(s.size(), 1u);
    EXPECT_EQ(s.get(me), "CR: me");
}

TEST_F(MarkStoreTest, CorruptStateFileIsAnErrorNotSilence) {
    ASSERT_TRUE(write_file_atomic(file(), "junk\n", 0600));
    MarkStore s(exits, file());
    auto r = s.load();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().what.find(file()), std::string::npos);
}

TEST_F(MarkStoreTest, SettingAGoneTaskIsEsrch) {
    MarkStore s(exits, file());
    ASSERT_TRUE(s.load());
    auto r = s.set(TaskId{self_id().pid, 1}, "CR: x");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ESRCH);
    EXPECT_EQ(s.size(), 0u);
}

TEST_F(MarkStoreTest, FullWatcherRefusesTheMarkSayingWhy) {
    ExitWatcher full(0);
    MarkStore s(full, file());
    ASSERT_TRUE(s.load());
    auto r = s.set(self_id(), "CR: x");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EMFILE);
    EXPECT_NE(r.error().what.find("exit watcher"), std::string::npos);
    EXPECT_EQ(s.size(), 0u);
    // A saved mark of a live task is never dropped for it: load fails.
    ASSERT_TRUE(write_file_atomic(file(),
                                  "crfs-marks 1\n" + std::to_string(self_id().pid) + " " +
                                      std::to_string(self_id().starttime) + " CR: me\n",
                                  0600));
    MarkStore again(full, file());
    auto loaded = again.load();
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, EMFILE);
}

TEST_F(MarkStoreTest, WatcherDropsMarkWhenTaskExits) {
    MarkStore s(exits, file());
    ASSERT_TRUE(s.load());
    ASSERT_TRUE(exits.start());
    pid_t child = test::spawn({"sleep", "100"});
    ASSERT_GT(child, 0);
    ASSERT_TRUE(test::wait_until([&] {
        auto st = read_stat(child);
        return st && st->comm == "sleep";
    }));
    TaskId id{child, read_stat(child)->starttime};
    ASSERT_TRUE(s.set(id, "CR: child"));
    ASSERT_EQ(s.size(), 1u);
    test::kill_and_reap(child);
    EXPECT_TRUE(test::wait_until([&] { return s.size() == 0; }));
    EXPECT_TRUE(test::wait_until([&] { return *read_file(file()) == "crfs-marks 1\n"; }));
}

}  // namespace
}  // namespace crfs::fs
