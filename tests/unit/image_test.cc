// The image writer and THE decoder: a round trip, and each class of broken
// image giving its own precise error.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/image_prehash.h"
#include "common/image_reader.h"
#include "common/image_writer.h"
#include "common/strfmt.h"
#include "tests/support/sample_image.h"

namespace crfs {
namespace {

using image::RecordType;

image::ThreadRecord thread_rec(int32_t tid) {
    image::ThreadRecord t{};
    t.tid = tid;
    return t;
}

using test::stream_bytes;

// A small but complete image: every singleton record, one VMA with two pages,
// a deleted-file fd with content, and a pending signal.
struct Sample {
    std::vector<char> pages = std::vector<char>(2 * image::kPageSize);
    std::string file = "deleted content";
    std::string bytes;

    // `version` 1: the fd record without same_as. `shared`: fd 4 shares fd 3's
    // description (then `fd4_data`: content for fd 4 too, which is wrong).
    // `attrs_tid`: a thread-attrs record (fid, version 6) after the main thread's.
    explicit Sample(uint32_t version = image::kFormatVersion, bool shared = false,
                    bool fd4_data = false, std::optional<int32_t> attrs_tid = {}) {
        for (size_t i = 0; i < pages.size(); ++i) pages[i] = char(i * 7 + 1);
        image::Header h = make_header(0, 576);
        h.version = version;
        ImageWriter w(h);
        image::TaskRecord t{};
        t.pid = 42;
        std::strcpy(t.comm, "sample");
        w.add(RecordType::kTask, Payload().add(t));
        image::CredsRecord c{};
        c.ngroups = 2;
        w.add(RecordType::kCreds, Payload().add(c).add(uint32_t(10)).add(uint32_t(20)));
        image::FsRecord fs{022, 4, 1, 0};
        w.add(RecordType::kFs, Payload().add(fs).add_string("/tmp/"));
        image::MmRecord mm{};
        mm.auxv_len = 16;
        mm.exe_len = 8;
        w.add(RecordType::kMm,
              Payload().add(mm).add(uint64_t(6)).add(uint64_t(4096)).add_string("/bin/foo"));
        image::VmaRecord v{};
        v.start = 0x10000;
        v.end = 0x14000;
        v.kind = uint32_t(image::VmaKind::kAnonPrivate);
        v.flags = image::kVmaRead | image::kVmaWrite;
        w.add(RecordType::kVma, Payload().add(v));
        image::PagesRecord pr{0x11000, 2, 0};
        w.add_external(RecordType::kPages, Payload().add(pr).bytes(), pages.data(), pages.size());
        if (version >= 3) w.add(RecordType::kThread, Payload().add(thread_rec(42)));
        if (attrs_tid)
            w.add(RecordType::kThreadAttrs,
                  Payload().add(image::ThreadAttrsRecord{*attrs_tid, 10, 50000, 0x4004, 0}));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
        w.add(RecordType::kXstate, std::string(576, 'x'));
        w.add(RecordType::kSigactions, Payload().add(image::SigactionsRecord{}));
        w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
        image::SiginfoRecord si{};
        si.info[0] = 10;
        w.add(RecordType::kSiginfo, Payload().add(si));
        w.add(RecordType::kRlimits, Payload().add(image::RlimitsRecord{}));
        w.add(RecordType::kItimers, Payload().add(image::ItimersRecord{}));
        image::FdRecord f{};
        f.fd = 3;
        f.kind = uint32_t(image::FdKind::kDeleted);
        f.size = file.size();
        f.path_len = 4;
        if (version == 1)
            w.add(RecordType::kFd,
                  Payload().add_bytes(&f, image::kFdRecordV1Size).add_string("/tmp"));
        else
            w.add(RecordType::kFd, Payload().add(f).add_string("/tmp"));
        if (shared) {
            f.fd = 4, f.same_as = 3;
            w.add(RecordType::kFd, Payload().add(f).add_string("/tmp"));
        }
        w.add(RecordType::kFdData, Payload().add(image::FdDataRecord{3, 0, 0}).add_string(file));
        if (fd4_data)
            w.add(RecordType::kFdData,
                  Payload().add(image::FdDataRecord{4, 0, 0}).add_string(file));
        bytes = stream_bytes(std::move(w).finish());
    }
};

Result<DecodedImage> decode(const std::string& bytes, DecodeOptions o = {}) {
    MemorySource src(bytes.data(), bytes.size());
    return decode_image(src, o);
}

// Recomputes the trailer checksum after a test edits the middle of an image, so
// the edit (not the checksum) is what the decoder reports.
void fix_checksum(std::string& b);

TEST(ImageTest, RoundTrip) {
    Sample s;
    auto img = decode(s.bytes, {.keep_data = true});
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_EQ(img->task.pid, 42);
    EXPECT_STREQ(img->task.comm, "sample");
    EXPECT_EQ(img->groups, (std::vector<uint32_t>{10, 20}));
    EXPECT_EQ(img->cwd, "/tmp");
    EXPECT_EQ(img->root, "/");
    EXPECT_EQ(img->fs.umask, 022u);
    EXPECT_EQ(img->auxv, (std::vector<uint64_t>{6, 4096}));
    EXPECT_EQ(img->exe, "/bin/foo");
    ASSERT_EQ(img->vmas.size(), 1u);
    ASSERT_EQ(img->pages.size(), 1u);
    EXPECT_EQ(img->pages[0].vaddr, 0x11000u);
    EXPECT_EQ(img->pages[0].data, std::string(s.pages.data(), s.pages.size()));
    EXPECT_EQ(s.bytes.substr(img->pages[0].stream_offset, 16), std::string(s.pages.data(), 16));
    EXPECT_EQ(img->xstate.size(), 576u);
    ASSERT_EQ(img->pending.size(), 1u);
    ASSERT_EQ(img->fds.size(), 1u);
    EXPECT_EQ(img->fds[0].data, s.file);
    EXPECT_EQ(img->record_count, 16u);  // with the main thread's thread record (version 3)
    EXPECT_EQ(img->size, s.bytes.size());
}

// Version 1 images are still read: their fds are each their own description.
TEST(ImageTest, Version1FdRecordHasNoSameAs) {
    Sample s(1);
    auto img = decode(s.bytes, {.keep_data = true});
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_EQ(img->fds.size(), 1u);
    EXPECT_EQ(img->fds[0].rec.same_as, -1);
    EXPECT_EQ(img->fds[0].path, "/tmp");
    EXPECT_EQ(img->fds[0].data, s.file);
    // A version-2 reader of that stream would take the path's bytes for same_as.
    std::string v2 = s.bytes;
    uint32_t two = 2;
    std::memcpy(v2.data() + 8, &two, 4);
    fix_checksum(v2);
    auto bad = decode(v2);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().what.find("(fd)"), std::string::npos) << bad.error().what;
}

// One description: its content is stored once, for the lowest fd.
TEST(ImageTest, SharedDeletedFileHasContentOnlyOnce) {
    Sample s(image::kFormatVersion, true);
    auto img = decode(s.bytes, {.keep_data = true});
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_EQ(img->fds.size(), 2u);
    EXPECT_EQ(img->fds[1].rec.same_as, 3);
    EXPECT_EQ(img->fds[1].data_bytes, 0u);
    Sample twice(image::kFormatVersion, true, true);
    auto bad = decode(twice.bytes);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().what.find("data for fd 4, which is no deleted file or shares another"),
              std::string::npos)
        << bad.error().what;
}

