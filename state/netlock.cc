#include "state/netlock.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/io.h"
#include "common/log.h"
#include "common/own_children.h"
#include "common/strfmt.h"

extern char** environ;

namespace crfs::state {

namespace {

constexpr int kNftTimeoutMs = 10'000;
constexpr const char* kNft = "/usr/sbin/nft";

std::string table_name(pid_t daemon) {
    return strfmt("crfs_{}", daemon);
}

std::string ip_text(int family, const void* addr) {
    char buf[INET6_ADDRSTRLEN] = "";
    inet_ntop(family, addr, buf, sizeof buf);
    return buf;
}

bool v4_mapped(const uint8_t* a) {
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, prefix, 12) == 0;
}

LockedConn make_conn(int family, const uint8_t* local, uint16_t lport, const uint8_t* peer,
                     uint16_t pport) {
    if (family == AF_INET6 && v4_mapped(local) && v4_mapped(peer)) {
        family = AF_INET;
        local += 12;
        peer += 12;
    }
    LockedConn c;
    c.v6 = family == AF_INET6;
    std::memcpy(c.local, local, c.v6 ? 16 : 4);
    std::string l = ip_text(family, local), p = ip_text(family, peer);
    c.out = strfmt("{} . {} . {} . {}", l, lport, p, pport);
    c.in = strfmt("{} . {} . {} . {}", p, pport, l, lport);
    return c;
}

// "0100007F:1F90" (IPv4) or 32 hex digits (IPv6): the kernel prints each
// 32-bit word of the network-order address as a native integer.
bool parse_endpoint(std::string_view s, bool v6, uint8_t* addr, uint16_t& port) {
    size_t colon = s.find(':');
    size_t words = v6 ? 4 : 1;
    if (colon != words * 8) return false;
    for (size_t i = 0; i < words; ++i) {
        uint32_t w = 0;
        auto sub = s.substr(i * 8, 8);
        if (std::from_chars(sub.data(), sub.data() + 8, w, 16).ec != std::errc()) return false;
        std::memcpy(addr + i * 4, &w, 4);
    }
    auto ps = s.substr(colon + 1);
    return std::from_chars(ps.data(), ps.data() + ps.size(), port, 16).ec == std::errc();
}

// nft spawned in network namespace `netns`. A child takes the namespaces of
// the thread that forks it, and setns is per thread: the spawn runs on a
// thread of its own that joined `netns`.
Result<pid_t> spawn_in(int netns, char* const argv[], const posix_spawn_file_actions_t* fa) {
    pid_t pid = 0;
    int err = 0;
    std::thread t([&] {
        own_children::Making making;  // crfsd's own child (common/own_children.h)
        if (setns(netns, CLONE_NEWNET) != 0)
            err = errno;
        else
            err = posix_spawn(&pid, kNft, fa, nullptr, argv, environ);
        if (!err) making.made(pid);
    });
    t.join();
    if (err) return sys_error(err, strfmt("network lock: starting {}", kNft));
    return pid;
}

// The `nft -ie` child that owns one namespace's table: commands in, echoes out.
class Holder {
  public:
    bool started() const { return pid_ > 0; }

