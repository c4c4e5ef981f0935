// trees: an image of several processes (a process record before each one's
// records) decodes one process at a time; misplaced process records are refused.
#include <gtest/gtest.h>

#include <string>

#include "common/image_reader.h"
#include "common/image_writer.h"
#include "tests/support/sample_image.h"

namespace crfs {
namespace {

using image::RecordType;

void add_process(ImageWriter& w, int32_t pid) {
    test::add_minimal_process(w, pid);
}

void add_process_record(ImageWriter& w, int32_t pid, int32_t ppid) {
    w.add(RecordType::kProcess, Payload().add(image::ProcessRecord{pid, ppid, 1, 1, 0, 0}));
}

std::string bytes(ImageWriter&& w) {
    return test::stream_bytes(std::move(w).finish());
}

Result<DecodedImage> decode(const std::string& b, uint32_t process) {
    MemorySource src(b.data(), b.size());
    return decode_image(src, {.process = process});
}

std::string two_processes(uint32_t version = image::kFormatVersion) {
    image::Header h = make_header(0, 576);
    h.version = version;
    ImageWriter w(h);
    add_process_record(w, 42, 1);
    add_process(w, 42);
    add_process_record(w, 43, 42);
    add_process(w, 43);
    return bytes(std::move(w));
}

TEST(ImageTree, EachProcessDecodesOnItsOwn) {
    std::string b = two_processes();
    for (uint32_t i = 0; i < 2; ++i) {
        auto img = decode(b, i);
        ASSERT_TRUE(img) << img.error().what;
        EXPECT_EQ(img->task.pid, int32_t(42 + i));
        ASSERT_EQ(img->processes.size(), 2u);
        EXPECT_EQ(img->processes[1].ppid, 42);
    }
    auto none = decode(b, 2);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().what, "incomplete image: no task record");
}

// treeperf: a member decoded from process 0's decode (DecodeOptions::tree)
// reads only its own records, and gets what a whole walk gives it.
TEST(ImageTree, MemberDecodedFromTheRootsDecodeIsTheWholeWalks) {
    image::Header h = make_header(0, 576);
    ImageWriter w(h);
    for (int32_t i = 0; i < 3; ++i) {
        add_process_record(w, 42 + i, i ? 42 : 1);
        add_process(w, 42 + i);
    }
    std::string b = bytes(std::move(w));
    auto root = decode(b, 0);
    ASSERT_TRUE(root) << root.error().what;
    ASSERT_EQ(root->process_starts.size(), 3u);
    for (uint32_t i = 0; i < 3; ++i) {
        auto whole = decode(b, i);
        ASSERT_TRUE(whole) << whole.error().what;
        MemorySource src(b.data(), b.size());
        auto own = decode_image(src, {.process = i, .tree = &*root});
        ASSERT_TRUE(own) << own.error().what;
        EXPECT_EQ(own->task.pid, whole->task.pid);
        EXPECT_EQ(own->record_count, whole->record_count);
        EXPECT_EQ(own->processes.size(), 3u);
        EXPECT_EQ(own->size, whole->size);
        EXPECT_EQ(own->main_thread.has_value(), whole->main_thread.has_value());
    }
    MemorySource src(b.data(), b.size());
    auto none = decode_image(src, {.process = 3, .tree = &*root});
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().what, "no process 3 in the tree");
}

TEST(ImageTree, ProcessRecordBeforeVersion4IsRefused) {
    auto img = decode(two_processes(3), 0);
    ASSERT_FALSE(img);
    EXPECT_NE(img.error().what.find("process record out of place"), std::string::npos)
        << img.error().what;
}

TEST(ImageTree, ProcessRecordAfterAProcessWithoutOneIsRefused) {
    ImageWriter w(make_header(0, 576));
    add_process(w, 42);
    add_process_record(w, 43, 42);
    add_process(w, 43);
    auto img = decode(bytes(std::move(w)), 0);
    ASSERT_FALSE(img);
    EXPECT_NE(img.error().what.find("process record out of place"), std::string::npos)
        << img.error().what;
}

TEST(ImageTree, OneProcessHasNoProcessRecords) {
    ImageWriter w(make_header(0, 576));
    add_process(w, 42);
    auto img = decode(bytes(std::move(w)), 0);
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_TRUE(img->processes.empty());
}

// --- streamtree (version 16): every process's records, then page sections --

constexpr uint64_t kVma = 0x10000;

