// ImageSink (checkpoint/image_sink.h): page data handed to a pipe with
// vmsplice is only references to the sink's buffers, so a buffer may be lent
// again only once the reader took its bytes; the reader must always see the
// bytes as they were when they were written.
#include "checkpoint/image_sink.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

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
    // Three buffers take turns; from the fourth chunk on, each one's last
    // splice is still in the pipe.
    EXPECT_EQ(bounced, uint64_t(kChunks - 3));
}

// perf (session 18): the three buffers the sink lends lie side by side in
// one mapping that starts on a huge-page boundary (two huge-page faults for
// a worker's first chunks instead of 768 page faults), and still take turns.
TEST(ImageSink, TheRingIsOneMappingOnAHugePageBoundary) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 1 << 20), 1 << 20);
    {
        ImageSink sink(p[1]);
        char* first = sink.chunk_buffer();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % (2 << 20), 0u);
        for (size_t k = 1; k < 4; ++k) {
            char* buf = sink.chunk_buffer();  // nothing spliced: each is free again
            EXPECT_EQ(buf, first + (k % 3) * ImageSink::kChunk) << k;
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

}  // namespace
}  // namespace crfs