TEST(ImageTest, ReadsThroughAPipeInOddChunks) {
    Sample s;
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        close(p[0]);
        for (size_t off = 0; off < s.bytes.size(); off += 1000)
            if (write(p[1], s.bytes.data() + off, std::min<size_t>(1000, s.bytes.size() - off)) < 0)
                _exit(1);
        _exit(0);
    }
    close(p[1]);
    FdSource src(p[0]);
    auto img = decode_image(src);
    close(p[0]);
    int st;
    waitpid(child, &st, 0);
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_EQ(img->pages.size(), 1u);
}

TEST(ImageTest, StreamReadAtAnyOffsetMatchesWhole) {
    Sample s;
    ImageWriter w(make_header(0, 0));
    std::vector<char> ext(10000, 'e');
    w.add(RecordType::kTask, Payload().add(image::TaskRecord{}));
    w.add_external(RecordType::kPages, "prefix", ext.data(), ext.size());
    ImageStream st = std::move(w).finish();
    std::string whole = stream_bytes(st);
    for (uint64_t off : {0ul, 1ul, 111ul, 127ul, 128ul, 5000ul, whole.size() - 3}) {
        char buf[1024];
        size_t n = st.read(off, buf, sizeof buf);
        EXPECT_EQ(n, std::min<size_t>(1024, whole.size() - off));
        EXPECT_EQ(std::string(buf, n), whole.substr(off, n)) << off;
    }
    char c;
    EXPECT_EQ(st.read(whole.size(), &c, 1), 0u);
}

// perf (session 48): the metadata is kept in blocks that never move, a
// record may straddle two of them. 2.4 MB of records of odd sizes between
// bulk data (many blocks): the stream is exactly header, records and
// trailer in order, its checksum is of those bytes, and a stream moved
// elsewhere serves the same bytes.
TEST(ImageTest, MetadataAcrossManyBlocksIsTheStreamInOrder) {
    const image::Header header = make_header(0, 0);
    ImageWriter w(header);
    std::string want(reinterpret_cast<const char*>(&header), sizeof header);
    std::vector<char> ext(5000, 'e');
    auto put_header = [&](RecordType type, uint64_t len) {
        image::RecordHeader rh{static_cast<uint32_t>(type), 0, len};
        want.append(reinterpret_cast<const char*>(&rh), sizeof rh);
    };
    for (int i = 0; i < 800; ++i) {
        std::string payload(size_t(3001 + i % 7), char('a' + i % 26));
        if (i % 100 == 99) {  // now and then bulk data between the records
            w.add_external(RecordType::kPages, payload, ext.data(), ext.size());
            put_header(RecordType::kPages, payload.size() + ext.size());
            want += payload;
            want.append(ext.data(), ext.size());
        } else {
            w.add(RecordType::kTask, payload);
            put_header(RecordType::kTask, payload.size());
            want += payload;
        }
    }
    ImageStream built = std::move(w).finish();
    ImageStream st = std::move(built);  // moved: the blocks stay, so do the pieces
    const std::string whole = stream_bytes(st);
    const size_t tail = sizeof(image::RecordHeader) + sizeof(image::Trailer);
    ASSERT_EQ(whole.size(), want.size() + tail);
    EXPECT_TRUE(whole.compare(0, want.size(), want) == 0);
    uint64_t sum;
    std::memcpy(&sum, whole.data() + whole.size() - 16, 8);
    EXPECT_EQ(sum, XXH3_64bits(want.data(), want.size()));
    std::string pieces;
    ASSERT_TRUE(st.for_each_piece(st.size(), [&](const char* p, size_t n) -> Status {
        pieces.append(p, n);
        return {};
    }));
    EXPECT_EQ(pieces, whole);
}

