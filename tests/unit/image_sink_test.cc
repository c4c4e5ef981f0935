// ImageSink (checkpoint/image_sink.h): page data handed to a pipe with
// vmsplice is only references to the sink's buffers, so a buffer may be lent
// again only once the reader took its bytes; the reader must always see the
// bytes as they were when they were written.
#include "checkpoint/image_sink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "crfs/image_format.h"

namespace crfs {
namespace {

constexpr size_t kPage = 4096;

std::string drain(int fd) {
    std::string s;
    char buf[1 << 16];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, size_t(n));
    return s;
}

// A stream striped over `fds` read back in order, as the daemon reads the
// worker's pipes (ImageSink::stripe_at), until one ends.
std::string unstripe(const std::vector<int>& fds) {
    std::string s;
    char buf[1 << 16];
    for (;;) {
        ImageSink::Stripe from = ImageSink::stripe_at(s.size(), fds.size());
        ssize_t n = read(fds[from.index], buf, std::min(sizeof buf, from.room));
        if (n <= 0) return s;
        s.append(buf, size_t(n));
    }
}

// `write` into `n` pipes (of the default size, 64 KiB) while a reader takes
// them in turn (unstripe): what the reader got.
std::string through_pipes(int n, const std::function<void(const std::vector<int>&)>& write) {
    std::vector<int> rd, wr;
    for (int i = 0; i < n; ++i) {
        int p[2];
        EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
        rd.push_back(p[0]);
        wr.push_back(p[1]);
    }
    std::string got;
    std::thread reader([&] { got = unstripe(rd); });
    write(wr);
    for (int fd : wr) close(fd);
    reader.join();
    for (int fd : rd) close(fd);
    return got;
}

// One page per chunk, nobody reading meanwhile: the pipe still holds every
// page spliced so far when the sink lends its buffers again.
TEST(ImageSink, ABufferStillInThePipeIsNotLentAgain) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 1 << 20);
    constexpr int kChunks = 10;
    uint64_t bounced = 0;
    {
        ImageSink sink(p[1]);
        for (int k = 0; k < kChunks; ++k) {
            char* buf = sink.chunk_buffer();
            std::memset(buf, 'a' + k, kPage);
            ASSERT_TRUE(sink.record(image::RecordType::kPages, {}, buf, kPage));
        }
        ASSERT_TRUE(sink.finish());
        bounced = sink.bounced();
    }
    close(p[1]);
    std::string s = drain(p[0]);
    close(p[0]);
    size_t at = 0;
    for (int k = 0; k < kChunks; ++k) {
        image::RecordHeader rh;
        ASSERT_LE(at + sizeof rh + kPage, s.size());
        std::memcpy(&rh, s.data() + at, sizeof rh);
        at += sizeof rh;
        ASSERT_EQ(rh.length, kPage);
        EXPECT_EQ(s.substr(at, kPage), std::string(kPage, char('a' + k))) << "chunk " << k;
        at += kPage;
    }
    // kRing buffers take turns; once the ring went round, each one's last
    // splice is still in the pipe.
    EXPECT_EQ(bounced, uint64_t(kChunks - ImageSink::kRing));
}

// perf (session 18): the kRing buffers the sink lends lie side by side
// (each with its headers' room after it) in one mapping that starts on a
// huge-page boundary (huge-page faults for a worker's first chunks
// instead of 768 page faults), and still take turns.
TEST(ImageSink, TheRingIsOneMappingOnAHugePageBoundary) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 1 << 20);
    {
        ImageSink sink(p[1]);
        char* first = sink.chunk_buffer();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % (2 << 20), 0u);
        for (size_t k = 1; k <= ImageSink::kRing; ++k) {
            char* buf = sink.chunk_buffer();  // nothing spliced: each is free again
            EXPECT_EQ(buf, first + (k % ImageSink::kRing) * ImageSink::kLentBytes) << k;
        }
        EXPECT_EQ(sink.bounced(), 0u);
    }
    close(p[1]);
    close(p[0]);
}

// Into a file (not a pipe): plain writes, the same bytes.
TEST(ImageSink, NotAPipeIsWrittenPlainly) {
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    int fd = fileno(f);
    {
        ImageSink sink(fd);
        for (int k = 0; k < 5; ++k) {
            char* buf = sink.chunk_buffer();
            std::memset(buf, 'a' + k, 2 * kPage);
            ASSERT_TRUE(sink.record(image::RecordType::kPages, {}, buf, 2 * kPage));
        }
        ASSERT_TRUE(sink.finish());
    }
    std::string s(size_t(lseek(fd, 0, SEEK_END)), '\0');
    ASSERT_EQ(pread(fd, s.data(), s.size(), 0), ssize_t(s.size()));
    fclose(f);
    for (int k = 0; k < 5; ++k) {
        size_t at = k * (sizeof(image::RecordHeader) + 2 * kPage) + sizeof(image::RecordHeader);
        EXPECT_EQ(s.substr(at, 2 * kPage), std::string(2 * kPage, char('a' + k))) << k;
    }
}

