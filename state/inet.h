// Inet sockets (TCP and UDP over IPv4 and IPv6): the shared half of the kinds
// in state/tcp.cc and state/udp.cc. docs/network.md says what is captured,
// what is refused and why.
//
//   detect  inet_reason: the socket read through a duplicate of it
//           (pidfd_getfd: the kernel's ptrace check for the caller)
//   dump    dump_inet: address, state, options that differ from a new
//           socket's, and for established TCP the repair state and queues
//   restore restore_inet (the daemon, as the writer, in the writer's network
//           namespace): a socket made as the image says, handed to stage 1
//           like a deleted file's copy; tcp_go_live (stage 1) ends repair.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/image_writer.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"

namespace crfs::state {

// A duplicate of fd `fd` of task `pid` (pidfd_getfd).
Result<UniqueFd> grab_fd(pid_t pid, int fd);

// One inet socket as this process sees it through a duplicate.
struct InetView {
    pid_t pid = 0;  // the task holding it (0: unknown)
    int domain = 0, type = 0, protocol = 0;
    int tcp_state = 0;  // TCP_INFO tcpi_state (TCP only)
    sockaddr_storage local{}, peer{};
    bool bound = false, connected = false;
    int backlog = 0;      // listening TCP: sk_max_ack_backlog
    unsigned queued = 0;  // listening TCP: connections not accepted yet
    std::string what;     // "TCP socket 127.0.0.1:80 (listening)"
};

// The view of a socket; not an inet socket is ENOTSUP.
Result<InetView> inspect_inet(int sock);

// The reason an inet socket (socket fd `fd` of the task) cannot be saved, or
// nullopt; not a TCP or UDP socket: nullopt and *is_inet false (other kinds decide).
std::optional<std::string> inet_reason(pid_t pid, int fd, bool* is_inet);

// "netlink socket", "packet socket", ... for a socket no /proc/net table lists
// (an unbound netlink socket), from SO_DOMAIN; nullopt when unknown.
std::optional<std::string> socket_family_text(pid_t pid, int fd);

// What the image holds for one inet socket.
struct InetDump {
    image::FdKind kind{};
    image::InetSocketRecord rec{};
    std::vector<image::InetOptionRecord> options;
    std::optional<image::TcpRepairRecord> repair;
    std::string recv_queue, send_queue;
};

// Dumps socket fd `fd` of the frozen task. Established TCP connections must be
// covered by the network lock (state/netlock.h) and are left in repair mode:
// the image owns them from now on (docs/network.md, "Hand-over").
Result<InetDump> dump_inet(pid_t pid, int fd);
// Its records: inet-socket, inet-option..., tcp-repair, tcp-queue...
void write_inet(ImageWriter& w, const InetDump& d);

// --- shared by tcp.cc and udp.cc ---------------------------------------------

// "1.2.3.4:80", "[::1]:80".
std::string addr_text(const sockaddr_storage& ss);
// Fills the record's addresses and flags from the view.
void fill_addresses(const InetView& v, image::InetSocketRecord& rec);
socklen_t sockaddr_of(const image::InetSocketRecord& rec, bool peer, sockaddr_storage& out);
// A new socket of the record's family and `type`, with its options applied.
Result<UniqueFd> make_socket(const InetEntry& e, int type, int protocol);
// bind() to the record's local address, connect() to its peer.
Status bind_to(int sock, const image::InetSocketRecord& rec);
Status connect_to(int sock, const image::InetSocketRecord& rec);

// Options (state/inet_options.cc): the ones that differ from a new socket of
// the same kind, and applying them; a range check for hostile images.
Result<std::vector<image::InetOptionRecord>> dump_options(int sock, const InetView& v);
Status apply_options(int sock, const InetEntry& e);
std::optional<std::string> bad_option(const image::InetOptionRecord& o, uint32_t family,
                                      uint32_t type);
// Why the socket holds state no option record carries (a BPF filter ...), or nullopt.
std::optional<std::string> unsaved_option_state(int sock);

// TCP (state/tcp.cc) and UDP (state/udp.cc).
std::optional<std::string> tcp_reason(int sock, const InetView& v);
std::optional<std::string> udp_reason(int sock, const InetView& v);
Status dump_tcp_repair(int sock, InetDump& d);
Result<UniqueFd> restore_tcp(const InetEntry& e);
Result<UniqueFd> restore_udp(const InetEntry& e);

// Restores one inet socket (kind from the image's fd record), as the calling
// thread's credentials allow and in its network namespace.
Result<UniqueFd> restore_inet(const FdEntry& f, const InetEntry& e);

// Stage 1, syscalls only: ends repair mode of a restored connection (the
// kernel then sends a window probe). 0 or an errno.
int tcp_go_live(int sock);
// A checkpoint that failed after dump_tcp_repair gives fd `fd` of task `pid`
// its connection back (repair off).
void tcp_end_repair(pid_t pid, int fd);

// Is socket inode `ino` in task `pid`'s network namespace (/proc/<pid>/net)?
bool in_task_netns(pid_t pid, uint64_t ino, bool v6);

}  // namespace crfs::state
