#include "state/holders.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "common/io.h"

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

bool kernel_object(std::string_view link) {
    return link.starts_with("pipe:[") || link.starts_with("socket:[");
}

}  // namespace

std::vector<pid_t> Holders::of(const std::string& link) {
    if (!kernel_object(link)) {
        Holders one(task_);
        one.load(&link);
        return one.by_link_[link];
    }
    if (!loaded_) load();
    auto it = by_link_.find(link);
    return it == by_link_.end() ? std::vector<pid_t>{} : it->second;
}

int Holders::unseen() {
    if (!loaded_) load();
    return unseen_;
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

int Holders::scan(const std::function<bool(const std::string&)>& want,
                  const std::function<void(pid_t, int, std::string)>& found) {
    bool ok = false;
    pid_t self = getpid();
    int unseen = 0;
    for (int pid : numeric_entries("/proc", &ok)) {
        if (pid == task_ || pid == self) continue;
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
            std::string link(buf, size_t(n));
            if (want(link)) found(pid, fd, std::move(link));
        }
    }
    return unseen;
}

void Holders::load(const std::string* path) {
    loaded_ = true;
    unseen_ =
        scan([&](const std::string& link) { return path ? link == *path : kernel_object(link); },
             [&](pid_t pid, int, std::string link) {
                 auto& v = by_link_[std::move(link)];
                 if (v.empty() || v.back() != pid) v.push_back(pid);
             });
}

std::map<std::string, std::vector<HeldFd>> Holders::fds_of(const std::set<std::string>& links,
                                                           int* unseen) {
    std::map<std::string, std::vector<HeldFd>> out;
    int n = 0;
    if (!links.empty())
        n = scan([&](const std::string& link) { return links.count(link) != 0; },
                 [&](pid_t pid, int fd, std::string link) {
                     out[std::move(link)].push_back({pid, fd});
                 });
    if (unseen) *unseen = n;
    return out;
}

}  // namespace crfs::state