    Status start(int netns) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0) return errno_error("network lock: pipe");
        UniqueFd in_r(in[0]);
        in_.reset(in[1]);
        if (pipe2(out, O_CLOEXEC) != 0) return errno_error("network lock: pipe");
        UniqueFd out_w(out[1]);
        out_.reset(out[0]);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
        posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
        posix_spawn_file_actions_adddup2(&fa, out_w.get(), 2);
        char a0[] = "nft", a1[] = "-ie";
        char* argv[] = {a0, a1, nullptr};
        auto pid = spawn_in(netns, argv, &fa);
        posix_spawn_file_actions_destroy(&fa);
        if (!pid) return std::unexpected(pid.error());
        pid_ = *pid;
        table_ = "inet " + table_name(getpid());
        const std::string& t = table_;
        const std::string v4 = " ip saddr . tcp sport . ip daddr . tcp dport @c4 drop";
        const std::string v6 = " ip6 saddr . tcp sport . ip6 daddr . tcp dport @c6 drop";
        // The table and the set of sync marks first: both echo their commit.
        for (const std::string& c :
             {"add table " + t + " { flags owner; }",
              "add set " + t + " sync { type inet_service; flags timeout; timeout 10s; }"})
            if (auto s = command(c, false); !s) {
                stop();
                return s;
            }
        for (const std::string& c :
             {"add set " + t + " c4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }",
              "add set " + t + " c6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }",
              "add chain " + t + " in { type filter hook input priority -400; }",
              "add chain " + t + " out { type filter hook output priority -400; }",
              "add rule " + t + " in" + v4, "add rule " + t + " in" + v6,
              "add rule " + t + " out" + v4, "add rule " + t + " out" + v6})
            if (auto s = command(c); !s) {
                stop();
                return s;
            }
        return {};
    }

    // Ends the child: at EOF nft exits, its netlink socket closes and the
    // kernel deletes the owned table before the child is a zombie.
    void stop() {
        in_.reset();
        if (out_) {
            char chunk[4096];
            pollfd p{out_.get(), POLLIN, 0};
            while (poll(&p, 1, kNftTimeoutMs) > 0 && ::read(out_.get(), chunk, sizeof chunk) > 0) {
            }
        }
        out_.reset();
        buf_.clear();
        if (pid_ <= 0) return;
        int st = 0;
        if (own_children::waitpid(pid_, &st, WNOHANG) == 0) {
            ::kill(pid_, SIGKILL);
            own_children::waitpid(pid_, &st, 0);
        }
        pid_ = 0;
    }

    // One command, then (`sync`) a new element of the sync set: nft echoes
    // only commits, and not every command commits (a delete does not echo),
    // so the sync element's echo and commit line end the command's output.
    // Any "Error:" line before it is the command's.
    Status command(const std::string& cmd, bool sync = true) {
        std::string mark;
        std::string line = cmd + "\n";
        if (sync) {
            seq_ = seq_ % 65535 + 1;
            mark = "add element " + table_ + " sync { " + std::to_string(seq_) + " ";
            line += "add element " + table_ + " sync { " + std::to_string(seq_) + " }\n";
        }
        if (auto w = write_full(in_.get(), line.data(), line.size()); !w) {
            stop();
            return std::unexpected(w.error().context("network lock: nft"));
        }
        bool marked = !sync;
        std::string error;
        for (;;) {
            size_t nl;
            while ((nl = buf_.find('\n')) != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (l.starts_with("Error:") && error.empty()) error = l.substr(7);
                if (!sync && !error.empty()) break;
                if (sync && l.starts_with(mark)) marked = true;
                if (marked && l.starts_with("# new generation")) break;
                continue;
            }
            if (nl != std::string::npos) break;
            pollfd p{out_.get(), POLLIN, 0};
            int r = poll(&p, 1, kNftTimeoutMs);
            if (r < 0 && errno == EINTR) continue;
            char chunk[4096];
            ssize_t n = r > 0 ? ::read(out_.get(), chunk, sizeof chunk) : -1;
            if (n <= 0) {
                stop();
                return make_error(EIO, "network lock: nft did not answer (" + cmd + ")");
            }
            buf_.append(chunk, size_t(n));
        }
        if (!error.empty())
            return make_error(EIO, "network lock: nft: " + error + " (in: " + cmd + ")");
        return {};
    }

  private:
    pid_t pid_ = 0;
    UniqueFd in_, out_;
    std::string buf_;
    std::string table_;  // "inet crfs_<tgid>"
    unsigned seq_ = 0;   // the last sync element
};

// A network namespace, as (st_dev, st_ino) of its nsfs inode.
using NsId = std::pair<dev_t, ino_t>;

// One namespace's lock.
struct Netns {
    UniqueFd fd;  // the namespace (the daemon's own too: a thread may be elsewhere)
    Holder nft;
    struct Held {
        LockedConn conn;
        bool orphan = false;  // restored elsewhere; stays while its address is local here
    };
    std::map<std::string, Held> held;  // by "c4 <out>"
    bool watching = false;             // a watcher thread sweeps the orphans
    UniqueFd wake;                     // eventfd: sweep now
};

// Every lock; one command at a time. Guards everything reachable from it.
// Never destroyed: detached watcher threads may outlive static destructors.
std::mutex& g_mu = *new std::mutex;
std::map<NsId, std::shared_ptr<Netns>>& locks() {
    static auto* m = new std::map<NsId, std::shared_ptr<Netns>>;  // lives as long as the daemon
    return *m;
}

std::string key(const LockedConn& c) {
    return (c.v6 ? "c6 " : "c4 ") + c.out;
}

Result<NsId> ns_id(const LockedConn& c) {
    struct stat st {};
    int r = c.netns && *c.netns ? fstat(c.netns->get(), &st) : stat("/proc/self/ns/net", &st);
    if (r != 0) return errno_error("network lock: stat of a network namespace");
    return NsId{st.st_dev, st.st_ino};
}

