// The one classification of a tree's sessions and groups (state/tree_groups.h)
// that `reason` and the restore share.
#include "state/tree_groups.h"

#include <gtest/gtest.h>

namespace crfs::state {
namespace {

using Ids = std::vector<TreeIds>;

// Root 10 in session 1, group 5 (both led from outside the tree).
Ids pipeline() {
    return {{10, 1, 5, 1}, {11, 10, 11, 1}, {12, 10, 11, 1}};
}

TEST(TreeGroups, SiblingLedGroupIsAMembersAndRestorable) {
    Ids m = pipeline();
    EXPECT_EQ(group_source(m, 1), GroupSource::kOwn);
    EXPECT_EQ(group_source(m, 2), GroupSource::kMember);
    EXPECT_TRUE(tree_group_problems(m).empty());
}

TEST(TreeGroups, GroupWhoseLeaderIsGoneNeedsAPlaceholder) {
    Ids m = {{10, 1, 5, 1}, {12, 10, 11, 1}};
    EXPECT_EQ(group_source(m, 1), GroupSource::kPlaceholder);
    EXPECT_TRUE(tree_group_problems(m).empty());
}

TEST(TreeGroups, TheRootsOutsideGroupIsTheRoots) {
    Ids m = {{10, 1, 5, 1}, {11, 10, 11, 1}, {12, 11, 5, 1}};
    EXPECT_EQ(group_source(m, 2), GroupSource::kRoot);
    EXPECT_TRUE(tree_group_problems(m).empty());
}

TEST(TreeGroups, SessionLeftAfterTheForkIsAProblem) {
    Ids m = {{10, 1, 10, 10}, {11, 10, 5, 1}};
    auto p = tree_group_problems(m);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].first, 11);
    EXPECT_EQ(p[0].second.rfind("session 1 is neither its own nor its parent's (10)", 0), 0u)
        << p[0].second;
}

TEST(TreeGroups, HostileIdsAreProblems) {
    Ids m = pipeline();
    m[1].sid = 11;  // leads a session: the sibling's group is now in another session
    auto p = tree_group_problems(m);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p[0].first, 12);
    m = pipeline();
    m[1].sid = 11, m[1].pgid = 12;  // a session leader that does not lead its group
    p = tree_group_problems(m);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p[0].second, "leads session 11 but not its group (12)");
    m = pipeline();
    m[2].pgid = 0;
    p = tree_group_problems(m);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p[0].second.rfind("process group 0, session 1 (0: led from outside", 0), 0u);
    m = pipeline();
    m[0].pgid = 12;  // the root's group led by its descendant
    p = tree_group_problems(m);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p[0].first, 10);
}

// Under a container's or CI runner's pid namespace the root's session (and
// maybe its group) is led from outside: /proc shows 0, and members inherit it.
TEST(TreeGroups, SessionAndGroupLedOutsideThePidNamespaceAreTheRoots) {
    Ids m = {{10, 1, 0, 0}, {11, 10, 11, 0}, {12, 10, 0, 0}, {13, 11, 11, 0}};
    EXPECT_EQ(group_source(m, 2), GroupSource::kRoot);
    EXPECT_TRUE(tree_group_problems(m).empty());
    m = {{10, 1, 10, 0}, {11, 10, 10, 0}};
    EXPECT_TRUE(tree_group_problems(m).empty());
    m = {{10, 1, 10, 10}, {11, 10, 10, 0}};  // the root leads a session: 0 is not its
    EXPECT_EQ(tree_group_problems(m).size(), 1u);
    m = {{10, 1, 10, 0}, {11, 10, 0, 0}};  // a group 0 that is not the root's
    EXPECT_EQ(tree_group_problems(m).size(), 1u);
}

TEST(TreeGroups, PlaceholderGroupSpanningTwoSessionsIsAProblem) {
    Ids m = {{10, 1, 10, 10}, {11, 10, 11, 11}, {12, 11, 40, 11}, {13, 10, 40, 10}};
    auto p = tree_group_problems(m);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].first, 13);
    EXPECT_EQ(p[0].second, "process group 40 spans two sessions");
}

}  // namespace
}  // namespace crfs::state
