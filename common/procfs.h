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
    int tty_nr = 0;      // 7: the controlling terminal, new_encode_dev(); 0: none
    pid_t tpgid = -1;    // 8: its foreground process group; -1: no terminal
    unsigned flags = 0;  // PF_* flags
    long num_threads = 0;
    int nice = 0;            // 19
    uint64_t starttime = 0;  // 22: clock ticks since boot; with pid, names a task uniquely
    uint64_t start_code = 0, end_code = 0, start_stack = 0;  // 26 27 28
    unsigned policy = 0;  // 41: SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6
    uint64_t start_data = 0, end_data = 0, start_brk = 0;             // 45 46 47
    uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;  // 48..51
    int exit_signal = 0;     // 38: sent to the parent at exit, -1 for a thread (life)
    int processor = -1;      // 39: the CPU it last ran on
    uint64_t exit_code = 0;  // 52: the wait status of a zombie (life)
};

// The fields of /proc/<pid>/status that crfs uses.
struct ProcStatus {
    char state = '?';  // State: R S D T t Z X I ..., as stat's
    pid_t tgid = 0;
    pid_t tracer_pid = 0;
    uid_t uid[4] = {};  // real, effective, saved, filesystem
    gid_t gid[4] = {};
    std::vector<gid_t> groups;  // supplementary groups
    int threads = 0;
    uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
    uint32_t no_new_privs = 0;
    uint32_t umask = 022;
    bool has_umask = false;        // Umask: since Linux 4.7
    uint64_t rss_bytes = 0;        // RssAnon + RssShmem + VmSwap: a size hint for a page buffer
    unsigned seccomp = 0;          // 0 none, 1 strict, 2 filter
    unsigned seccomp_filters = 0;  // Seccomp_filters (Linux 5.9)
    uint64_t vm_lck_kb = 0;        // VmLck: mlock()ed memory
    int thp_enabled = -1;          // THP_enabled (PR_SET_THP_DISABLE clears it); -1 absent
    std::string cpus_allowed;      // Cpus_allowed_list, as the kernel prints it
    // SigPnd (the thread's own pending), SigIgn, SigCgt: bit i is signal i + 1.
    uint64_t sig_pnd = 0, sig_ign = 0, sig_cgt = 0;
    int sig_sets = 0;  // how many of those three the text had
};

inline constexpr unsigned kPfKthread = 0x00200000;  // PF_KTHREAD in include/linux/sched.h

// Fields past 22 are 0 when the kernel does not print them.
Result<ProcStat> parse_stat(std::string_view text);
Result<ProcStatus> parse_status(std::string_view text);

Result<ProcStat> read_stat(pid_t pid);
Result<ProcStatus> read_status(pid_t pid);

// The anonymous memory of a process in bytes, from /proc/<pid>/statm
// (resident less shared: its resident pages less those of files and shmem),
// the same counters status's RssAnon adds up; a read of ~12 us where status
// is ~35 us (perf: a size hint for each member of a tree before its freeze).
Result<uint64_t> parse_statm_anon(std::string_view text);
Result<uint64_t> read_anon_bytes(pid_t pid);

// Whether `pid` is `root` or a descendant of it, by its parents' chain in
// /proc (a pid that ended is below nothing).
bool pid_at_or_below(pid_t pid, pid_t root);

// One VMA of /proc/<pid>/maps, plus the details smaps adds.
struct MapsEntry {
    uint64_t start = 0, end = 0, pgoff = 0;  // pgoff in pages
    uint32_t dev_major = 0, dev_minor = 0;
    uint64_t ino = 0;
    char perms[5] = "----";     // rwxp / rwxs
    bool counted = false;       // read from smaps (its Rss line): the counts below hold
    std::string path;           // "" for anonymous, "[heap]", "/usr/lib/... (deleted)"
    uint64_t vm_flags = 0;      // smaps VmFlags: bit i = image::kVmFlagNames[i]
    std::string unknown_flags;  // VmFlags names not in kVmFlagNames, space-separated
    uint64_t shared_kb = 0;     // smaps Shared_Clean + Shared_Dirty: pages others map too
    uint64_t resident_kb = 0;   // smaps Rss + Swap: pages in the page tables
    uint64_t anon_kb = 0;       // smaps Anonymous: anonymous pages mapped (a file's private copies)
    uint64_t swap_kb = 0;       // smaps Swap
};

// The bit of the smaps VmFlags name `name` in MapsEntry::vm_flags, 0 if it has none.
uint64_t vm_flag_mask(std::string_view name);

// Parses maps or smaps text (of smaps, VmFlags, Shared_*, Rss, Swap and Anonymous are kept).
Result<std::vector<MapsEntry>> parse_maps(std::string_view text);

// parse_maps in pieces: feed() takes whole lines in order (only the last
// piece may end without '\n'); finish() answers what parse_maps answers for
// the pieces put together.
class MapsParser {
  public:
    void feed(std::string_view lines);
    Result<std::vector<MapsEntry>> finish() &&;

  private:
    void parse_line(std::string_view line);
    std::vector<MapsEntry> out_;
    size_t lineno_ = 0;
    Status err_;
};

// The maps or smaps file at `path` read and parsed 256 KiB at a time (never
// the whole text at once; a seq_file read gives one page of records, ~5
// areas of smaps): past the first piece the reads go on on a thread of
// their own while this one parses. EFBIG past `max` bytes, EINVAL for a line
// of 1 MiB or more, parse errors name `path`.
Result<std::vector<MapsEntry>> read_maps(const std::string& path, size_t max);

// The fields of /proc/<pid>/fdinfo/<fd> that crfs uses.
struct FdInfo {
    uint64_t pos = 0;
    uint32_t flags = 0;  // octal in the file
};
Result<FdInfo> parse_fdinfo(std::string_view text);

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