// A process with one anonymous VMA at kVma (pages: `pid`'s page follows in
// its section, or right after, in the layout of before).
void add_process_with_vma(ImageWriter& w, int32_t pid) {
    add_process(w, pid);
    image::VmaRecord v{};
    v.start = kVma;
    v.end = kVma + 4 * image::kPageSize;
    v.kind = uint32_t(image::VmaKind::kAnonPrivate);
    w.add(RecordType::kVma, Payload().add(v));
}

// Processes 42 and its child 43, each with its VMA: their process records
// and records, no pages.
void add_two_processes_with_vmas(ImageWriter& w) {
    add_process_record(w, 42, 1);
    add_process_with_vma(w, 42);
    add_process_record(w, 43, 42);
    add_process_with_vma(w, 43);
}

// One page at kVma + `at` pages, every byte `fill`.
void add_page(ImageWriter& w, uint32_t at, char fill) {
    std::string page(image::kPageSize, fill);
    w.add(RecordType::kPages, Payload()
                                  .add(image::PagesRecord{kVma + at * image::kPageSize, 1, 0})
                                  .add_bytes(page.data(), page.size()));
}

void add_section(ImageWriter& w, uint32_t process) {
    w.add(RecordType::kMemberPages, Payload().add(image::MemberPagesRecord{process, 0}));
}

void add_stats(ImageWriter& w) {
    w.add(RecordType::kStats, Payload().add(image::StatsRecord{}));
}

// Three processes, the last a zombie, in the layout crfs writes: records,
// then process 0's section (its page 0), then process 1's (its page 1).
std::string sectioned_tree() {
    ImageWriter w(make_header(0, 576));
    add_two_processes_with_vmas(w);
    w.add(RecordType::kProcess,
          Payload().add(image::ProcessRecord{44, 42, 1, 1, image::kProcessZombie, 0}));
    w.add(RecordType::kZombie, Payload().add(image::ZombieRecord{0, 0, 0, 0, "z"}));
    add_section(w, 0);
    add_page(w, 0, 'a');
    add_stats(w);
    add_section(w, 1);
    add_page(w, 1, 'b');
    add_stats(w);
    return bytes(std::move(w));
}

// Process `i` decoded on its own (a whole walk) and from the root's walk.
std::pair<Result<DecodedImage>, Result<DecodedImage>> both_decodes(const std::string& b, uint32_t i,
                                                                   const DecodedImage& root) {
    MemorySource src(b.data(), b.size());
    return {decode(b, i), decode_image(src, {.keep_data = true, .process = i, .tree = &root})};
}

TEST(ImageTreeSections, EachProcessGetsThePagesOfItsOwnSection) {
    std::string b = sectioned_tree();
    auto root = decode(b, 0);
    ASSERT_TRUE(root) << root.error().what;
    ASSERT_EQ(root->section_starts.size(), 3u);
    EXPECT_NE(root->section_starts[0].first, 0u);
    EXPECT_NE(root->section_starts[1].first, 0u);
    EXPECT_EQ(root->section_starts[2].first, 0u) << "a zombie has no section";
    for (uint32_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(i);
        auto [whole, own] = both_decodes(b, i, *root);
        ASSERT_TRUE(whole) << whole.error().what;
        ASSERT_TRUE(own) << own.error().what;
        for (const DecodedImage* img : {&*whole, &*own}) {
            EXPECT_EQ(img->task.pid, int32_t(42 + i));
            ASSERT_EQ(img->pages.size(), 1u);
            EXPECT_EQ(img->pages[0].vaddr, kVma + i * image::kPageSize);
        }
        EXPECT_EQ(own->pages[0].data, std::string(image::kPageSize, char('a' + i)));
        EXPECT_EQ(own->pages[0].stream_offset, whole->pages[0].stream_offset);
    }
}

