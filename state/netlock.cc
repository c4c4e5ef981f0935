#include "state/netlock.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>

#include "common/io.h"
#include "common/log.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"

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

// The `nft -ie` child that owns the table: commands in, echoes out.
class Holder {
  public:
    Status run(const std::string& cmd) {
        std::lock_guard lock(mu_);
        if (!started_)
            if (auto s = start(); !s) return s;
        return command(cmd);
    }

  private:
    Status start() {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
            return errno_error("network lock: pipe");
        UniqueFd in_r(in[0]), out_w(out[1]);
        in_.reset(in[1]);
        out_.reset(out[0]);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
        posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
        posix_spawn_file_actions_adddup2(&fa, out_w.get(), 2);
        char a0[] = "nft", a1[] = "-ie";
        char* argv[] = {a0, a1, nullptr};
        pid_t pid = 0;
        int err = posix_spawn(&pid, kNft, &fa, nullptr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (err) return sys_error(err, strfmt("network lock: starting {}", kNft));
        started_ = true;
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

    void stop() {
        in_.reset();
        out_.reset();
        started_ = false;
        buf_.clear();
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

    std::mutex mu_;  // one command at a time; guards everything below
    bool started_ = false;
    UniqueFd in_, out_;
    std::string buf_;
    std::string table_;  // "inet crfs_<tgid>"
    unsigned seq_ = 0;   // the last sync element
};

Holder& holder() {
    static Holder* h = new Holder;  // lives as long as the daemon (its pipe is the lock)
    return *h;
}

std::string elements(const std::vector<LockedConn>& conns, bool v6) {
    std::string out;
    for (const auto& c : conns)
        if (c.v6 == v6) out += (out.empty() ? "" : ", ") + c.out + ", " + c.in;
    return out;
}

}  // namespace

LockedConn locked_conn(const image::InetSocketRecord& rec) {
    return make_conn(int(rec.family), rec.local_addr, rec.local_port, rec.peer_addr, rec.peer_port);
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
        }
    }
    return out;
}

Status netlock_add(const std::vector<LockedConn>& conns) {
    std::string t = table_name(getpid());
    for (bool v6 : {false, true}) {
        std::string e = elements(conns, v6);
        if (e.empty()) continue;
        if (auto s = holder().run("add element inet " + t + (v6 ? " c6 { " : " c4 { ") + e + " }");
            !s)
            return s;
    }
    return {};
}

void netlock_remove(const std::vector<LockedConn>& conns) {
    std::string t = table_name(getpid());
    for (const auto& c : conns)
        for (const std::string& e : {c.out, c.in})
            if (auto s = holder().run("delete element inet " + t + (c.v6 ? " c6 { " : " c4 { ") +
                                      e + " }");
                !s)
                log_info("%s", s.error().what.c_str());
}

Status netlock_covers(const image::InetSocketRecord& rec) {
    LockedConn c = locked_conn(rec);
    std::string t = table_name(getppid());
    std::string set = c.v6 ? "c6" : "c4";
    std::string elem = "{ " + c.out + " }";
    char a0[] = "nft";
    std::string a1 = "get", a2 = "element", a3 = "inet";
    char* argv[] = {a0,       a1.data(),  a2.data(),   a3.data(),
                    t.data(), set.data(), elem.data(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    int err = posix_spawn(&pid, kNft, &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    if (!err)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
    if (err || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return make_error(EBUSY, strfmt("the connection {} is not under the daemon's network "
                                        "lock (opened during the checkpoint, or the caller "
                                        "is not root); retry",
                                        c.out));
    return {};
}

}  // namespace crfs::state
