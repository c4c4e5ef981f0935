// Who else holds a kernel object: the processes, other than the task being
// checkpointed, whose fd tables name a pipe or socket inode ("pipe:[123]").
// Read once per detect from /proc/*/fd with the caller's rights: a process
// whose fds the caller cannot read is counted, not seen (docs/state.md says
// what that means for each kind).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace crfs::state {

// One fd of another process.
struct HeldFd {
    pid_t pid;
    int fd;
};

class Holders {
  public:
    explicit Holders(pid_t task) : task_(task) {}
    // Processes outside the task (and outside the daemon) holding `link`
    // ("pipe:[N]", "socket:[N]" from one scan; a path, such as a FIFO's, from
    // a scan of its own).
    std::vector<pid_t> of(const std::string& link);
    // Every fd of the processes outside the task whose link is one of
    // `links` (any kind of file: the same open file description has the same
    // link for one reader), from one scan of its own; by link, sorted by pid
    // and fd. `unseen`: the processes whose fd table the caller could not read.
    std::map<std::string, std::vector<HeldFd>> fds_of(const std::set<std::string>& links,
                                                      int* unseen = nullptr);
    // Processes whose fd table the caller could not read.
    int unseen();
    // "pid 12 (cat)" or "pids 12 (cat), 13 (sh)".
    static std::string names(const std::vector<pid_t>& pids);

  private:
    void load(const std::string* path = nullptr);
    // Calls `found` for each fd of each process outside the task whose link
    // `want`s; returns how many processes' fds it could not read.
    int scan(const std::function<bool(const std::string&)>& want,
             const std::function<void(pid_t, int, std::string)>& found);
    pid_t task_;
    bool loaded_ = false;
    int unseen_ = 0;
    std::map<std::string, std::vector<pid_t>> by_link_;
};

}  // namespace crfs::state
