// A slot's spool (common/image_spool.h): page data page-aligned in the page
// store, pages records' headers in the compact store, everything else at its
// own offset in the image memfd, whatever the pieces the bytes arrive in, and
// read back through ImageSpool::Source exactly as written; what the framing
// walk does not understand (a chain, a broken header) ends up as the plain
// image.
#include "common/image_spool.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/image_writer.h"
#include "tests/support/sample_image.h"

namespace crfs {
namespace {

using image::RecordType;
constexpr uint64_t kPage = image::kPageSize;

// A complete image with three page runs (2, 17 and 1 pages) in two VMAs,
// or with `singles` one-page runs, each in its own one-page VMA.
std::string sample_image(uint32_t singles = 0) {
    ImageWriter w(make_header(0, 576));
    image::TaskRecord t{};
    t.pid = 42;
    std::strcpy(t.comm, "spool");
    w.add(RecordType::kTask, Payload().add(t));
    w.add(RecordType::kCreds, Payload().add(image::CredsRecord{}));
    w.add(RecordType::kFs, Payload().add(image::FsRecord{022, 4, 1, 0}).add_string("/tmp/"));
    image::MmRecord mm{};
    mm.auxv_len = 16;
    mm.exe_len = 8;
    w.add(RecordType::kMm,
          Payload().add(mm).add(uint64_t(6)).add(uint64_t(4096)).add_string("/bin/foo"));
    std::vector<std::pair<uint64_t, uint32_t>> runs = {{0x11000, 2}, {0x100000, 17}, {0x11f000, 1}};
    std::vector<std::pair<uint64_t, uint64_t>> vmas = {{0x10000, 0x30000}, {0x100000, 0x120000}};
    if (singles) runs.clear(), vmas.clear();
    for (uint32_t i = 0; i < singles; ++i) {
        vmas.emplace_back(0x10000000 + i * 2 * kPage, 0x10000000 + i * 2 * kPage + kPage);
        runs.emplace_back(vmas.back().first, 1);
    }
    for (auto [start, end] : vmas) {
        image::VmaRecord v{};
        v.start = start;
        v.end = end;
        v.kind = uint32_t(image::VmaKind::kAnonPrivate);
        v.flags = image::kVmaRead | image::kVmaWrite;
        w.add(RecordType::kVma, Payload().add(v));
    }
    static std::vector<std::vector<char>> data;
    data.clear();
    for (auto [vaddr, n] : runs) {
        data.emplace_back(n * kPage);
        for (size_t i = 0; i < data.back().size(); ++i)
            data.back()[i] = char(i * 13 + vaddr / kPage + 1);
        image::PagesRecord pr{vaddr, n, 0};
        w.add_external(RecordType::kPages, Payload().add(pr).bytes(), data.back().data(),
                       data.back().size());
    }
    test::add_main_thread(w, 42);
    return test::stream_bytes(std::move(w).finish());
}

std::string read_all(int fd) {
    std::string out;
    char buf[65536];
    for (off_t off = 0;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, off);
        if (n <= 0) break;
        out.append(buf, size_t(n));
        off += n;
    }
    return out;
}

ImageSpool spool_in_pieces(const std::string& bytes, size_t step, PageSink* sink = nullptr) {
    auto s = ImageSpool::create("test");
    EXPECT_TRUE(s);
    s->divert(sink);
    size_t sizes[] = {1, step, 40, 3, 4093, 39, 4096 * 3 + 7, 41};
    for (size_t off = 0, i = 0; off < bytes.size(); ++i) {
        size_t n = std::min(sizes[i % std::size(sizes)], bytes.size() - off);
        auto ok = s->append(bytes.data() + off, n);
        EXPECT_TRUE(ok) << ok.error().what;
        off += n;
    }
    return std::move(*s);
}

Result<DecodedImage> decode_fd(int fd, bool verified = true) {
    FdSource src(fd);
    return decode_image(src, {.checksum_verified = verified});
}

// The image memfd mapped, as the restore maps it.
struct Mapped {
    explicit Mapped(const ImageSpool& s) : len(s.size()) {
        if (len) p = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, s.image_fd(), 0);
        EXPECT_NE(p, MAP_FAILED);
    }
    ~Mapped() {
        if (len && p != MAP_FAILED) ::munmap(p, len);
    }
    const char* data() const { return static_cast<const char*>(p); }
    void* p = MAP_FAILED;
    size_t len;
};