// perf (session 18): a live image's head goes to its sink as the stream's
// own pieces, without a copy: they are the stream's bytes, in order, up to
// where asked; the first piece refused ends the walk.
TEST(ImageTest, PiecesUpToAnOffsetAreTheStreamsBytes) {
    ImageWriter w(make_header(0, 0));
    std::vector<char> ext(10000, 'e');
    w.add(RecordType::kTask, Payload().add(image::TaskRecord{}));
    w.add_external(RecordType::kPages, "prefix", ext.data(), ext.size());
    w.add(RecordType::kTask, Payload().add(image::TaskRecord{}));
    ImageStream st = std::move(w).finish();
    std::string whole = stream_bytes(st);
    for (uint64_t end : {0ul, 1ul, 100ul, 5000ul, whole.size() - 40, whole.size()}) {
        std::string got;
        ASSERT_TRUE(st.for_each_piece(end, [&](const char* p, size_t n) -> Status {
            got.append(p, n);
            return {};
        }));
        EXPECT_EQ(got, whole.substr(0, end)) << end;
    }
    int calls = 0;
    auto r = st.for_each_piece(whole.size(), [&](const char*, size_t) -> Status {
        ++calls;
        return make_error(EPIPE, "reader gone");
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPIPE);
    EXPECT_EQ(calls, 1);
}

// The checksum is computed as the stream is served: whatever the order of
// reads, the bytes (checksum included) are the same and decode.
TEST(ImageTest, LazyChecksumSameForAnyReadOrder) {
    auto build = [] {
        ImageWriter w(make_header(0, 0));
        static std::vector<char> ext(3 * image::kPageSize + 5, 'p');
        w.add(RecordType::kTask, Payload().add(image::TaskRecord{}));
        w.add_external(RecordType::kPages, "prefix", ext.data(), ext.size());
        return std::move(w).finish();
    };
    ImageStream a = build(), b = build(), c = build();
    std::string seq, whole(b.size(), '\0'), backwards(c.size(), '\0');
    char buf[100];
    for (uint64_t off = 0; off < a.size();) {
        size_t n = a.read(off, buf, sizeof buf);
        seq.append(buf, n);
        off += n;
    }
    EXPECT_EQ(b.read(0, whole.data(), whole.size()), whole.size());
    for (uint64_t end = c.size(); end > 0;) {
        uint64_t start = end > 333 ? end - 333 : 0;
        EXPECT_EQ(c.read(start, backwards.data() + start, end - start), end - start);
        end = start;
    }
    EXPECT_EQ(seq, whole);
    EXPECT_EQ(backwards, whole);
    uint64_t sum;
    std::memcpy(&sum, whole.data() + whole.size() - 16, 8);
    EXPECT_EQ(sum, XXH3_64bits(whole.data(), whole.size() - sizeof(image::RecordHeader) -
                                                 sizeof(image::Trailer)));
}

std::string error_of(const std::string& bytes) {
    auto img = decode(bytes);
    EXPECT_FALSE(img);
    return img ? std::string("decoded fine") : img.error().what;
}

TEST(ImageTest, EmptyIsBadMagic) {
    EXPECT_EQ(error_of(""), "bad magic: not a crfs image (starts with nothing, empty file)");
}

TEST(ImageTest, BadMagic) {
    Sample s;
    s.bytes[0] = 0x7f;
    EXPECT_EQ(error_of(s.bytes).rfind("bad magic: not a crfs image (starts with 7f 52 46", 0), 0u)
        << error_of(s.bytes);
}

TEST(ImageTest, ThreadAttrsBelongToTheThreadRecordBeforeThem) {
    auto img = decode(Sample(6, false, false, 42).bytes);
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE(img->main_attrs);
    EXPECT_EQ(img->main_attrs->pdeathsig, 10);
    EXPECT_EQ(img->main_attrs->ioprio, 0x4004u);
    auto other = decode(Sample(6, false, false, 43).bytes);
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, EBADMSG);
    EXPECT_NE(other.error().what.find("thread 43: not after its thread record"), std::string::npos)
        << other.error().what;
    auto old = decode(Sample(5, false, false, 42).bytes);
    ASSERT_FALSE(old);
    EXPECT_NE(old.error().what.find("in a version 5 image"), std::string::npos) << old.error().what;
}

// Sample's image of `version` with its fd 4 (a dup of fd 3's deleted file)
// rewritten as fd kind `kind` naming `rdev`, checksum fixed, decoded.
Result<DecodedImage> decode_fd4_as(uint32_t version, image::FdKind kind, uint64_t rdev) {
    Sample s(version, true);
    image::FdRecord f{};  // fd 4 as Sample writes it
    f.fd = 4, f.kind = uint32_t(image::FdKind::kDeleted), f.size = s.file.size();
    f.path_len = 4, f.same_as = 3;
    std::string old(reinterpret_cast<const char*>(&f), sizeof f);
    size_t at = s.bytes.find(old);
    if (at == std::string::npos) return make_error(EINVAL, "fd 4 not found in the sample");
    f.kind = uint32_t(kind), f.rdev = rdev, f.same_as = -1;
    s.bytes.replace(at, sizeof f, reinterpret_cast<const char*>(&f), sizeof f);
    fix_checksum(s.bytes);
    return decode(s.bytes);
}

// deltwice: fd kind 40 (another description of fd 3's deleted file, state/file_reopen.cc)
// is read from version 14 on; a version 13 image with it is refused.
TEST(ImageTest, ReopenedFdKindFromVersion14) {
    auto old = decode_fd4_as(13, image::FdKind::kReopened, 3);
    ASSERT_FALSE(old);
    EXPECT_NE(old.error().what.find("unknown fd kind 40"), std::string::npos) << old.error().what;
    auto img = decode_fd4_as(14, image::FdKind::kReopened, 3);
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_EQ(img->fds.size(), 2u);
    EXPECT_EQ(image::reopened_first(img->fds[1].rec), 3u);
}

