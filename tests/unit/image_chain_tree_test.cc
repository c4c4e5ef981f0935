// streamtree (version 16): a chain of tree images composes into one tree image
// whose page sections hold each process's composed pages; a last part whose
// sections leave out a process with composed pages is refused, not restored
// without them (restorer/image_chain.cc build).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "common/image_reader.h"
#include "common/image_writer.h"
#include "restorer/image_chain.h"
#include "tests/support/sample_image.h"

namespace crfs {
namespace {

using image::RecordType;
constexpr uint64_t kVma = 0x10000;
constexpr uint64_t kPage = image::kPageSize;

void add_member(ImageWriter& w, int32_t pid, int32_t ppid, bool keep_first_page) {
    w.add(RecordType::kProcess, Payload().add(image::ProcessRecord{pid, ppid, 1, 1, 0, 0}));
    test::add_minimal_process(w, pid);
    image::VmaRecord v{};
    v.start = kVma;
    v.end = kVma + 4 * kPage;
    v.kind = uint32_t(image::VmaKind::kAnonPrivate);
    w.add(RecordType::kVma, Payload().add(v));
    if (keep_first_page) w.add(RecordType::kKeep, Payload().add(image::KeepRecord{kVma, 1}));
}

void add_section(ImageWriter& w, uint32_t process, int at_page, char fill) {
    w.add(RecordType::kMemberPages, Payload().add(image::MemberPagesRecord{process, 0}));
    if (at_page >= 0) {
        std::string page(kPage, fill);
        w.add(RecordType::kPages,
              Payload()
                  .add(image::PagesRecord{kVma + uint64_t(at_page) * kPage, 1, 0})
                  .add_bytes(page.data(), page.size()));
    }
    w.add(RecordType::kStats, Payload().add(image::StatsRecord{}));
}

// The base: process 0 has page 0 ('a'), process 1 page 1 ('b').
std::string base() {
    ImageWriter w(make_header(0, 576));
    w.add(RecordType::kChain, Payload().add(image::ChainRecord{1, 0}));
    add_member(w, 42, 1, false);
    add_member(w, 43, 42, false);
    add_section(w, 0, 0, 'a');
    add_section(w, 1, 1, 'b');
    return test::stream_bytes(std::move(w).finish());
}

// A delta: process 0 keeps its page 0 and stores none; process 1 stores page
// 2 ('c') and keeps nothing. `with_first_section` false: no section for
// process 0, whose kept page then has no place.
std::string delta(bool with_first_section) {
    ImageWriter w(make_header(0, 576));
    w.add(RecordType::kChain, Payload().add(image::ChainRecord{2, 1}));
    add_member(w, 42, 1, true);
    add_member(w, 43, 42, false);
    if (with_first_section) add_section(w, 0, -1, 0);
    add_section(w, 1, 2, 'c');
    return test::stream_bytes(std::move(w).finish());
}

int memfd_of(const std::string& bytes) {
    int fd = memfd_create("chain-test", MFD_CLOEXEC);
    if (fd < 0 || write(fd, bytes.data(), bytes.size()) != ssize_t(bytes.size()) ||
        lseek(fd, 0, SEEK_SET) != 0)
        return -1;
    return fd;
}

std::string read_all(int fd) {
    std::string out;
    char buf[65536];
    lseek(fd, 0, SEEK_SET);
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
    return out;
}

TEST(ImageChainTree, EachProcessGetsItsComposedPagesInItsOwnSection) {
    UniqueFd in(memfd_of(base() + delta(true)));
    ASSERT_TRUE(in);
    auto out = compose_chain(in.get());
    ASSERT_TRUE(out) << out.error().what;
    std::string b = read_all(out->get());
    MemorySource src(b.data(), b.size());
    auto root = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(root) << root.error().what;
    ASSERT_EQ(root->section_starts.size(), 2u);
    ASSERT_EQ(root->pages.size(), 1u);
    EXPECT_EQ(root->pages[0].vaddr, kVma);
    EXPECT_EQ(root->pages[0].data, std::string(kPage, 'a')) << "kept from the base";
    MemorySource again(b.data(), b.size());
    auto second = decode_image(again, {.keep_data = true, .process = 1, .tree = &*root});
    ASSERT_TRUE(second) << second.error().what;
    ASSERT_EQ(second->pages.size(), 1u);
    EXPECT_EQ(second->pages[0].vaddr, kVma + 2 * kPage);
    EXPECT_EQ(second->pages[0].data, std::string(kPage, 'c')) << "stored in the delta";
}

TEST(ImageChainTree, AProcessWithComposedPagesAndNoSectionIsRefused) {
    UniqueFd in(memfd_of(base() + delta(false)));
    ASSERT_TRUE(in);
    auto out = compose_chain(in.get());
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, EINVAL);
    EXPECT_NE(out.error().what.find("page sections are not one per live process"),
              std::string::npos)
        << out.error().what;
}

}  // namespace
}  // namespace crfs