// The image as the spool gives it back, read in pieces of `step`.
std::string spooled(const ImageSpool& s, size_t step = 7) {
    Mapped m(s);
    ImageSpool::Source src(s, m.data(), m.len);
    std::string out;
    for (;;) {
        std::string piece(step, '\0');
        auto n = src.read(piece.data(), piece.size());
        EXPECT_TRUE(n);
        if (!n || *n == 0) break;
        out.append(piece.data(), *n);
    }
    return out;
}

// The decode of the restore (the checksum taken as the bytes came, page data skipped).
Result<DecodedImage> decode_spool(const ImageSpool& s, const std::string& bytes) {
    ImagePrehash h;
    h.update(bytes.data(), bytes.size());
    auto hashed = h.result();
    if (!hashed) return make_error(EINVAL, "no hash");
    Mapped m(s);
    ImageSpool::Source src(s, m.data(), m.len);
    return decode_image(src, {.hashed = &*hashed});
}

TEST(ImageSpool, PageDataAlignedApartAndPlacedWhereTheDecoderFindsIt) {
    std::string bytes = sample_image();
    MemorySource src(bytes.data(), bytes.size());
    auto full = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(full) << full.error().what;
    ASSERT_EQ(full->pages.size(), 3u);
    for (size_t step : {1ul, 16ul, 4096ul, 65537ul, 1ul << 20}) {
        SCOPED_TRACE(step);
        ImageSpool s = spool_in_pieces(bytes, step);
        EXPECT_EQ(s.size(), bytes.size());
        // The image memfd: every byte but the pages records, which read as zeros.
        std::string expect = bytes;
        for (const auto& p : full->pages)
            std::memset(expect.data() + p.stream_offset - ImageSpool::kRunHeadBytes, 0,
                        p.nr_pages * kPage + ImageSpool::kRunHeadBytes);
        EXPECT_EQ(read_all(s.image_fd()), expect);
        ASSERT_EQ(s.runs().size(), 3u);
        for (const auto& r : s.runs()) EXPECT_EQ(r.stored % kPage, 0u);
        // Read through the spool: the image as written, in any pieces.
        EXPECT_EQ(spooled(s), bytes);
        EXPECT_EQ(spooled(s, 4096), bytes);
        EXPECT_EQ(spooled(s, 1), bytes);
        // The decode of the spool finds the page runs; place() moves them.
        auto img = decode_spool(s, bytes);
        ASSERT_TRUE(img) << img.error().what;
        auto fd = s.place(*img);
        ASSERT_TRUE(fd);
        EXPECT_NE(*fd, s.image_fd());
        for (size_t i = 0; i < img->pages.size(); ++i) {
            const auto& p = img->pages[i];
            EXPECT_EQ(p.stream_offset % kPage, 0u);
            std::string got(p.nr_pages * kPage, '\0');
            ASSERT_EQ(::pread(*fd, got.data(), got.size(), off_t(p.stream_offset)),
                      ssize_t(got.size()));
            EXPECT_EQ(got, full->pages[i].data) << "run " << i;
        }
        // Put back: the image memfd is the image again.
        ASSERT_TRUE(s.materialize());
        EXPECT_EQ(read_all(s.image_fd()), bytes);
    }
}