// cwdtree: fd kind 43 (state/fs_tree.cc) is read from version 15 on; a
// version 14 image with it is refused.
TEST(ImageTest, TreeCwdDirFdKindFromVersion15) {
    auto old = decode_fd4_as(14, image::FdKind::kTreeCwdDir, 0);
    ASSERT_FALSE(old);
    EXPECT_NE(old.error().what.find("unknown fd kind 43"), std::string::npos) << old.error().what;
    auto img = decode_fd4_as(15, image::FdKind::kTreeCwdDir, 0);
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_EQ(img->fds.size(), 2u);
    EXPECT_EQ(img->fds[1].rec.kind, uint32_t(image::FdKind::kTreeCwdDir));
}

TEST(ImageTest, UnsupportedVersion) {
    Sample s;
    uint32_t v = image::kFormatVersion + 1;
    std::memcpy(s.bytes.data() + 8, &v, 4);
    auto img = decode(s.bytes);
    ASSERT_FALSE(img);
    EXPECT_EQ(img.error().what, "unsupported format version " + std::to_string(v) +
                                    " (this crfs reads 1.." +
                                    std::to_string(image::kFormatVersion) + ")");
    EXPECT_EQ(img.error().code, ENOTSUP);
}

TEST(ImageTest, TruncatedInsideARecordSaysWhichAndWhere) {
    Sample s;
    // Cut in the middle of the pages record (record 5): 100 bytes into its page data.
    auto img = decode(s.bytes);
    ASSERT_TRUE(img);
    size_t cut = img->pages[0].stream_offset + 100;
    EXPECT_EQ(error_of(s.bytes.substr(0, cut)),
              "truncated image: unexpected end of file in record 5 (pages) at byte " +
                  std::to_string(cut));
}

// Decoding without the data (restore, show) hashes page and file bytes
// through one buffer but finds the same runs at the same offsets.
TEST(ImageTest, SkippingBulkDataFindsTheSameRuns) {
    Sample s;
    auto lean = decode(s.bytes);
    auto full = decode(s.bytes, {.keep_data = true});
    ASSERT_TRUE(lean && full);
    ASSERT_EQ(lean->pages.size(), full->pages.size());
    for (size_t i = 0; i < lean->pages.size(); ++i) {
        EXPECT_EQ(lean->pages[i].vaddr, full->pages[i].vaddr);
        EXPECT_EQ(lean->pages[i].nr_pages, full->pages[i].nr_pages);
        EXPECT_EQ(lean->pages[i].stream_offset, full->pages[i].stream_offset);
        EXPECT_TRUE(lean->pages[i].data.empty());
        EXPECT_EQ(full->pages[i].data.size(), full->pages[i].nr_pages * image::kPageSize);
    }
    ASSERT_EQ(lean->fds.size(), full->fds.size());
    EXPECT_EQ(lean->fds[0].data_bytes, full->fds[0].data_bytes);
    EXPECT_EQ(lean->fds[0].data_runs.size(), full->fds[0].data_runs.size());
    EXPECT_EQ(lean->checksum, full->checksum);
}

TEST(ImageTest, TruncatedInHeader) {
    Sample s;
    EXPECT_EQ(error_of(s.bytes.substr(0, 50)),
              "truncated image: unexpected end of file in header at byte 50");
}

TEST(ImageTest, TruncatedBetweenRecordsHasNoTrailer) {
    Sample s;
    size_t end = s.bytes.size() - sizeof(image::RecordHeader) - sizeof(image::Trailer);
    EXPECT_EQ(error_of(s.bytes.substr(0, end)),
              "truncated image: no trailer (stream ends after 16 records at byte " +
                  std::to_string(end) + ")");
}

TEST(ImageTest, ChecksumMismatch) {
    Sample s;
    auto img = decode(s.bytes);
    ASSERT_TRUE(img);
    s.bytes[img->pages[0].stream_offset + 5] ^= 1;  // one bit of page data
    EXPECT_EQ(error_of(s.bytes).rfind("checksum mismatch: trailer says ", 0), 0u)
        << error_of(s.bytes);
}

void fix_checksum(std::string& b) {
    size_t hashed = b.size() - sizeof(image::RecordHeader) - sizeof(image::Trailer);
    uint64_t sum = XXH3_64bits(b.data(), hashed);
    std::memcpy(b.data() + b.size() - sizeof(image::Trailer) + offsetof(image::Trailer, checksum),
                &sum, 8);
}

// --- the stream hash: a slot hashes each write, the decode reads no page twice ---

// The hash of `bytes` fed in pieces of odd sizes, as FUSE writes arrive.
std::optional<StreamHash> hash_in_pieces(const std::string& bytes) {
    ImagePrehash h;
    size_t sizes[] = {1, 7, 40, 3, 1000, 39, 4096, 41};
    for (size_t off = 0, i = 0; off < bytes.size(); ++i) {
        size_t n = std::min(sizes[i % std::size(sizes)], bytes.size() - off);
        h.update(bytes.data() + off, n);
        off += n;
    }
    return h.result();
}

Result<DecodedImage> decode_hashed(const std::string& bytes, bool keep = false) {
    auto h = hash_in_pieces(bytes);
    if (!h) return make_error(EBADMSG, "fewer bytes than a trailer");
    return decode(bytes, {.keep_data = keep, .hashed = &*h});
}

TEST(ImageStreamHash, EqualsTheTrailersAndDecodesTheSame) {
    Sample s;
    auto h = hash_in_pieces(s.bytes);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->bytes, s.bytes.size() - kTrailerRecordBytes);
    auto full = decode(s.bytes);
    ASSERT_TRUE(full) << full.error().what;
    EXPECT_EQ(h->checksum, full->checksum);
    for (bool keep : {false, true}) {
        auto img = decode_hashed(s.bytes, keep);
        ASSERT_TRUE(img) << img.error().what;
        EXPECT_EQ(img->checksum, full->checksum);
        EXPECT_EQ(img->size, full->size);
        EXPECT_EQ(img->record_count, full->record_count);
        ASSERT_EQ(img->pages.size(), 1u);
        EXPECT_EQ(img->pages[0].stream_offset, full->pages[0].stream_offset);
        ASSERT_EQ(img->fds.size(), 1u);
        EXPECT_EQ(img->fds[0].data_runs, full->fds[0].data_runs);
        if (keep) {
            EXPECT_EQ(img->pages[0].data, std::string(s.pages.data(), s.pages.size()));
        }
    }
    ImagePrehash few;
    few.update(s.bytes.data(), kTrailerRecordBytes - 1);
    EXPECT_FALSE(few.result());
}

