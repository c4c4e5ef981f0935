// PipedImage: an image streamed through a pipe by a writer process, served by
// offset from a window (checkpoint/piped_image.h).
#include "checkpoint/piped_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include <string>
#include <tuple>
#include <vector>

namespace crfs {
namespace {

constexpr size_t kWin = PipedImage::kWindow;

char byte_at(uint64_t i) {
    return char((i * 2654435761u) >> 13);
}

// A child writing `size` pattern bytes into a pipe (stopping after `stop_at`,
// as a worker that dies). Returns the read end and the child.
std::pair<UniqueFd, pid_t> writer(uint64_t size, uint64_t stop_at = ~0ull) {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        ::signal(SIGPIPE, SIG_IGN);
        ::close(p[0]);
        std::vector<char> buf(1 << 16);
        for (uint64_t off = 0; off < size && off < stop_at;) {
            size_t n = std::min<uint64_t>({buf.size(), size - off, stop_at - off});
            for (size_t i = 0; i < n; ++i) buf[i] = byte_at(off + i);
            ssize_t w = ::write(p[1], buf.data(), n);
            if (w <= 0) ::_exit(w < 0 && errno == EPIPE ? 3 : 4);
            off += uint64_t(w);
        }
        ::_exit(0);
    }
    ::close(p[1]);
    return {UniqueFd(p[0]), pid};
}

void expect_bytes(const PipedImage& img, uint64_t off, size_t len) {
    std::vector<char> buf(len);
    auto n = img.read(off, buf.data(), len);
    ASSERT_TRUE(n) << n.error().what;
    ASSERT_EQ(*n, std::min<uint64_t>(len, img.size() - std::min(off, img.size())));
    for (size_t i = 0; i < *n; ++i) ASSERT_EQ(buf[i], byte_at(off + i)) << "byte " << off + i;
}

TEST(PipedImage, SequentialRereadsInsideTheWindowAndSkipsAhead) {
    uint64_t size = 3 * kWin + 12345;
    auto [fd, pid] = writer(size);
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

TEST(PipedImage, AWriterThatDiesEarlyIsAnErrorNamingTheByte) {
    auto [fd, pid] = writer(1 << 20, 5000);
    PipedImage img(std::move(fd), pid, 1 << 20);
    expect_bytes(img, 0, 5000);
    std::vector<char> buf(4096);
    auto r = img.read(5000, buf.data(), buf.size());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EIO);
    EXPECT_NE(r.error().what.find("ended at byte 5000 of 1048576"), std::string::npos)
        << r.error().what;
}

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
    PipedImage img(std::move(fd), pid, 0, std::move(status));
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
    PipedImage img(std::move(fd), pid, 0, std::move(status));
    std::vector<char> buf(4096);
    auto r = img.read(0, buf.data(), buf.size());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EAGAIN);
    EXPECT_NE(r.error().what.find("unmapped memory"), std::string::npos) << r.error().what;
    auto again = img.read(3000, buf.data(), buf.size());  // the same answer, not EOF
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EAGAIN);
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

// A read as the daemon serves it (serve with a PipeReply): the bytes the
// reply got, in order, and how many of them came through the pipe.
struct Served {
    Result<size_t> n = size_t{0};
    std::string bytes;
    size_t piped = 0;
};

// `deliver`: false plays a reply that could not be sent (libfuse took some
// bytes from the stage, then the kernel refused the reply).
Served serve_spliced(const PipedImage& img, uint64_t off, size_t len, bool deliver = true) {
    Served s;
    auto add = [&](const iovec* pieces, int count) {
        for (int i = 0; i < count; ++i)
            s.bytes.append(static_cast<const char*>(pieces[i].iov_base), pieces[i].iov_len);
    };
    s.n = img.serve(off, len, add, [&](const iovec* pieces, int count, int fd, size_t n) {
        add(pieces, count);
        std::string got(deliver ? n : n / 2, '\0');
        size_t done = 0;
        while (done < got.size()) {
            ssize_t r = ::read(fd, got.data() + done, got.size() - done);
            if (r <= 0) break;
            done += size_t(r);
        }
        if (!deliver) return size_t{0};
        s.piped += done;
        s.bytes += got.substr(0, done);
        return done;
    });
    return s;
}

void expect_stream(const Served& s, uint64_t off) {
    ASSERT_TRUE(s.n) << s.n.error().what;
    ASSERT_EQ(*s.n, s.bytes.size());
    for (size_t i = 0; i < s.bytes.size(); ++i)
        ASSERT_EQ(s.bytes[i], byte_at(off + i)) << "byte " << off + i;
}

TEST(PipedImage, ReadsAtTheHeadComeThroughThePipeInOddSizes) {
    uint64_t size = 3 * kWin + 12345;
    auto [fd, pid] = writer(size);
    PipedImage img(std::move(fd), pid, size);
    const size_t sizes[] = {1, 4097, (1 << 20) + 3, 65536, 1 << 20, 12289};
    uint64_t off = 0;
    size_t piped = 0;
    for (size_t i = 0; off < size; ++i) {
        Served s = serve_spliced(img, off, sizes[i % std::size(sizes)]);
        expect_stream(s, off);
        ASSERT_GT(*s.n, 0u) << "at " << off;  // short maybe, never 0 before the end
        off += *s.n;
        piped += s.piped;
    }
    EXPECT_EQ(off, size);
    EXPECT_GT(piped, size / 2);  // most of it skipped the window
    EXPECT_EQ(*serve_spliced(img, size, 4096).n, 0u);
}

