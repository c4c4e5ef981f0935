// The System V tables a checkpoint or a `reason` read looks at, read once for
// it (sysv, sem; issue 10 perf): /proc/sysvipc/msg, and /proc/sysvipc/sem with
// the last pid of each semaphore (semctl GETPID, as the caller). A tree's
// members share the root's (TaskView::sysv_tables, set by state/tree.cc as the
// kcmp answers are), so a tree of N processes reads each table once, not 3N
// times (each member's detect and dump read them, each a whole table).
//
// Read at the first ask, while the task or tree is frozen: its members cannot
// change the rows that name them (lspid, lrpid, a semaphore's sempid). A
// process outside may, at any instant, as before; the queue's or set's own
// contents are read when it is dumped (IPC_STAT, MSG_COPY, GETALL).
//
// Thread-safe: a tree's members dump on their tracers' threads, outside the
// checkpoint's Serial (checkpoint/checkpoint.cc).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace crfs::state {

class SysvTables {
  public:
    using Row = std::vector<long long>;  // a row's numbers, in the table's order
    struct SemSet {
        Row row;                  // key semid perms nsems uid gid cuid cgid otime ctime
        std::vector<pid_t> last;  // each semaphore's sempid (GETPID), up to kMaxSysvSemNsems
    };
    // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
    const std::vector<Row>& msg();
    const std::vector<SemSet>& sem();
    // Tables read so far (tests: a tree's checkpoint reads each once).
    uint64_t reads() const { return reads_; }

  private:
    std::once_flag msg_once_, sem_once_;
    std::vector<Row> msg_;
    std::vector<SemSet> sem_;
    std::atomic<uint64_t> reads_{0};
};

}  // namespace crfs::state