// Every edit the full decode refuses, the hashed decode refuses too (the
// restore then decodes in full for the message).
TEST(ImageStreamHash, RefusesWhatTheFullDecodeRefuses) {
    Sample s;
    auto full = decode(s.bytes);
    ASSERT_TRUE(full) << full.error().what;
    uint64_t pages_hdr =
        full->pages[0].stream_offset - sizeof(image::PagesRecord) - sizeof(image::RecordHeader);
    std::vector<std::pair<const char*, std::string>> cases;
    std::string b = s.bytes;  // a page byte changed: only the checksum can tell
    b[full->pages[0].stream_offset + 100] ^= 1;
    cases.emplace_back("checksum mismatch", b);
    b = s.bytes;  // the trailer's checksum changed
    b[b.size() - 16] ^= 1;
    cases.emplace_back("checksum mismatch", b);
    // cut in the middle of the page data
    cases.emplace_back("truncated image", s.bytes.substr(0, full->pages[0].stream_offset + 5000));
    b = s.bytes;  // the pages record's length spans past the end (checksum fixed)
    uint64_t len = sizeof(image::PagesRecord) + 3 * image::kPageSize;
    std::memcpy(b.data() + pages_hdr + 8, &len, 8);
    fix_checksum(b);
    cases.emplace_back("", b);
    b = s.bytes;  // a second trailer whose checksum covers the whole first image
    image::RecordHeader rh{uint32_t(RecordType::kTrailer), 0, sizeof(image::Trailer)};
    image::Trailer t{full->record_count, XXH3_64bits(s.bytes.data(), s.bytes.size()), {}};
    std::memcpy(t.magic, image::kTrailerMagic, sizeof t.magic);
    b.append(reinterpret_cast<const char*>(&rh), sizeof rh);
    b.append(reinterpret_cast<const char*>(&t), sizeof t);
    cases.emplace_back("trailing data after the trailer", b);
    for (auto& [want, bytes] : cases) {
        auto img = decode_hashed(bytes);
        EXPECT_FALSE(img) << want;
        auto whole = decode(bytes);
        ASSERT_FALSE(whole) << want;
        EXPECT_NE(whole.error().what.find(want), std::string::npos) << whole.error().what;
    }
    // The second trailer, hashed: refused for where it is, not for its checksum.
    auto img = decode_hashed(b);
    ASSERT_FALSE(img);
    EXPECT_NE(img.error().what.find("not where the stream was hashed"), std::string::npos)
        << img.error().what;
}

TEST(ImageTest, UnknownRecordType) {
    Sample s;
    size_t at = sizeof(image::Header);  // first record
    uint32_t t = 200;                   // no helper's number (99 is tty's since version 7)
    std::memcpy(s.bytes.data() + at, &t, 4);
    fix_checksum(s.bytes);
    EXPECT_EQ(error_of(s.bytes), "unknown record type 200 at byte 104");
}

TEST(ImageTest, RecordLengthExceedsLimit) {
    Sample s;
    uint64_t len = 1ull << 40;
    std::memcpy(s.bytes.data() + sizeof(image::Header) + 8, &len, 8);
    EXPECT_EQ(error_of(s.bytes),
              "record length 1099511627776 exceeds limit 4096 for record 0 (task) at byte 104");
}

TEST(ImageTest, TrailingGarbage) {
    Sample s;
    EXPECT_EQ(error_of(s.bytes + "x"),
              "trailing data after the trailer at byte " + std::to_string(s.bytes.size()));
}

TEST(ImageTest, MissingSingletonRecord) {
    ImageWriter w(make_header(0, 0));
    w.add(RecordType::kTask, Payload().add(image::TaskRecord{}));
    EXPECT_EQ(error_of(stream_bytes(std::move(w).finish())), "incomplete image: no creds record");
}

TEST(ImageTest, PagesOutsideEveryVma) {
    ImageWriter w(make_header(0, 0));
    std::vector<char> page(image::kPageSize);
    image::PagesRecord pr{0x5000, 1, 0};
    w.add_external(RecordType::kPages, Payload().add(pr).bytes(), page.data(), page.size());
    EXPECT_EQ(error_of(stream_bytes(std::move(w).finish())),
              "record 0 (pages) at byte 104: pages 5000-6000 outside every VMA");
}