// The same bytes with one change each: refused, saying where.
TEST(ImageTreeSections, MisplacedSectionsAndRecordsAreRefused) {
    struct Case {
        const char* what;
        void (*build)(ImageWriter&);  // after two processes' records
        const char* expect;
        uint32_t decoded = 0;  // the process whose decode meets the fault
    };
    const Case cases[] = {
        {"pages before the sections", [](ImageWriter& w) { add_page(w, 0, 'a'); },
         "in its page sections"},
        {"stats before the sections", [](ImageWriter& w) { add_stats(w); }, "in its page sections"},
        {"sections out of order",
         [](ImageWriter& w) {
             add_section(w, 1);
             add_section(w, 0);
         },
         "member-pages record out of place"},
        {"a section twice",
         [](ImageWriter& w) {
             add_section(w, 0);
             add_section(w, 0);
         },
         "member-pages record out of place"},
        {"a section of no process", [](ImageWriter& w) { add_section(w, 2); },
         "member-pages record out of place"},
        {"a section's reserved field",
         [](ImageWriter& w) {
             w.add(RecordType::kMemberPages, Payload().add(image::MemberPagesRecord{0, 1}));
         },
         "member-pages record out of place"},
        {"a zombie's section",
         [](ImageWriter& w) {
             w.add(RecordType::kProcess,
                   Payload().add(image::ProcessRecord{44, 42, 1, 1, image::kProcessZombie, 0}));
             w.add(RecordType::kZombie, Payload().add(image::ZombieRecord{0, 0, 0, 0, "z"}));
             add_section(w, 2);
         },
         "member-pages record out of place"},
        {"a process record after a section",
         [](ImageWriter& w) {
             add_section(w, 0);
             add_process_record(w, 44, 42);
         },
         "holds only pages and stats"},
        {"another record in a section",
         [](ImageWriter& w) {
             add_section(w, 1);
             w.add(RecordType::kVma, Payload().add(image::VmaRecord{}));
         },
         "holds only pages and stats"},
        {"pages outside the process's VMAs",
         [](ImageWriter& w) {
             add_section(w, 1);
             w.add(RecordType::kPages,
                   Payload()
                       .add(image::PagesRecord{0x100000, 1, 0})
                       .add_bytes(std::string(image::kPageSize, 'x').data(), image::kPageSize));
         },
         "outside every VMA", 1},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        ImageWriter w(make_header(0, 576));
        add_two_processes_with_vmas(w);
        c.build(w);
        std::string b = bytes(std::move(w));
        // The sections' errors are the whole walk's (process 0's decode); a
        // page outside process 1's VMAs is its own decode's.
        auto img = decode(b, c.decoded);
        ASSERT_FALSE(img);
        EXPECT_NE(img.error().what.find(c.expect), std::string::npos) << img.error().what;
    }
}

TEST(ImageTreeSections, ASectionBeforeVersion16OrInOneProcessIsRefused) {
    for (bool tree : {true, false}) {
        SCOPED_TRACE(tree ? "a version 15 tree" : "one process");
        image::Header hd = make_header(0, 576);
        if (tree) hd.version = 15;
        ImageWriter w(hd);
        if (tree) add_process_record(w, 42, 1);
        add_process_with_vma(w, 42);
        add_section(w, 0);
        auto img = decode(bytes(std::move(w)), 0);
        ASSERT_FALSE(img);
        EXPECT_NE(img.error().what.find("member-pages record out of place"), std::string::npos)
            << img.error().what;
    }
}

// Version 15 and before: each process's pages and stats follow its records,
// and still decode so.
TEST(ImageTreeSections, TheLayoutOfBeforeVersion16StillDecodes) {
    image::Header hd = make_header(0, 576);
    hd.version = 15;
    ImageWriter w(hd);
    add_process_record(w, 42, 1);
    add_process_with_vma(w, 42);
    add_page(w, 0, 'a');
    add_stats(w);
    add_process_record(w, 43, 42);
    add_process_with_vma(w, 43);
    add_page(w, 1, 'b');
    add_stats(w);
    std::string b = bytes(std::move(w));
    auto root = decode(b, 0);
    ASSERT_TRUE(root) << root.error().what;
    EXPECT_TRUE(root->section_starts.empty());
    for (uint32_t i = 0; i < 2; ++i) {
        MemorySource src(b.data(), b.size());
        auto own = decode_image(src, {.process = i, .tree = &*root});
        ASSERT_TRUE(own) << own.error().what;
        ASSERT_EQ(own->pages.size(), 1u);
        EXPECT_EQ(own->pages[0].vaddr, kVma + i * image::kPageSize);
    }
}

// overlap (version 17): a tree whose sections went out before its thaw
// has its members' stats after the last section, one member-stats record each.
void add_member_stats(ImageWriter& w, uint32_t process, uint64_t frozen_ns, uint32_t reserved = 0) {
    image::MemberStatsRecord m{};
    m.process = process;
    m.reserved = reserved;
    m.stats.frozen_ns = frozen_ns;
    w.add(RecordType::kMemberStats, Payload().add(m));
}

