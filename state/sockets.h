// Descriptions of the sockets of one task's network namespace, from the
// /proc/<pid>/net tables (read on first use). No socket kind is captured yet.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace crfs::state {

class SocketTable {
  public:
    explicit SocketTable(pid_t pid) : pid_(pid) {}
    // "TCP socket in state ESTABLISHED", or nullopt when no table has it.
    std::optional<std::string> find(uint64_t inode);

  private:
    void load();
    pid_t pid_;
    bool loaded_ = false;
    std::map<uint64_t, std::string> by_inode_;
};

}  // namespace crfs::state
