#include "state/holders.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "common/io.h"
#include "state/memfd.h"
#include "state/tree_shmem.h"

namespace crfs::state {
namespace {

std::vector<int> numeric_entries(const std::string& dir, bool* ok) {
    std::vector<int> out;
    DIR* d = opendir(dir.c_str());
    *ok = d != nullptr;
    if (!d) return out;
    while (dirent* e = readdir(d)) {
        int n = 0;
        auto [p, ec] = std::from_chars(e->d_name, e->d_name + std::strlen(e->d_name), n);
        if (ec == std::errc() && *p == '\0') out.push_back(n);
    }
    closedir(d);
    return out;
}

}  // namespace

void HolderScan::load() {
    loaded = true;
    bool ok = false;
    pid_t self = getpid();
    for (int pid : numeric_entries("/proc", &ok)) {
        if (pid == self) continue;
        std::string dir = "/proc/" + std::to_string(pid) + "/fd";
        bool readable = false;
        auto fds = numeric_entries(dir, &readable);
        if (!readable) {
            if (errno != ENOENT) ++unseen;  // ENOENT: it exited meanwhile
            continue;
        }
        std::sort(fds.begin(), fds.end());
        for (int fd : fds) {
            char buf[4097];
            std::string at = dir + "/" + std::to_string(fd);
            ssize_t n = readlink(at.c_str(), buf, sizeof buf);
            if (n <= 0 || n == ssize_t(sizeof buf)) continue;
            by_link[std::string(buf, size_t(n))].push_back({pid, fd});
        }
    }
}

void HolderScan::load_maps() {
    maps_loaded = true;
    bool ok = false;
    pid_t self = getpid();
    auto pids = numeric_entries("/proc", &ok);
    std::sort(pids.begin(), pids.end());
    auto add = [](std::vector<pid_t>& v, pid_t p) {
        if (v.empty() || v.back() != p) v.push_back(p);
    };
    for (pid_t p : pids) {
        if (p == self) continue;
        for (const MapsEntry& m : maps_of(p)) {  // empty: gone, or not the caller's to read
            if (ShmemKey k; tree_shmem_key(m, k))
                add(shmem_mappers[{k.dev, k.ino}], p);
            else if (is_memfd_path(m.path))
                add(memfd_mappers[m.ino], p);
        }
    }
}

const HolderScan& Holders::scan() {
    if (!scan_->loaded) scan_->load();
    return *scan_;
}

std::vector<pid_t> Holders::of(const std::string& link) {
    std::vector<pid_t> out;
    auto it = scan().by_link.find(link);
    if (it != scan().by_link.end())
        for (const HeldFd& h : it->second)
            if (h.pid != task_ && (out.empty() || out.back() != h.pid)) out.push_back(h.pid);
    return out;
}

int Holders::unseen() {
    return scan().unseen;
}

std::string Holders::names(const std::vector<pid_t>& pids) {
    std::string s = pids.size() == 1 ? "pid " : "pids ";
    for (size_t i = 0; i < pids.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(pids[i]);
        auto comm = read_file("/proc/" + std::to_string(pids[i]) + "/comm", 64);
        if (comm && !comm->empty()) {
            if (comm->back() == '\n') comm->pop_back();
            s += " (" + *comm + ")";
        }
    }
    return s;
}

std::map<std::string, std::vector<HeldFd>> Holders::fds_of(const std::set<std::string>& links,
                                                           int* unseen) {
    std::map<std::string, std::vector<HeldFd>> out;
    for (const std::string& link : links) {
        auto it = scan().by_link.find(link);
        if (it == scan().by_link.end()) continue;
        for (const HeldFd& h : it->second)
            if (h.pid != task_) out[link].push_back(h);
    }
    if (unseen) *unseen = scan().unseen;
    return out;
}

}  // namespace crfs::state