// pages(): the records of a chunk go to the pipe together (headers beside
// the chunk, one vmsplice); the stream (checksum included) is byte for byte
// what record() writes one by one, also when the pipe is small and the
// vmsplice returns after part of them, when a chunk is the bounce buffer,
// and into a file.
TEST(ImageSink, PagesTogetherAreTheRecordsOneByOne) {
    // Chunk k: 256 one-page records, then two of 100 and 150 pages (the
    // headers' room: one per page of the chunk), the pages holding their index.
    auto fill = [](ImageSink& sink, bool together, int k) -> Status {
        char* buf = sink.chunk_buffer();
        for (size_t i = 0; i < ImageSink::kChunk / kPage; ++i)
            std::memset(buf + i * kPage, char(k * 7 + i), kPage);
        std::vector<ImageSink::Pages> recs;
        if (k % 2 == 0)
            for (uint32_t i = 0; i < 256; ++i)
                recs.push_back({0x1000000 + i * 2 * kPage, 1, buf + i * kPage});
        else
            recs = {{0x4000000, 100, buf}, {0x5000000, 150, buf + 100 * kPage}};
        if (together) return sink.pages(recs);
        for (const auto& r : recs) {
            image::PagesRecord pr{r.vaddr, r.nr_pages, 0};
            if (auto s = sink.record(image::RecordType::kPages,
                                     {reinterpret_cast<const char*>(&pr), sizeof pr}, r.data,
                                     r.nr_pages * kPage);
                !s)
                return s;
        }
        return {};
    };
    constexpr int kChunks = 6;
    auto to_file = [&](bool together) {
        FILE* f = tmpfile();
        EXPECT_NE(f, nullptr);
        int fd = fileno(f);
        {
            ImageSink sink(fd);
            for (int k = 0; k < kChunks; ++k) EXPECT_TRUE(fill(sink, together, k));
            EXPECT_TRUE(sink.finish());
        }
        std::string s(size_t(lseek(fd, 0, SEEK_END)), '\0');
        EXPECT_EQ(pread(fd, s.data(), s.size(), 0), ssize_t(s.size()));
        fclose(f);
        return s;
    };
    const std::string want = to_file(false);
    ASSERT_EQ(want.size(), size_t(kChunks / 2) * (256 * (32 + kPage) + 2 * 32 + 250 * kPage) + 16 +
                               sizeof(image::Trailer));
    EXPECT_EQ(to_file(true), want);
    {  // a reader at work, a 64 KiB pipe: each vmsplice takes part of a chunk's records
        int p[2];
        ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
        std::string got;
        std::thread reader([&] { got = drain(p[0]); });
        {
            ImageSink sink(p[1]);
            for (int k = 0; k < kChunks; ++k) EXPECT_TRUE(fill(sink, true, k));
            EXPECT_TRUE(sink.finish());
        }
        close(p[1]);
        reader.join();
        close(p[0]);
        EXPECT_EQ(got.size(), want.size());
        EXPECT_TRUE(got == want);
    }
    // Striped (the worker's pipes): three pipes of 64 KiB, read in turn at
    // work; the chunks' records are cut at the stripes' ends. And into three
    // files (plain writes, the same cuts).
    auto striped = [&](const std::vector<int>& fds) {
        ImageSink sink(fds);
        for (int k = 0; k < kChunks; ++k) EXPECT_TRUE(fill(sink, true, k));
        EXPECT_TRUE(sink.finish());
    };
    {
        std::string got = through_pipes(3, striped);
        EXPECT_EQ(got.size(), want.size()) << "pipes";
        EXPECT_TRUE(got == want) << "pipes";
    }
    {
        std::vector<FILE*> files;
        std::vector<int> fds;
        for (int i = 0; i < 3; ++i) {
            files.push_back(tmpfile());
            ASSERT_NE(files.back(), nullptr);
            fds.push_back(fileno(files.back()));
        }
        striped(fds);
        for (int fd : fds) lseek(fd, 0, SEEK_SET);
        std::string got = unstripe(fds);
        for (FILE* f : files) fclose(f);
        EXPECT_EQ(got.size(), want.size()) << "files";
        EXPECT_TRUE(got == want) << "files";
    }
    // Nobody reading until the end: once the ring went round, the buffers are
    // still in the pipe, the chunks bounce and their records go one by one.
    auto one_page_each = [&](int fd, bool together) -> uint64_t {
        ImageSink sink(fd);
        for (int k = 0; k < 10; ++k) {
            char* buf = sink.chunk_buffer();
            std::memset(buf, 'a' + k, kPage);
            ImageSink::Pages one{uint64_t(k) * kPage, 1, buf};
            image::PagesRecord pr{one.vaddr, 1, 0};
            EXPECT_TRUE(together ? sink.pages({one})
                                 : sink.record(image::RecordType::kPages,
                                               {reinterpret_cast<const char*>(&pr), sizeof pr}, buf,
                                               kPage));
        }
        EXPECT_TRUE(sink.finish());
        return sink.bounced();
    };
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    one_page_each(fileno(f), false);
    std::string plain(size_t(lseek(fileno(f), 0, SEEK_END)), '\0');
    ASSERT_EQ(pread(fileno(f), plain.data(), plain.size(), 0), ssize_t(plain.size()));
    fclose(f);
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 1 << 20);
    EXPECT_EQ(one_page_each(p[1], true), 10u - ImageSink::kRing);
    close(p[1]);
    EXPECT_TRUE(drain(p[0]) == plain);
    close(p[0]);
}

