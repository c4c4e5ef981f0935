// PipedImage: an image streamed through a pipe (or several, in stripes) by a
// writer process, served by offset from a window (checkpoint/piped_image.h).
#include "checkpoint/piped_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "checkpoint/image_sink.h"

namespace crfs {
namespace {

constexpr size_t kWin = PipedImage::kWindow;

char byte_at(uint64_t i) {
    return char((i * 2654435761u) >> 13);
}

// A child writing `size` pattern bytes into `stripes` pipes, each stripe
// into its pipe as the worker's sink does (ImageSink::stripe_at), stopping
// after `stop_at` as a worker that dies. Returns the read ends and the child.
std::pair<std::vector<UniqueFd>, pid_t> writer(uint64_t size, uint64_t stop_at = ~0ull,
                                               size_t stripes = 1) {
    std::vector<int> rd, wr;
    for (size_t i = 0; i < stripes; ++i) {
        int p[2];
        EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
        rd.push_back(p[0]);
        wr.push_back(p[1]);
    }
    pid_t pid = fork();
    if (pid == 0) {
        ::signal(SIGPIPE, SIG_IGN);
        for (int fd : rd) ::close(fd);
        std::vector<char> buf(1 << 16);
        for (uint64_t off = 0; off < size && off < stop_at;) {
            ImageSink::Stripe to = ImageSink::stripe_at(off, wr.size());
            size_t n = std::min<uint64_t>({buf.size(), size - off, stop_at - off, to.room});
            for (size_t i = 0; i < n; ++i) buf[i] = byte_at(off + i);
            ssize_t w = ::write(wr[to.index], buf.data(), n);
            if (w <= 0) ::_exit(w < 0 && errno == EPIPE ? 3 : 4);
            off += uint64_t(w);
        }
        ::_exit(0);
    }
    for (int fd : wr) ::close(fd);
    std::vector<UniqueFd> ends;
    for (int fd : rd) ends.emplace_back(fd);
    return {std::move(ends), pid};
}

std::vector<UniqueFd> one(UniqueFd fd) {
    std::vector<UniqueFd> v;
    v.push_back(std::move(fd));
    return v;
}

void expect_bytes(const PipedImage& img, uint64_t off, size_t len) {
    std::vector<char> buf(len);
    auto n = img.read(off, buf.data(), len);
    ASSERT_TRUE(n) << n.error().what;
    ASSERT_EQ(*n, std::min<uint64_t>(len, img.size() - std::min(off, img.size())));
    for (size_t i = 0; i < *n; ++i) ASSERT_EQ(buf[i], byte_at(off + i)) << "byte " << off + i;
}

// Also with the stream in four pipes (the worker's stripes): the same bytes.
class PipedImageStripes : public testing::TestWithParam<size_t> {};

TEST_P(PipedImageStripes, SequentialRereadsInsideTheWindowAndSkipsAhead) {
    uint64_t size = 3 * kWin + 12345;
    auto [fd, pid] = writer(size, ~0ull, GetParam());
    PipedImage img(std::move(fd), pid, size);
    expect_bytes(img, 0, 1 << 20);
    expect_bytes(img, 1 << 20, 1 << 20);
    expect_bytes(img, 4096, 1 << 20);        // back, inside the window: the same bytes
    expect_bytes(img, kWin + 100, 1 << 20);  // ahead: what lies between is skipped
    expect_bytes(img, (1 << 20) + 200, 1000);
    expect_bytes(img, 2 * kWin + 5, kWin);  // a whole window at once
    std::vector<char> buf(16);
    auto old = img.read(0, buf.data(), buf.size());
    ASSERT_FALSE(old);
    EXPECT_EQ(old.error().code, ESPIPE);
    EXPECT_NE(old.error().what.find("open it again"), std::string::npos) << old.error().what;
    expect_bytes(img, size - 10, 100);  // the end: a short read
    EXPECT_EQ(img.read(size, buf.data(), buf.size()).value(), 0u);
    EXPECT_EQ(img.read(size + 1000, buf.data(), buf.size()).value(), 0u);
}

// Dying in the second stripe: with several pipes, the second one ends there.
TEST_P(PipedImageStripes, AWriterThatDiesEarlyIsAnErrorNamingTheByte) {
    constexpr uint64_t kStop = ImageSink::kStripe + 5000;
    auto [fd, pid] = writer(4 << 20, kStop, GetParam());
    PipedImage img(std::move(fd), pid, 4 << 20);
    expect_bytes(img, 0, kStop);
    std::vector<char> buf(4096);
    auto r = img.read(kStop, buf.data(), buf.size());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EIO);
    EXPECT_NE(r.error().what.find("ended at byte 1053576 of 4194304"), std::string::npos)
        << r.error().what;
}

INSTANTIATE_TEST_SUITE_P(Pipes, PipedImageStripes, testing::Values(size_t{1}, size_t{4}));

// A stream of unknown size: `size` bytes, then the worker's status line.
std::tuple<UniqueFd, UniqueFd, pid_t> writer_with_status(uint64_t size, std::string status) {
    int s[2];
    EXPECT_EQ(pipe2(s, O_CLOEXEC), 0);
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        ::close(p[0]);
        ::close(s[0]);
        std::vector<char> buf(size);
        for (uint64_t i = 0; i < size; ++i) buf[i] = byte_at(i);
        if (::write(p[1], buf.data(), size) != ssize_t(size)) ::_exit(4);
        if (::write(s[1], status.data(), status.size()) != ssize_t(status.size())) ::_exit(5);
        ::_exit(0);
    }
    ::close(p[1]);
    ::close(s[1]);
    return {UniqueFd(p[0]), UniqueFd(s[0]), pid};
}

