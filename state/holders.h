// Who else holds a kernel object or a file: the processes, other than the
// task being checkpointed, whose fd tables name a pipe or socket inode
// ("pipe:[123]") or a path. Read once per `reason` read from /proc/*/fd with
// the caller's rights: a process whose fds the caller cannot read is
// counted, not seen (docs/state.md says what that means for each kind).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace crfs::state {

// One fd of another process.
struct HeldFd {
    pid_t pid;
    int fd;
};

// Every fd link of every process the caller can read (but the daemon), from
// one walk of /proc/*/fd made on first use: one per `reason` read, shared by
// the members of a tree (TaskView::holder_scan) and by every kind that asks.
struct HolderScan {
    bool loaded = false;
    int unseen = 0;  // processes whose fd table the caller could not read
    std::map<std::string, std::vector<HeldFd>> by_link;  // sorted by pid and fd
    void load();
    // The processes (but this one) mapping each shared anonymous memory
    // object, by its (dev, ino), and each memfd, by its inode (as
    // /proc/<pid>/maps names one: "/memfd:NAME (deleted)"), sorted: from one
    // read of every /proc/<pid>/maps the caller can read, made on first use
    // (`load_maps`) by state/tree_shmem.cc and state/memfd.cc (a tree's
    // members each asked all of them again: n reads of every process's maps,
    // per object).
    bool maps_loaded = false;
    std::map<std::pair<uint64_t, uint64_t>, std::vector<pid_t>> shmem_mappers;
    std::map<uint64_t, std::vector<pid_t>> memfd_mappers;
    void load_maps();
};

class Holders {
  public:
    explicit Holders(pid_t task, std::shared_ptr<HolderScan> scan = nullptr)
        : task_(task), scan_(scan ? std::move(scan) : std::make_shared<HolderScan>()) {}
    // Processes outside the task (and outside the daemon) holding `link`
    // ("pipe:[N]", "socket:[N]", a path such as a FIFO's).
    std::vector<pid_t> of(const std::string& link);
    // Every fd of the processes outside the task whose link is one of
    // `links` (any kind of file: the same open file description has the same
    // link for one reader); by link, sorted by pid and fd. `unseen`: the
    // processes whose fd table the caller could not read.
    std::map<std::string, std::vector<HeldFd>> fds_of(const std::set<std::string>& links,
                                                      int* unseen = nullptr);
    // Processes whose fd table the caller could not read.
    int unseen();
    // "pid 12 (cat)" or "pids 12 (cat), 13 (sh)".
    static std::string names(const std::vector<pid_t>& pids);

  private:
    const HolderScan& scan();
    pid_t task_;
    std::shared_ptr<HolderScan> scan_;
};

}  // namespace crfs::state