TEST(ImageSpool, AChainOrABrokenHeaderIsSpooledPlainly) {
    std::string one = sample_image();
    for (size_t step : {1ul, 4096ul, 1ul << 20}) {
        SCOPED_TRACE(step);
        // Two images one after the other (cat base delta): all bytes in place.
        std::string two = one + one;
        ImageSpool s = spool_in_pieces(two, step);
        EXPECT_EQ(read_all(s.image_fd()), two);
        EXPECT_TRUE(s.runs().empty());
        MemorySource src(one.data(), one.size());  // the first image's runs
        auto img = decode_image(src);
        ASSERT_TRUE(img) << img.error().what;
        auto fd = s.place(*img);
        ASSERT_TRUE(fd);
        EXPECT_EQ(*fd, s.image_fd());
        // A header size out of range: nothing is taken apart.
        std::string bad = one;
        uint32_t hs = 5000;
        std::memcpy(bad.data() + 12, &hs, 4);
        ImageSpool b = spool_in_pieces(bad, step);
        EXPECT_EQ(read_all(b.image_fd()), bad);
        EXPECT_TRUE(b.runs().empty());
    }
}

TEST(ImageSpool, ARunTheFramingWalkDidNotStorePutsThePageDataBack) {
    std::string bytes = sample_image();
    ImageSpool s = spool_in_pieces(bytes, 4096);
    auto img = decode_spool(s, bytes);
    ASSERT_TRUE(img) << img.error().what;
    img->pages[1].stream_offset += 8;  // not a stored run's data
    auto fd = s.place(*img);
    ASSERT_TRUE(fd);
    EXPECT_EQ(*fd, s.image_fd());
    EXPECT_EQ(read_all(s.image_fd()), bytes);
    // Truncated in the page data: the image memfd is as long as what came.
    std::string cut = bytes.substr(0, bytes.size() / 2);
    ImageSpool t = spool_in_pieces(cut, 4096);
    EXPECT_EQ(read_all(t.image_fd()).size(), cut.size());
}

// Hostile framings (lengths past the limit, not a page multiple, spanning
// past the end, a trailer of any length, bytes after it): whatever the walk
// made of them, the image memfd holds every byte again once the page data
// is put back, so the full decode gives the very message it gives the bytes.
TEST(ImageSpool, HostileFramingsGiveTheBytesBackExactly) {
    std::string bytes = sample_image();
    MemorySource src(bytes.data(), bytes.size());
    auto full = decode_image(src);
    ASSERT_TRUE(full) << full.error().what;
    uint64_t hdr =
        full->pages[1].stream_offset - sizeof(image::PagesRecord) - sizeof(image::RecordHeader);
    auto with_length = [&](uint64_t len) {
        std::string b = bytes;
        std::memcpy(b.data() + hdr + 8, &len, 8);
        return b;
    };
    std::vector<std::string> cases = {with_length(1ull << 63),
                                      with_length(sizeof(image::PagesRecord) + 17 * kPage + 1),
                                      with_length(sizeof(image::PagesRecord) + 4097 * kPage),
                                      with_length(sizeof(image::PagesRecord) + 4096 * kPage),
                                      bytes + "x",
                                      bytes.substr(0, full->pages[1].stream_offset + 5000)};
    std::string t = bytes;  // the trailer claims to be long
    uint64_t big = 1ull << 40;
    std::memcpy(t.data() + bytes.size() - 40 + 8, &big, 8);
    cases.push_back(t);
    for (size_t i = 0; i < cases.size(); ++i) {
        SCOPED_TRACE(i);
        ImageSpool s = spool_in_pieces(cases[i], 4096);
        for (const auto& r : s.runs()) EXPECT_EQ(r.stored % kPage, 0u);
        EXPECT_EQ(spooled(s), cases[i]);  // read as written, whatever the walk made of it
        ASSERT_TRUE(s.materialize());
        EXPECT_EQ(read_all(s.image_fd()), cases[i]);
        MemorySource a(cases[i].data(), cases[i].size());
        auto want = decode_image(a);
        auto got = decode_fd(s.image_fd(), false);
        ASSERT_FALSE(want);
        ASSERT_FALSE(got);
        EXPECT_EQ(got.error().what, want.error().what);
    }
}