// Pages are matched to their VMA by a search over the sorted VMAs: a run
// inside any one of many is accepted; one in a gap, before the first, past
// the last, or across two adjacent areas is refused.
TEST(ImageTest, PagesFindTheirVmaAmongMany) {
    auto decode = [](uint64_t vaddr, uint32_t n) {
        ImageWriter w(make_header(0, 0));
        for (uint64_t i = 0; i < 100; ++i) {
            image::VmaRecord v{};
            // Pairs of adjacent areas, then a one-page gap: 0x10000-0x11000,
            // 0x11000-0x12000, (gap), 0x13000-0x14000, 0x14000-0x15000, ...
            v.start = 0x10000 + (i / 2) * 0x3000 + (i % 2) * 0x1000;
            v.end = v.start + 0x1000;
            v.kind = uint32_t(image::VmaKind::kAnonPrivate);
            w.add(RecordType::kVma, Payload().add(v));
        }
        std::vector<char> pages(n * image::kPageSize);
        image::PagesRecord pr{vaddr, n, 0};
        w.add_external(RecordType::kPages, Payload().add(pr).bytes(), pages.data(), pages.size());
        return error_of(stream_bytes(std::move(w).finish()));
    };
    // Inside an area: the error is a later one (no task record), not the VMA's.
    EXPECT_EQ(decode(0x10000, 1), "incomplete image: no task record");
    EXPECT_EQ(decode(0x11000, 1), "incomplete image: no task record");
    EXPECT_EQ(decode(0x10000 + 49 * 0x3000 + 0x1000, 1), "incomplete image: no task record");
    auto outside = [](uint64_t vaddr, uint32_t n) {
        return strfmt("pages {:x}-{:x} outside every VMA", vaddr, vaddr + n * image::kPageSize);
    };
    for (auto [vaddr, n] : {std::pair<uint64_t, uint32_t>{0x12000, 1},
                            {0xf000, 1},
                            {0x10000 + 50 * 0x3000, 1},
                            {0x10000, 2},
                            {0x13000, 3}})
        EXPECT_NE(decode(vaddr, n).find(outside(vaddr, n)), std::string::npos) << std::hex << vaddr;
}

// The decoder starts from the last run's VMA (runs come in address order),
// a few steps forward, else searches: any order finds the same VMAs, and a
// run in a gap right after the last one's is still refused.
TEST(ImageTest, PagesFindTheirVmaInAnyOrder) {
    auto area = [](uint64_t i) { return 0x10000 + (i / 2) * 0x3000 + (i % 2) * 0x1000; };
    auto decode = [&](const std::vector<uint64_t>& vaddrs) {
        ImageWriter w(make_header(0, 0));
        for (uint64_t i = 0; i < 100; ++i) {
            image::VmaRecord v{};
            v.start = area(i);  // as in PagesFindTheirVmaAmongMany
            v.end = v.start + 0x1000;
            v.kind = uint32_t(image::VmaKind::kAnonPrivate);
            w.add(RecordType::kVma, Payload().add(v));
        }
        std::vector<char> page(image::kPageSize);
        for (uint64_t vaddr : vaddrs) {
            image::PagesRecord pr{vaddr, 1, 0};
            w.add_external(RecordType::kPages, Payload().add(pr).bytes(), page.data(), page.size());
        }
        return error_of(stream_bytes(std::move(w).finish()));
    };
    std::vector<uint64_t> up, down, jumps;
    for (uint64_t i = 0; i < 100; ++i) up.push_back(area(i)), down.push_back(area(99 - i));
    for (uint64_t i : {0, 99, 1, 50, 3, 4, 5, 40, 12, 13, 98, 2}) jumps.push_back(area(i));
    for (const auto* order : {&up, &down, &jumps}) {
        EXPECT_EQ(decode(*order), "incomplete image: no task record");
        for (uint64_t gap :
             {0x12000ull, 0xf000ull, 0x10000ull + 50 * 0x3000, 0x10000ull + 20 * 0x3000 + 0x2000}) {
            auto with = *order;
            with.push_back(gap);
            EXPECT_NE(decode(with).find(
                          strfmt("pages {:x}-{:x} outside every VMA", gap, gap + image::kPageSize)),
                      std::string::npos)
                << std::hex << gap;
        }
    }
}

// No page twice in one image (docs/image-format.md, pages): runs may come in
// any order (a live snapshot's image has two address-ordered sequences, one
// after the other) and may touch, but a run giving a page an earlier run gave
// is refused, whether it repeats it, overlaps it from below or above, or
// covers it, among runs in order or among those that came out of order.
TEST(ImageTest, PageTwiceIsRefused) {
    constexpr uint64_t P = image::kPageSize;
    auto decode = [](const std::vector<std::pair<uint64_t, uint32_t>>& runs) {
        ImageWriter w(make_header(0, 0));
        image::VmaRecord v{};
        v.start = 0x10000;
        v.end = 0x40000;
        v.kind = uint32_t(image::VmaKind::kAnonPrivate);
        w.add(RecordType::kVma, Payload().add(v));
        std::vector<char> pages(4 * image::kPageSize);
        for (auto [vaddr, n] : runs) {
            image::PagesRecord pr{vaddr, n, 0};
            w.add_external(RecordType::kPages, Payload().add(pr).bytes(), pages.data(),
                           n * image::kPageSize);
        }
        return error_of(stream_bytes(std::move(w).finish()));
    };
    const std::string ok = "incomplete image: no task record";
    EXPECT_EQ(decode({{0x10000, 1}, {0x11000, 2}, {0x13000, 1}, {0x20000, 4}}), ok);
    EXPECT_EQ(decode({{0x10000, 1},
                      {0x14000, 1},
                      {0x18000, 1},
                      {0x12000, 2},
                      {0x16000, 2},
                      {0x30000, 1},
                      {0x1a000, 1},
                      {0x11000, 1},
                      {0x15000, 1}}),
              ok);
    using Runs = std::vector<std::pair<uint64_t, uint32_t>>;
    for (const Runs& runs : std::vector<Runs>{
             {{0x10000, 1}, {0x10000, 1}},                // the same run again
             {{0x10000, 3}, {0x12000, 1}},                // its last page
             {{0x12000, 2}, {0x11000, 2}},                // from below
             {{0x12000, 1}, {0x11000, 3}},                // covering it
             {{0x18000, 1}, {0x12000, 2}, {0x13000, 1}},  // among late runs
             {{0x18000, 1}, {0x13000, 1}, {0x12000, 3}},  // covering a late one
             {{0x18000, 1}, {0x12000, 1}, {0x17000, 2}},  // a late one into an early one
             {{0x10000, 4}, {0x20000, 1}, {0x18000, 1}, {0x10000, 1}}}) {
        auto [vaddr, n] = runs.back();
        // The VMA is record 0: the last run is record runs.size().
        auto got = decode(runs);
        EXPECT_TRUE(got.starts_with(strfmt("record {} (pages) at byte ", runs.size()))) << got;
        EXPECT_TRUE(
            got.ends_with(strfmt(": pages {:x}-{:x} give a page an earlier pages record "
                                 "gave (a page twice)",
                                 vaddr, vaddr + n * P)))
            << got;
    }
}