// stable() (a tree's page buffers, session 19): the bytes are vmspliced, so
// the pipe holds them even once their mapping is gone before the reader took
// them; the stream (checksum included) is byte for byte what raw() writes,
// into a pipe and into a file.
TEST(ImageSink, StableBytesAreSplicedAndTheStreamIsTheSame) {
    constexpr size_t kBytes = 8 * kPage;
    auto stream = [&](int fd, bool stable, bool unmap) {
        char* mem = static_cast<char*>(
            mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        EXPECT_NE(mem, MAP_FAILED);
        for (size_t i = 0; i < kBytes; ++i) mem[i] = char(i * 7 % 253);
        ImageSink sink(fd);
        image::RecordHeader rh{uint32_t(image::RecordType::kPages), 0, kBytes};
        EXPECT_TRUE(sink.raw(&rh, sizeof rh, 0));
        EXPECT_TRUE(stable ? sink.stable(mem, kBytes, 1) : sink.raw(mem, kBytes, 1));
        EXPECT_TRUE(sink.finish());
        if (unmap) {
            munmap(mem, kBytes);  // the pipe keeps the pages it was given
        } else {
            std::memset(mem, 'x', kBytes);  // spliced: the pipe reads the memory as it is now
            munmap(mem, kBytes);
        }
    };
    auto through_pipe = [&](bool stable, bool unmap) {
        int p[2];
        EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
        EXPECT_EQ(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 1 << 20);
        stream(p[1], stable, unmap);
        close(p[1]);
        std::string s = drain(p[0]);
        close(p[0]);
        return s;
    };
    std::string copied = through_pipe(false, false);
    EXPECT_TRUE(through_pipe(true, true) == copied);
    // Not copied: a write to the memory after stable() shows in the pipe.
    std::string spliced = through_pipe(true, false);
    ASSERT_EQ(spliced.size(), copied.size());
    EXPECT_EQ(spliced.substr(sizeof(image::RecordHeader), kPage), std::string(kPage, 'x'));
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    stream(fileno(f), true, true);
    std::string in_file(size_t(lseek(fileno(f), 0, SEEK_END)), '\0');
    ASSERT_EQ(pread(fileno(f), in_file.data(), in_file.size(), 0), ssize_t(in_file.size()));
    fclose(f);
    EXPECT_TRUE(in_file == copied);
}

// stable() over stripes (a tree's page buffers into the worker's pipes):
// 2.5 MiB spliced in one call goes into three pipes in turn, cut at the
// stripes' ends, and reads back as the one pipe's stream.
TEST(ImageSink, StableBytesOverStripesAreTheOneStream) {
    constexpr size_t kBytes = 5 * ImageSink::kStripe / 2;
    std::vector<char> mem(kBytes);
    for (size_t i = 0; i < kBytes; ++i) mem[i] = char(i * 7 % 253);
    auto stream = [&](const std::vector<int>& fds) {
        ImageSink sink(fds);
        image::RecordHeader rh{uint32_t(image::RecordType::kPages), 0, kBytes};
        EXPECT_TRUE(sink.raw(&rh, sizeof rh, 0));
        EXPECT_TRUE(sink.stable(mem.data(), kBytes, 1));
        EXPECT_TRUE(sink.finish());
    };
    std::string one = through_pipes(1, stream);
    ASSERT_EQ(one.size(), sizeof(image::RecordHeader) + kBytes + 16 + sizeof(image::Trailer));
    EXPECT_EQ(one.substr(sizeof(image::RecordHeader), kBytes), std::string(mem.begin(), mem.end()));
    EXPECT_TRUE(through_pipes(3, stream) == one);
}

}  // namespace
}  // namespace crfs