// A one-page run costs one page of fresh memory: its headers go to the
// compact store, not one into nearly every page of the image memfd.
TEST(ImageSpool, OnePageRunsLeaveTheImageMemfdCompact) {
    constexpr uint32_t kRuns = 512;
    std::string bytes = sample_image(kRuns);
    for (size_t step : {4096ul, 128ul << 10, 1ul << 20}) {
        SCOPED_TRACE(step);
        ImageSpool s = spool_in_pieces(bytes, step);
        ASSERT_EQ(s.runs().size(), kRuns);
        struct stat mem {
        }, pages{};
        ASSERT_EQ(::fstat(s.image_fd(), &mem), 0);
        auto img = decode_spool(s, bytes);
        ASSERT_TRUE(img) << img.error().what;
        auto fd = s.place(*img);
        ASSERT_TRUE(fd);
        ASSERT_EQ(::fstat(*fd, &pages), 0);
        EXPECT_EQ(uint64_t(mem.st_size), bytes.size());
        EXPECT_EQ(uint64_t(pages.st_blocks) * 512, kRuns * kPage);
        // The VMA records and the rest: ~12 pages, plus one page per write()
        // that ends inside a pages record's header (a few). Before: a page per run.
        EXPECT_LT(uint64_t(mem.st_blocks) * 512, 32 * kPage)
            << "image memfd blocks " << mem.st_blocks;
        EXPECT_EQ(spooled(s), bytes);
    }
}

// Cut anywhere around a pages record (its record header, its PagesRecord,
// its data) in any pieces: the spool reads back exactly what came, the
// restore's decode refuses it, and materialize gives the bytes back.
TEST(ImageSpool, AnImageCutAroundAPagesRecordReadsBackExactly) {
    std::string bytes = sample_image();
    MemorySource src(bytes.data(), bytes.size());
    auto full = decode_image(src);
    ASSERT_TRUE(full) << full.error().what;
    uint64_t hdr = full->pages[2].stream_offset - ImageSpool::kRunHeadBytes;
    for (uint64_t cut = hdr - 2; cut <= hdr + ImageSpool::kRunHeadBytes + 2; ++cut) {
        for (size_t step : {1ul, 4096ul}) {
            SCOPED_TRACE(testing::Message() << "cut " << cut - hdr << " step " << step);
            std::string b = bytes.substr(0, cut);
            ImageSpool s = spool_in_pieces(b, step);
            EXPECT_EQ(s.size(), b.size());
            EXPECT_EQ(spooled(s), b);
            EXPECT_FALSE(decode_spool(s, b));
            ASSERT_TRUE(s.materialize());
            EXPECT_EQ(read_all(s.image_fd()), b);
        }
    }
}

// stream: what a sink is handed (fs/slot_stream.h is the real one).
struct KeptSink : PageSink {
    bool take = true;
    int firsts = 0;
    uint64_t first_at = 0;
    std::map<uint64_t, std::string> runs;  // each run's data, by its address
    std::vector<uint32_t> records;
    bool first_pages(uint64_t at) override {
        ++firsts;
        first_at = at;
        return take;
    }
    Status data(uint64_t vaddr, uint32_t nr_pages, uint64_t off, const char* buf,
                size_t len) override {
        std::string& run = runs[vaddr];
        EXPECT_EQ(off, run.size()) << "run " << vaddr << ": bytes in order, none twice";
        EXPECT_LE(off + len, uint64_t(nr_pages) * kPage);
        run.append(buf, len);
        return {};
    }
    Status record(uint32_t type) override {
        records.push_back(type);
        return {};
    }
    std::vector<std::pair<uint32_t, size_t>> sections;  // process, runs before it
    Status section(uint32_t process) override {
        sections.emplace_back(process, runs.size());
        return {};
    }
};