// Two live processes with a section each (pages only), then `tail`.
std::string tree_with_stats_tail(void (*tail)(ImageWriter&), uint32_t version = 17) {
    image::Header hd = make_header(0, 576);
    hd.version = version;
    ImageWriter w(hd);
    add_two_processes_with_vmas(w);
    add_section(w, 0);
    add_page(w, 0, 'a');
    add_section(w, 1);
    add_page(w, 1, 'b');
    tail(w);
    return bytes(std::move(w));
}

TEST(ImageTreeMemberStats, EachProcessGetsItsOwnStatsFromAfterTheLastSection) {
    std::string b = tree_with_stats_tail([](ImageWriter& w) {
        add_member_stats(w, 0, 1000);
        add_member_stats(w, 1, 1001);
    });
    auto root = decode(b, 0);
    ASSERT_TRUE(root) << root.error().what;
    ASSERT_EQ(root->member_stats.size(), 2u);
    for (uint32_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(i);
        auto [whole, own] = both_decodes(b, i, *root);
        ASSERT_TRUE(whole) << whole.error().what;
        ASSERT_TRUE(own) << own.error().what;
        for (const DecodedImage* img : {&*whole, &*own}) {
            ASSERT_TRUE(img->stats);
            EXPECT_EQ(img->stats->frozen_ns, 1000u + i);
            ASSERT_EQ(img->pages.size(), 1u);
            EXPECT_EQ(img->pages[0].vaddr, kVma + i * image::kPageSize);
        }
    }
    // A process may have none (informative, as stats), and a section its own.
    std::string some = tree_with_stats_tail([](ImageWriter& w) { add_member_stats(w, 1, 7); });
    auto first = decode(some, 0);
    ASSERT_TRUE(first) << first.error().what;
    EXPECT_FALSE(first->stats);
    auto second = decode(some, 1);
    ASSERT_TRUE(second) << second.error().what;
    ASSERT_TRUE(second->stats);
    EXPECT_EQ(second->stats->frozen_ns, 7u);
}

TEST(ImageTreeMemberStats, MisplacedOrDoubledMemberStatsAreRefused) {
    struct Case {
        const char* what;
        void (*tail)(ImageWriter&);
        const char* expect;
        uint32_t version = 17;
    };
    const Case cases[] = {
        {"out of order",
         [](ImageWriter& w) {
             add_member_stats(w, 1, 1);
             add_member_stats(w, 0, 1);
         },
         "member-stats record out of place"},
        {"twice for a process",
         [](ImageWriter& w) {
             add_member_stats(w, 0, 1);
             add_member_stats(w, 0, 1);
         },
         "member-stats record out of place"},
        {"of no process", [](ImageWriter& w) { add_member_stats(w, 2, 1); },
         "member-stats record out of place"},
        {"its reserved field", [](ImageWriter& w) { add_member_stats(w, 0, 1, 1); },
         "member-stats record out of place"},
        {"pages after it",
         [](ImageWriter& w) {
             add_member_stats(w, 0, 1);
             add_page(w, 1, 'c');
         },
         "only member-stats records follow"},
        {"a section after it",
         [](ImageWriter& w) {
             add_member_stats(w, 0, 1);
             add_section(w, 1);
         },
         "only member-stats records follow"},
        {"a stats record in the last section and a member-stats record for it",
         [](ImageWriter& w) {
             add_stats(w);
             add_member_stats(w, 1, 1);
         },
         "member-stats record out of place"},
        {"in a version 16 image", [](ImageWriter& w) { add_member_stats(w, 0, 1); },
         "member-stats record out of place", 16},
    };
    // Refused by the whole walk (process 0's decode), saying `expect`.
    auto refused = [](const std::string& b, const char* expect) {
        auto img = decode(b, 0);
        ASSERT_FALSE(img);
        EXPECT_NE(img.error().what.find(expect), std::string::npos) << img.error().what;
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        refused(tree_with_stats_tail(c.tail, c.version), c.expect);
    }
    // Before any section (in a process's records), and in one process's image.
    image::Header hd = make_header(0, 576);
    ImageWriter w(hd);
    add_process_record(w, 42, 1);
    add_process_with_vma(w, 42);
    add_member_stats(w, 0, 1);
    add_section(w, 0);
    refused(bytes(std::move(w)), "member-stats record out of place");
    ImageWriter one(hd);
    add_process_with_vma(one, 42);
    add_member_stats(one, 0, 1);
    refused(bytes(std::move(one)), "member-stats record out of place");
}

}  // namespace
}  // namespace crfs