TEST(ImageTest, InnerLengthMismatch) {
    ImageWriter w(make_header(0, 0));
    image::VmaRecord v{};
    v.start = 0x1000;
    v.end = 0x2000;
    v.kind = 1;
    v.path_len = 100;  // but no path follows
    w.add(RecordType::kVma, Payload().add(v));
    EXPECT_EQ(error_of(stream_bytes(std::move(w).finish())),
              "record 0 (vma) at byte 104: 0 bytes after the fixed part, fields say 100");
}

namespace fidelity {

// Sample's stream with `extra` records (type, payload) inserted before the
// trailer, count and checksum fixed.
std::string with_records(const Sample& s,
                         const std::vector<std::pair<RecordType, std::string>>& extra) {
    size_t tail = sizeof(image::RecordHeader) + sizeof(image::Trailer);
    std::string b = s.bytes.substr(0, s.bytes.size() - tail);
    std::string trailer = s.bytes.substr(s.bytes.size() - tail);
    for (const auto& [type, payload] : extra) {
        image::RecordHeader rh{uint32_t(type), 0, payload.size()};
        b.append(reinterpret_cast<const char*>(&rh), sizeof rh);
        b += payload;
    }
    b += trailer;
    uint64_t count;
    size_t at = b.size() - sizeof(image::Trailer) + offsetof(image::Trailer, record_count);
    std::memcpy(&count, b.data() + at, 8);
    count += extra.size();
    std::memcpy(b.data() + at, &count, 8);
    fix_checksum(b);
    return b;
}

std::string file_vma(uint64_t start) {
    image::VmaRecord v{};
    v.start = start, v.end = start + 0x2000;
    v.kind = uint32_t(image::VmaKind::kFilePrivate);
    v.flags = image::kVmaRead;
    v.path_len = 8;
    return Payload().add(v).add_string("/bin/foo").bytes();
}

std::string read_only_fd(int fd) {
    image::FdRecord f{};
    f.fd = fd, f.kind = uint32_t(image::FdKind::kRegular), f.size = 10, f.path_len = 8;
    return Payload().add(f).add_string("/bin/foo").bytes();
}

template <class T>
std::string bytes_of(const T& v) {
    return Payload().add(v).bytes();
}

}  // namespace fidelity

// fd-content and vma-content (docs/files.md) attach to an earlier record of
// their fd or mapping, once, and only to what the restore reopens from a file.
TEST(ImageTest, ContentFingerprintsFollowTheirRecord) {
    using namespace fidelity;  // (the FileIdentity of each record stays 0 here)
    Sample s;
    auto img = decode(with_records(
        s, {{RecordType::kVma, file_vma(0x20000)},
            {RecordType::kVmaContent, bytes_of(image::VmaContentRecord{0x20000, 8192, 7})},
            {RecordType::kFd, read_only_fd(5)},
            {RecordType::kFdContent, bytes_of(image::FdContentRecord{5, 0, 10, 9})}}));
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE(img->vmas[1].content);
    EXPECT_EQ(img->vmas[1].content->hash, 7u);
    ASSERT_TRUE(img->fds[1].content);
    EXPECT_EQ(img->fds[1].content->hash, 9u);

    auto refused = [&](std::vector<std::pair<RecordType, std::string>> extra, const char* what) {
        auto bad = decode(with_records(s, extra));
        ASSERT_FALSE(bad) << what;
        EXPECT_NE(bad.error().what.find(what), std::string::npos) << bad.error().what;
    };
    // Before its VMA, on an anonymous VMA, twice.
    refused({{RecordType::kVmaContent, bytes_of(image::VmaContentRecord{0x20000, 1, 1})},
             {RecordType::kVma, file_vma(0x20000)}},
            "content of the mapping at 20000, which is no earlier mapping of a file");
    refused({{RecordType::kVmaContent, bytes_of(image::VmaContentRecord{0x10000, 1, 1})}},
            "mapping at 10000");
    refused({{RecordType::kVma, file_vma(0x20000)},
             {RecordType::kVmaContent, bytes_of(image::VmaContentRecord{0x20000, 1, 1})},
             {RecordType::kVmaContent, bytes_of(image::VmaContentRecord{0x20000, 1, 1})}},
            "or has one already");
    // On a deleted file's fd, on an unknown fd, twice.
    refused({{RecordType::kFdContent, bytes_of(image::FdContentRecord{3, 0, 1, 1})}},
            "content of fd 3, which is no earlier regular file");
    refused({{RecordType::kFdContent, bytes_of(image::FdContentRecord{8, 0, 1, 1})}},
            "content of fd 8");
    refused({{RecordType::kFd, read_only_fd(5)},
             {RecordType::kFdContent, bytes_of(image::FdContentRecord{5, 0, 10, 1})},
             {RecordType::kFdContent, bytes_of(image::FdContentRecord{5, 0, 10, 1})}},
            "content of fd 5");
    // Wrong length: the table's bounds.
    refused({{RecordType::kFdContent, std::string(23, '\0')}}, "below minimum");
}

