// Parsers for the /proc files crfs reads about a task. Parsing is split from
// reading so the parsers are unit-tested on fixed text; readers map a task
// that is gone (ENOENT from /proc) to ESRCH.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace crfs {

// The fields of /proc/<pid>/stat that crfs uses.
struct ProcStat {
    pid_t pid = 0;
    std::string comm;
    char state = '?';  // R S D T t Z X I ...
    pid_t ppid = 0;
    pid_t pgrp = 0;
    pid_t session = 0;
    unsigned flags = 0;  // PF_* flags
    long num_threads = 0;
    uint64_t starttime = 0;  // clock ticks since boot: with pid, names a task uniquely
};

// The fields of /proc/<pid>/status that crfs uses.
struct ProcStatus {
    pid_t tgid = 0;
    pid_t tracer_pid = 0;
    uid_t uid[4] = {};  // real, effective, saved, filesystem
    gid_t gid[4] = {};
    std::vector<gid_t> groups;  // supplementary groups
    int threads = 0;
    uint64_t cap_eff = 0;
};

inline constexpr unsigned kPfKthread = 0x00200000;  // PF_KTHREAD in include/linux/sched.h

Result<ProcStat> parse_stat(std::string_view text);
Result<ProcStatus> parse_status(std::string_view text);

Result<ProcStat> read_stat(pid_t pid);
Result<ProcStatus> read_status(pid_t pid);

// A socket as /proc/<pid>/net/* describes it.
struct SocketInfo {
    uint64_t inode = 0;
    std::string description;  // "TCP socket in state ESTABLISHED", "unix stream socket ..."
};

// Parsers for the tables in /proc/<pid>/net/. `family` names the table in
// descriptions ("TCP", "TCPv6", "UDP", ...).
std::vector<SocketInfo> parse_net_inet(std::string_view text, std::string_view family, bool tcp);
std::vector<SocketInfo> parse_net_unix(std::string_view text);
std::vector<SocketInfo> parse_net_simple(std::string_view text, std::string_view family,
                                         size_t inode_column);

// Name of a TCP state number as in include/net/tcp_states.h ("ESTABLISHED").
std::string_view tcp_state_name(unsigned state);

}  // namespace crfs