TEST(PipedImage, SplicedBytesAreNotHeldAReadAheadIsAndTheWindowServesIt) {
    uint64_t size = 2 * kWin;
    auto [fd, pid] = writer(size);
    PipedImage img(std::move(fd), pid, size);
    Served head = serve_spliced(img, 0, 1 << 20);
    expect_stream(head, 0);
    ASSERT_GT(head.piped, 0u);
    // Spliced: gone, an error rather than other bytes.
    Served again = serve_spliced(img, 0, 4096);
    ASSERT_FALSE(again.n);
    EXPECT_EQ(again.n.error().code, ESPIPE);
    EXPECT_NE(again.n.error().what.find("open it again"), std::string::npos);
    // A read ahead (out of order) copies what lies before it into the window,
    // and then the read that was behind it is served from there.
    uint64_t at = *head.n;
    Served ahead = serve_spliced(img, at + 100000, 5000);
    expect_stream(ahead, at + 100000);
    EXPECT_EQ(ahead.piped, 0u);
    Served behind = serve_spliced(img, at, 100000);
    expect_stream(behind, at);
    EXPECT_EQ(*behind.n, 100000u);
    // A read inside the window reaching past it: up to the spliced bytes.
    Served next = serve_spliced(img, at + 105000, 1 << 20);
    expect_stream(next, at + 105000);
    uint64_t head2 = at + 105000 + *next.n;
    ASSERT_GT(next.piped, 0u);
    Served tail = serve_spliced(img, at + 104000, 1 << 20);
    expect_stream(tail, at + 104000);
    EXPECT_EQ(*tail.n, 1000u);  // the bytes from 105000 on went out spliced
    expect_stream(serve_spliced(img, head2, 1 << 20), head2);
}

TEST(PipedImage, AReplyThatCouldNotBeSentLeavesItsBytesForTheNextRead) {
    uint64_t size = kWin;
    auto [fd, pid] = writer(size);
    PipedImage img(std::move(fd), pid, size);
    Served lost = serve_spliced(img, 0, 1 << 20, false);
    ASSERT_TRUE(lost.n);
    Served s = serve_spliced(img, 0, 1 << 20);  // the kernel asks again
    expect_stream(s, 0);
    ASSERT_GT(s.piped, 0u);
    for (uint64_t off = *s.n; off < size;) {
        Served t = serve_spliced(img, off, 1 << 20);
        expect_stream(t, off);
        ASSERT_GT(*t.n, 0u);
        off += *t.n;
    }
}

TEST(PipedImage, ASmallPieceAloneInThePipeIsCopiedAndTheReplyWaitsForMore) {
    // The worker writes a record's header, then (once that left the pipe)
    // the pages: the reply is the header from the window plus the pages.
    int p[2], go[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
    const uint64_t size = 100 + (256 << 10);
    pid_t pid = fork();
    if (pid == 0) {
        ::close(p[0]);
        ::close(go[1]);
        std::string b(size, '\0');
        for (uint64_t i = 0; i < size; ++i) b[i] = byte_at(i);
        char c;
        if (::write(p[1], b.data(), 100) != 100 || ::read(go[0], &c, 1) != 1) ::_exit(4);
        if (::write(p[1], b.data() + 100, size - 100) != ssize_t(size - 100)) ::_exit(5);
        ::_exit(0);
    }
    ::close(p[1]);
    ::close(go[0]);
    int watch_fd = ::dup(p[0]);
    PipedImage img(UniqueFd(p[0]), pid, size);
    // Closed before img waits for the writer (which then stops with EPIPE).
    UniqueFd watch(watch_fd);
    UniqueFd go_w(go[1]);
    auto wait_for = [&](auto ok) {
        for (int i = 0; i < 60000; ++i) {
            int in = -1;
            if (::ioctl(watch.get(), FIONREAD, &in) == 0 && ok(in)) return true;
            ::usleep(1000);
        }
        return false;
    };
    ASSERT_TRUE(wait_for([](int in) { return in == 100; }));  // the header alone
    std::thread release([&] {
        // Once the header left the pipe (the reply waits for more): the pages.
        EXPECT_TRUE(wait_for([](int in) { return in == 0; }));
        char c = 1;
        EXPECT_EQ(::write(go_w.get(), &c, 1), 1);
    });
    Served s = serve_spliced(img, 0, 1 << 20);
    release.join();
    expect_stream(s, 0);
    EXPECT_GT(*s.n, 100u);  // not the header alone
    EXPECT_EQ(*s.n - s.piped, 100u);
}

TEST(PipedImage, AnUnknownSizeEndsThroughTheSplicedPathToo) {
    auto [fd, status, pid] = writer_with_status(300000, "0\n");
    PipedImage img(std::move(fd), pid, 0, std::move(status));
    uint64_t off = 0;
    for (;;) {
        Served s = serve_spliced(img, off, 65536 + 7);
        expect_stream(s, off);
        if (*s.n == 0) break;
        off += *s.n;
    }
    EXPECT_EQ(off, 300000u);
    EXPECT_EQ(img.size(), 300000u);
}

}  // namespace
}  // namespace crfs