// Version 3 thread records: each thread's regs, xstate and sigstate follow
// its thread record; counts, tids and completeness are checked.
std::string threaded_image(int extra_threads,
                           const std::function<void(ImageWriter&, int)>& edit = nullptr) {
    ImageWriter w(make_header(0, 576));
    image::TaskRecord t{};
    t.pid = 42;
    w.add(RecordType::kTask, Payload().add(t));
    w.add(RecordType::kCreds, Payload().add(image::CredsRecord{}));
    w.add(RecordType::kFs, Payload().add(image::FsRecord{022, 1, 1, 0}).add_string("//"));
    w.add(RecordType::kMm, Payload().add(image::MmRecord{}));
    test::add_main_thread(w, 42);
    for (int i = 0; i < extra_threads; ++i) {
        if (edit) {
            edit(w, i);
            continue;
        }
        w.add(RecordType::kThread, Payload().add(thread_rec(100 + i)));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
        w.add(RecordType::kXstate, std::string(576, 'y'));
        image::SigstateRecord ss{};
        ss.blocked = uint64_t(i);
        w.add(RecordType::kSigstate, Payload().add(ss));
        image::SiginfoRecord si{};
        si.info[0] = 10;
        w.add(RecordType::kSiginfo, Payload().add(si));
    }
    return stream_bytes(std::move(w).finish());
}

TEST(ImageThreads, EachThreadGetsItsOwnRecords) {
    auto img = decode(threaded_image(3));
    ASSERT_TRUE(img) << img.error().what;
    ASSERT_TRUE(img->main_thread);
    EXPECT_EQ(img->main_thread->tid, 42);
    ASSERT_EQ(img->threads.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(img->threads[i].rec.tid, 100 + i);
        EXPECT_EQ(img->threads[i].sigstate.blocked, uint64_t(i));
        EXPECT_EQ(img->threads[i].xstate, std::string(576, 'y'));
        EXPECT_EQ(img->threads[i].pending.size(), 1u);
    }
    EXPECT_TRUE(img->pending.empty());
    EXPECT_EQ(img->xstate, std::string(576, 'x'));
}

TEST(ImageThreads, ThreadCountBomb) {
    auto bytes = threaded_image(int(image::kMaxThreads));
    EXPECT_NE(error_of(bytes).find("more than 1024 threads"), std::string::npos) << error_of(bytes);
}

TEST(ImageThreads, DuplicateTidAndMainTidAreRefused) {
    auto twice = threaded_image(2, [](ImageWriter& w, int) {
        w.add(RecordType::kThread, Payload().add(thread_rec(7)));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
        w.add(RecordType::kXstate, std::string(576, 'y'));
        w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
    });
    EXPECT_NE(error_of(twice).find("thread 7 twice"), std::string::npos) << error_of(twice);
    auto main_again = threaded_image(1, [](ImageWriter& w, int) {
        w.add(RecordType::kThread, Payload().add(thread_rec(42)));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
        w.add(RecordType::kXstate, std::string(576, 'y'));
        w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
    });
    EXPECT_NE(error_of(main_again).find("thread 42 twice"), std::string::npos)
        << error_of(main_again);
}

TEST(ImageThreads, MismatchedRecordsAreRefused) {
    auto no_regs = threaded_image(1, [](ImageWriter& w, int) {
        w.add(RecordType::kThread, Payload().add(thread_rec(100)));
        w.add(RecordType::kXstate, std::string(576, 'y'));
        w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
    });
    EXPECT_NE(error_of(no_regs).find("thread 100 has no regs, xstate or sigstate record"),
              std::string::npos)
        << error_of(no_regs);
    auto two_regs = threaded_image(1, [](ImageWriter& w, int) {
        w.add(RecordType::kThread, Payload().add(thread_rec(100)));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
        w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
    });
    EXPECT_NE(error_of(two_regs).find("duplicate record for thread 100"), std::string::npos)
        << error_of(two_regs);
}

// Session 31: a thread's own syscall-restart record, in its section.
TEST(ImageThreads, AThreadsSyscallRestartIsItsOwn) {
    auto with = [](int records) {
        return threaded_image(1, [records](ImageWriter& w, int) {
            w.add(RecordType::kThread, Payload().add(thread_rec(100)));
            w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
            for (int i = 0; i < records; ++i)
                w.add(RecordType::kSyscallRestart,
                      Payload().add(image::SyscallRestartRecord{34, -514}));
            w.add(RecordType::kXstate, std::string(576, 'y'));
            w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
        });
    };
    auto img = decode(with(1));
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_FALSE(img->restart);  // not the main thread's
    ASSERT_EQ(img->threads.size(), 1u);
    ASSERT_TRUE(img->threads[0].restart);
    EXPECT_EQ(img->threads[0].restart->nr, 34);
    EXPECT_EQ(img->threads[0].restart->code, -514);
    auto twice = with(2);
    EXPECT_NE(error_of(twice).find("a second one for thread 100"), std::string::npos)
        << error_of(twice);
}

TEST(ImageThreads, OldVersionsHaveNoThreadRecords) {
    auto bytes = threaded_image(1);
    uint32_t v = 2;
    std::memcpy(bytes.data() + 8, &v, 4);
    fix_checksum(bytes);
    EXPECT_NE(error_of(bytes).find("thread record in a version 2 image"), std::string::npos)
        << error_of(bytes);
}

TEST(ImageThreads, MainThreadRecordMustNameTheTask) {
    auto bytes = threaded_image(0);
    auto img = decode(bytes);
    ASSERT_TRUE(img) << img.error().what;
    // tid 42 -> 43 in the main thread's record (the first thread record).
    size_t at = bytes.find(std::string("\x11\0\0\0", 4), sizeof(image::Header));  // not version 17
    ASSERT_NE(at, std::string::npos);
    int32_t tid = 43;
    std::memcpy(bytes.data() + at + sizeof(image::RecordHeader), &tid, 4);
    fix_checksum(bytes);
    EXPECT_NE(error_of(bytes).find("the main thread's tid 43 is not the task's pid 42"),
              std::string::npos)
        << error_of(bytes);
}

}  // namespace
}  // namespace crfs