TEST(PipedImage, AnUnknownSizeIsTheEndTheWorkerConfirms) {
    auto [fd, status, pid] = writer_with_status(5000, "0\n");
    PipedImage img(one(std::move(fd)), pid, 0, std::move(status));
    EXPECT_EQ(img.size(), 0u);
    std::vector<char> buf(4096);
    ASSERT_EQ(img.read(0, buf.data(), buf.size()).value(), 4096u);
    ASSERT_EQ(img.read(4096, buf.data(), buf.size()).value(), 904u);
    for (size_t i = 0; i < 904; ++i) ASSERT_EQ(buf[i], byte_at(4096 + i));
    EXPECT_EQ(img.size(), 5000u);
    EXPECT_EQ(img.read(5000, buf.data(), buf.size()).value(), 0u);
}

TEST(PipedImage, AWorkerThatCannotFinishSaysWhyWithItsErrno) {
    auto [fd, status, pid] = writer_with_status(3000,
                                                "11\ntask 7 unmapped memory at 1000 that "
                                                "was not yet in the image");
    PipedImage img(one(std::move(fd)), pid, 0, std::move(status));
    std::vector<char> buf(4096);
    auto r = img.read(0, buf.data(), buf.size());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EAGAIN);
    EXPECT_NE(r.error().what.find("unmapped memory"), std::string::npos) << r.error().what;
    auto again = img.read(3000, buf.data(), buf.size());  // the same answer, not EOF
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EAGAIN);
}

// The window of a closed image is kept for the next one (perf): the next
// image serves its own bytes and its own end, nothing of the first's.
TEST(PipedImage, AKeptWindowServesOnlyItsOwnImage) {
    {
        auto [fd, pid] = writer(kWin);
        PipedImage first(std::move(fd), pid, kWin);
        expect_bytes(first, 0, kWin);  // the whole window written
    }
    auto [fd, status, pid] = writer_with_status(3000, "0\n");
    PipedImage next(one(std::move(fd)), pid, 0, std::move(status));
    std::vector<char> buf(kWin, 'x');
    ASSERT_EQ(next.read(0, buf.data(), buf.size()).value(), 3000u);
    for (size_t i = 0; i < 3000; ++i) ASSERT_EQ(buf[i], byte_at(i)) << "byte " << i;
    EXPECT_EQ(next.read(3000, buf.data(), buf.size()).value(), 0u);
    EXPECT_EQ(next.read(kWin - 10, buf.data(), 10).value(), 0u);
}

// perf: a window is in no process forked or cloned from the daemon
// (MADV_DONTFORK): a restore clones its processes from it, and a kept
// window was 4 MiB of every clone's copy (docs/performance.md "Session 45").
TEST(PipedImage, AWindowIsNotInAForkedChild) {
    auto [fd, pid] = writer(kWin);
    PipedImage img(std::move(fd), pid, kWin);
    uintptr_t page = 0;
    auto n = img.serve(0, 4096, [&](const iovec* p, int count) {
        ASSERT_GE(count, 1);
        page = reinterpret_cast<uintptr_t>(p[0].iov_base) & ~uintptr_t(4095);
    });
    ASSERT_TRUE(n) << n.error().what;
    ASSERT_NE(page, 0u);
    unsigned char v;
    ASSERT_EQ(mincore(reinterpret_cast<void*>(page), 4096, &v), 0) << "the window is ours";
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0)  // ENOMEM: nothing mapped there
        _exit(mincore(reinterpret_cast<void*>(page), 4096, &v) == -1 && errno == ENOMEM ? 0 : 1);
    int st = 0;
    ASSERT_EQ(waitpid(child, &st, 0), child);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the window was copied into the child";
}

TEST(PipedImage, ClosingBeforeTheEndStopsAndReapsTheWriter) {
    uint64_t size = 64ull << 20;  // far more than the pipe holds
    auto [fd, pid] = writer(size);
    {
        PipedImage img(std::move(fd), pid, size);
        expect_bytes(img, 0, 1000);
    }
    // Reaped by the destructor: the pid is no longer our child.
    errno = 0;
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

// perf (common/cpu_placement.h): a read served for a reader keeps a worker
// that copies as it streams off the reader's CPU, and leaves one that does
// not where it was.
TEST(PipedImage, AWorkerThatCopiesIsKeptOffTheReadersCpu) {
    cpu_set_t all;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU";
    int cpu = -1;
    while (!CPU_ISSET(++cpu, &all)) {
    }
    for (bool copies : {true, false}) {
        uint64_t size = 64ull << 20;  // the writer blocks on the full pipe
        auto [fd, pid] = writer(size);
        PipedImage img(std::move(fd), pid, size, {}, {}, copies);
        std::thread([&] {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);  // the reader, on `cpu`
            auto n = img.serve(
                0, 4096,
                [&](const iovec* p, int count) {
                    ASSERT_EQ(count, 1);
                    ASSERT_EQ(p[0].iov_len, 4096u);
                    EXPECT_EQ(static_cast<const char*>(p[0].iov_base)[4095], byte_at(4095));
                },
                gettid());
            ASSERT_TRUE(n) << n.error().what;
        }).join();
        cpu_set_t now;
        ASSERT_EQ(sched_getaffinity(pid, sizeof now, &now), 0);
        cpu_set_t want = all;
        if (copies) CPU_CLR(cpu, &want);
        EXPECT_TRUE(CPU_EQUAL(&now, &want)) << "copies " << copies;
    }
}

}  // namespace
}  // namespace crfs