Result<NsId> ns_id_of(const std::shared_ptr<const UniqueFd>& netns) {
    LockedConn c;
    c.netns = netns;
    return ns_id(c);
}

void delete_conn(Netns& ns, const LockedConn& c) {
    std::string set = c.v6 ? " c6 { " : " c4 { ";
    std::string t = "inet " + table_name(getpid());
    for (const std::string& e : {c.out, c.in})
        if (auto s = ns.nft.command("delete element " + t + set + e + " }"); !s)
            log_info("%s", s.error().what.c_str());
}

// The namespace's last connection is gone: so is its table.
void close_if_empty(const NsId& id) {
    auto it = locks().find(id);
    if (it == locks().end() || !it->second->held.empty()) return;
    it->second->nft.stop();
    if (it->second->wake) eventfd_write(it->second->wake.get(), 1);
    locks().erase(it);
}

// Is the connection's local address one of this thread's namespace's own?
bool address_is_local(const LockedConn& c) {
    UniqueFd s(socket(c.v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) return true;
    sockaddr_storage ss{};
    socklen_t len;
    if (c.v6) {
        auto& a = reinterpret_cast<sockaddr_in6&>(ss);
        a.sin6_family = AF_INET6;
        std::memcpy(&a.sin6_addr, c.local, 16);
        len = sizeof a;
    } else {
        auto& a = reinterpret_cast<sockaddr_in&>(ss);
        a.sin_family = AF_INET;
        std::memcpy(&a.sin_addr, c.local, 4);
        len = sizeof a;
    }
    return bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 || errno != EADDRNOTAVAIL;
}

// Watcher of one namespace's orphans, on a thread in that namespace: sweeps at
// start and at every address change, ends when no orphan is left.
void watch_orphans(std::shared_ptr<Netns> ns, NsId id) {
    UniqueFd nl;
    if (setns(ns->fd.get(), CLONE_NEWNET) == 0) {
        nl.reset(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
        sockaddr_nl sa{};
        sa.nl_family = AF_NETLINK;
        sa.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        if (nl && bind(nl.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) nl.reset();
    }
    if (!nl) log_info("network lock: cannot watch addresses: %s", strerror(errno));
    for (;;) {
        {
            std::lock_guard lock(g_mu);
            bool left = false;
            for (auto it = ns->held.begin(); it != ns->held.end();) {
                if (it->second.orphan && !address_is_local(it->second.conn)) {
                    delete_conn(*ns, it->second.conn);
                    it = ns->held.erase(it);
                    continue;
                }
                left |= it->second.orphan;
                ++it;
            }
            auto cur = locks().find(id);
            bool mine = cur != locks().end() && cur->second == ns;
            if (!left || !mine || !nl) {
                ns->watching = false;
                if (mine) close_if_empty(id);
                return;
            }
        }
        pollfd p[2] = {{nl.get(), POLLIN, 0}, {ns->wake.get(), POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) return;
        char buf[8192];
        while (recv(nl.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        eventfd_t v;
        if (p[1].revents) eventfd_read(ns->wake.get(), &v);
    }
}

void start_watch(const std::shared_ptr<Netns>& ns, const NsId& id) {
    if (ns->watching) {
        eventfd_write(ns->wake.get(), 1);
        return;
    }
    if (!ns->wake) ns->wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    ns->watching = true;
    std::thread(watch_orphans, ns, id).detach();
}

}  // namespace

LockedConn locked_conn(const image::InetSocketRecord& rec, std::shared_ptr<const UniqueFd> netns) {
    LockedConn c =
        make_conn(int(rec.family), rec.local_addr, rec.local_port, rec.peer_addr, rec.peer_port);
    c.netns = std::move(netns);
    return c;
}

std::vector<LockedConn> established_connections(pid_t pid) {
    std::set<uint64_t> inodes;
    std::string dir = strfmt("/proc/{}/fd", pid);
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            char link[64];
            ssize_t n = readlink((dir + "/" + e->d_name).c_str(), link, sizeof link - 1);
            if (n <= 8 || std::strncmp(link, "socket:[", 8) != 0) continue;
            uint64_t ino = 0;
            std::from_chars(link + 8, link + n, ino);
            inodes.insert(ino);
        }
        closedir(d);
    }
    std::vector<LockedConn> out;
    if (inodes.empty()) return out;
    auto ns = open_fd(strfmt("/proc/{}/ns/net", pid), O_RDONLY | O_CLOEXEC);
    if (!ns) return out;
    auto netns = std::make_shared<const UniqueFd>(std::move(*ns));
    for (bool v6 : {false, true}) {
        auto text = read_file(strfmt("/proc/{}/net/{}", pid, v6 ? "tcp6" : "tcp"));
        if (!text) continue;
        std::istringstream rows(*text);
        std::string row;
        std::getline(rows, row);  // header
        while (std::getline(rows, row)) {
            std::istringstream f(row);
            std::string sl, local, peer, st, q, tr, re, uid, to;
            uint64_t ino = 0;
            if (!(f >> sl >> local >> peer >> st >> q >> tr >> re >> uid >> to >> ino)) continue;
            if (st != "01" || !inodes.count(ino)) continue;
            uint8_t la[16], pa[16];
            uint16_t lp, pp;
            if (!parse_endpoint(local, v6, la, lp) || !parse_endpoint(peer, v6, pa, pp)) continue;
            out.push_back(make_conn(v6 ? AF_INET6 : AF_INET, la, lp, pa, pp));
            out.back().netns = netns;
        }
    }
    return out;
}

Status netlock_add(const std::vector<LockedConn>& conns) {
    std::lock_guard lock(g_mu);
    std::string t = "inet " + table_name(getpid());
    for (const auto& c : conns) {
        auto id = ns_id(c);
        if (!id) return std::unexpected(id.error());
        auto& ns = locks()[*id];
        if (!ns) ns = std::make_shared<Netns>();
        if (!ns->nft.started()) {
            // Always an fd: a daemon thread may be in another namespace (restorer/netns.h).
            ns->fd.reset(c.netns && *c.netns ? fcntl(c.netns->get(), F_DUPFD_CLOEXEC, 0)
                                             : open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
            if (!ns->fd) {
                locks().erase(*id);
                return errno_error("network lock: a network namespace");
            }
            if (auto s = ns->nft.start(ns->fd.get()); !s) {
                locks().erase(*id);
                return s;
            }
        }
        if (auto s = ns->nft.command("add element " + t + (c.v6 ? " c6 { " : " c4 { ") + c.out +
                                     ", " + c.in + " }");
            !s) {
            close_if_empty(*id);
            return s;
        }
        ns->held[key(c)] = {c, false};
    }
    return {};
}

void netlock_remove(const std::vector<LockedConn>& conns) {
    std::lock_guard lock(g_mu);
    for (const auto& c : conns) {
        auto id = ns_id(c);
        if (!id) continue;
        auto it = locks().find(*id);
        if (it == locks().end()) continue;
        if (it->second->held.erase(key(c))) delete_conn(*it->second, c);
        close_if_empty(*id);
    }
}

void netlock_release(const std::vector<LockedConn>& conns,
                     const std::shared_ptr<const UniqueFd>& netns, bool restored) {
    std::lock_guard lock(g_mu);
    auto here = ns_id_of(netns);
    std::vector<NsId> ids;
    for (const auto& [id, ns] : locks()) ids.push_back(id);
    for (const auto& id : ids) {
        auto ns = locks()[id];
        bool orphans = false;
        for (const auto& c : conns) {
            auto it = ns->held.find(key(c));
            if (it == ns->held.end()) continue;
            if (restored && here && id != *here) {
                it->second.orphan = orphans = true;
                continue;
            }
            delete_conn(*ns, it->second.conn);
            ns->held.erase(it);
        }
        if (orphans) start_watch(ns, id);
        close_if_empty(id);
    }
}

Status netlock_covers(int sock, const image::InetSocketRecord& rec) {
    LockedConn c = locked_conn(rec);
    std::string t = table_name(getppid());
    std::string set = c.v6 ? "c6" : "c4";
    std::string elem = "{ " + c.out + " }";
    char a0[] = "nft";
    std::string a1 = "get", a2 = "element", a3 = "inet";
    char* argv[] = {a0,       a1.data(),  a2.data(),   a3.data(),
                    t.data(), set.data(), elem.data(), nullptr};
    // The lock is in the socket's namespace.
    UniqueFd netns(ioctl(sock, SIOCGSKNS));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    auto pid = netns ? spawn_in(netns.get(), argv, &fa) : Result<pid_t>(make_error(errno, ""));
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    if (pid) own_children::waitpid(*pid, &st, 0);
    if (!pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return make_error(EBUSY, strfmt("the connection {} is not under the daemon's network "
                                        "lock (opened during the checkpoint, or the caller "
                                        "is not root); retry",
                                        c.out));
    return {};
}

}  // namespace crfs::state
