// check_fields on images with inet sockets built in memory: every socket
// field out of range is EINVAL naming it (restorer/check_inet.cc), and the
// decoder refuses socket records that belong to no socket fd.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>

#include "restorer/validate.h"
#include "tests/support/check_fields.h"

namespace crfs {
namespace {

using test::expect_einval;

DecodedImage good(bool established) {
    DecodedImage img = test::minimal_image();
    FdEntry f{};
    f.rec.fd = 3;
    f.rec.kind = uint32_t(image::FdKind::kTcp);
    f.rec.open_flags = O_RDWR;
    f.rec.mode = S_IFSOCK | 0777;
    f.rec.same_as = -1;
    img.fds.push_back(f);
    InetEntry e;
    e.rec.fd = 3;
    e.rec.family = AF_INET;
    e.rec.type = SOCK_STREAM;
    e.rec.flags = image::kInetBound | image::kInetListening;
    e.rec.local_addr[0] = 127, e.rec.local_addr[3] = 1;
    e.rec.local_port = 8080;
    e.rec.backlog = 128;
    image::InetOptionRecord nodelay{3, IPPROTO_TCP, TCP_NODELAY, 4, {1}};
    e.options.push_back(nodelay);
    if (established) {
        e.rec.flags = image::kInetBound | image::kInetConnected | image::kInetRepair;
        e.rec.backlog = 0;
        e.rec.peer_addr[0] = 127, e.rec.peer_addr[3] = 1;
        e.rec.peer_port = 40000;
        image::TcpRepairRecord r{};
        r.fd = 3;
        r.options = image::kTcpOptSack | image::kTcpOptWscale;
        r.mss = 1460;
        r.snd_wscale = r.rcv_wscale = 7;
        e.repair = r;
    }
    img.inet.push_back(e);
    return img;
}

TEST(InetFields, GoodListenerAndConnectionPass) {
    EXPECT_TRUE(check_fields(good(false)));
    EXPECT_TRUE(check_fields(good(true)));
}

TEST(InetFields, SocketRecordOutOfRange) {
    auto img = good(false);
    img.inet[0].rec.family = AF_UNIX;
    expect_einval(img, "socket family 1");
    img = good(false);
    img.inet[0].rec.type = SOCK_DGRAM;  // a TCP fd
    expect_einval(img, "socket type 2 for a TCP socket");
    img = good(false);
    img.inet[0].rec.flags |= 1u << 9;
    expect_einval(img, "socket flags 0x205");
    img = good(false);
    img.inet[0].rec.flags |= image::kInetRepair;  // listening and established
    expect_einval(img, "name no state");
    img = good(false);
    img.inet[0].rec.backlog = -1;
    expect_einval(img, "backlog -1");
    img = good(false);
    img.inet[0].rec.local_addr[9] = 1;
    expect_einval(img, "IPv4 address with bytes past the fourth");
    img = good(false);
    img.inet[0].rec.peer_port = 5;  // not connected
    expect_einval(img, "address of an unbound or unconnected side");
    img = good(false);
    img.fds[0].rec.kind = uint32_t(image::FdKind::kUdp);
    img.inet[0].rec.type = SOCK_DGRAM;  // UDP does not listen
    expect_einval(img, "name no state");
}

TEST(InetFields, SocketFdOutOfRange) {
    auto img = good(false);
    img.fds[0].rec.open_flags = O_RDONLY;
    expect_einval(img, "socket open flags 0x0");
    img = good(false);
    img.fds[0].path = "/etc/passwd";
    expect_einval(img, "a socket with a path");
    img = good(false);
    img.fds[0].rec.mode = S_IFREG | 0644;
    expect_einval(img, "another file type");
}

TEST(InetFields, OptionsOnlyFromTheTable) {
    auto img = good(false);
    img.inet[0].options[0].name = SO_ATTACH_FILTER;
    img.inet[0].options[0].level = SOL_SOCKET;
    expect_einval(img, "socket option level 1 name 26");
    img = good(false);
    img.inet[0].options[0].len = 16;
    expect_einval(img, "socket option TCP_NODELAY of 16 bytes");
    img = good(false);
    img.inet[0].options[0] = {3, IPPROTO_UDP, 1 /* UDP_CORK */, 4, {1}};  // on TCP
    expect_einval(img, "socket option level 17 name 1");
}

TEST(InetFields, RepairStateOutOfRange) {
    auto img = good(true);
    img.inet[0].repair->snd_wscale = 15;
    expect_einval(img, "window scale 15/7");
    img = good(true);
    img.inet[0].repair->mss = 0;
    expect_einval(img, "MSS 0");
    img = good(true);
    img.inet[0].repair->options |= 1u << 5;
    expect_einval(img, "TCP options 0x25");
    img = good(true);
    img.inet[0].repair->options = 0;  // window scale values without the option
    expect_einval(img, "window scale without the option");
}

}  // namespace
}  // namespace crfs