// stream: from the first pages record on, the page data goes to the sink,
// whole and in order, whatever the pieces; the records before it are in the
// image memfd when the sink is told; later records are named to it; the
// close's decode of the whole image (checksum as written, page data unread)
// still reads it. A sink that declines leaves the spool as it was.
TEST(ImageSpool, ASinkTakesThePageDataFromTheFirstPagesRecordOn) {
    std::string bytes = sample_image();
    MemorySource src(bytes.data(), bytes.size());
    auto full = decode_image(src, {.keep_data = true});
    ASSERT_TRUE(full) << full.error().what;
    ASSERT_EQ(full->pages.size(), 3u);
    uint64_t first = full->pages[0].stream_offset - ImageSpool::kRunHeadBytes;
    for (size_t step : {1ul, 16ul, 4096ul, 65537ul, 1ul << 20}) {
        SCOPED_TRACE(step);
        KeptSink sink;
        ImageSpool s = spool_in_pieces(bytes, step, &sink);
        EXPECT_EQ(sink.firsts, 1);
        EXPECT_EQ(sink.first_at, first);
        EXPECT_TRUE(s.diverted());
        EXPECT_EQ(read_all(s.image_fd()).substr(0, first), bytes.substr(0, first));
        ASSERT_EQ(sink.runs.size(), 3u);
        for (const auto& p : full->pages) EXPECT_EQ(sink.runs[p.vaddr], p.data) << p.vaddr;
        // The sample's thread records follow its pages (a streamed restore refuses that).
        ASSERT_FALSE(sink.records.empty());
        EXPECT_EQ(sink.records.front(), uint32_t(RecordType::kThread));
        EXPECT_EQ(sink.records.back(), uint32_t(RecordType::kTrailer));
        auto img = decode_spool(s, bytes);
        ASSERT_TRUE(img) << img.error().what;
        EXPECT_EQ(img->pages.size(), 3u);
    }
    KeptSink no;
    no.take = false;
    ImageSpool s = spool_in_pieces(bytes, 4096, &no);
    EXPECT_EQ(no.firsts, 1);
    EXPECT_FALSE(s.diverted());
    EXPECT_TRUE(no.runs.empty());
    EXPECT_TRUE(no.records.empty());
    EXPECT_EQ(spooled(s), bytes);
}

// streamtree: a version-16 tree's page sections: the sink is told each
// section's process when its member-pages record ends (the first one's
// before the page data, among the records it is planned from), whatever
// the pieces; a record of another size is no section.
TEST(ImageSpool, ASinkIsToldWhoseSectionTheRunsAreIn) {
    ImageWriter w(make_header(0, 576));
    test::add_minimal_process(w, 42);
    test::add_minimal_process(w, 43);
    std::vector<char> data(2 * kPage, 'x');
    auto section = [&](uint32_t process, uint64_t vaddr) {
        w.add(RecordType::kMemberPages, Payload().add(image::MemberPagesRecord{process, 0}));
        w.add_external(RecordType::kPages, Payload().add(image::PagesRecord{vaddr, 2, 0}).bytes(),
                       data.data(), data.size());
        w.add(RecordType::kStats, Payload().add(image::StatsRecord{}));
    };
    section(0, 0x10000);
    section(1, 0x20000);
    w.add(RecordType::kMemberPages, Payload().add(uint32_t(7)));  // 4 bytes: no section
    std::string bytes = test::stream_bytes(std::move(w).finish());
    for (size_t step : {1ul, 5ul, 4096ul, 1ul << 20}) {
        SCOPED_TRACE(step);
        KeptSink sink;
        ImageSpool s = spool_in_pieces(bytes, step, &sink);
        EXPECT_TRUE(s.diverted());
        using Seen = std::vector<std::pair<uint32_t, size_t>>;
        EXPECT_EQ(sink.sections, (Seen{{0, 0}, {1, 1}}));
        EXPECT_EQ(sink.runs.size(), 2u);
        EXPECT_EQ(std::count(sink.records.begin(), sink.records.end(),
                             uint32_t(RecordType::kMemberPages)),
                  2);
    }
}

}  // namespace
}  // namespace crfs
