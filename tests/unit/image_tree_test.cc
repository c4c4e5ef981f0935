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

// The records of one minimal process.
void add_process(ImageWriter& w, int32_t pid) {
    image::TaskRecord t{};
    t.pid = pid;
    w.add(RecordType::kTask, Payload().add(t));
    w.add(RecordType::kCreds, Payload().add(image::CredsRecord{}));
    w.add(RecordType::kFs, Payload().add(image::FsRecord{022, 0, 0, 0}));
    w.add(RecordType::kMm, Payload().add(image::MmRecord{}));
    test::add_main_thread(w, pid);
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

}  // namespace
}  // namespace crfs
