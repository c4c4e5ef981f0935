// System V IPC (issue 11): the detect of semaphore sets and message queues
// the task used, which are saved and restored (state/sysv_msg.cc,
// state/sysv_sem.cc: their reasons are called from here), and the table
// reader they and shared memory (state/sysv_shm.cc) share. POSIX message
// queues are fds of their own kind (state/mqueue.cc).
//   msg        a queue whose last msgsnd or msgrcv was the task's (lspid, lrpid
//              of /proc/sysvipc/msg);
//   sem        a set whose last semop on some semaphore was the task's
//              (semctl GETPID, as the caller: sets it cannot read are not seen).
// Both tables are the daemon's IPC namespace's: a task in another one is a
// reason of its own (what it uses cannot be seen).
#include <sys/sem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/kind.h"
#include "state/sysv_msg.h"
#include "state/sysv_sem.h"
#include "state/sysv_shm.h"
#include "state/sysv_tables.h"

namespace crfs::state {

// The rows of /proc/sysvipc/<name> after its header, split on blanks.
std::vector<std::vector<long long>> sysvipc_table(const char* name) {
    std::vector<std::vector<long long>> out;
    auto text = read_file(strfmt("/proc/sysvipc/{}", name), 16 << 20);
    if (!text) return out;
    std::istringstream in(*text);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
        std::istringstream l(line);
        std::vector<long long> row;
        long long v;
        while (l >> v) row.push_back(v);
        if (!row.empty()) out.push_back(std::move(row));
    }
    return out;
}

const std::vector<SysvTables::Row>& SysvTables::msg() {
    std::call_once(msg_once_, [this] {
        msg_ = sysvipc_table("msg");
        ++reads_;
    });
    return msg_;
}

const std::vector<SysvTables::SemSet>& SysvTables::sem() {
    std::call_once(sem_once_, [this] {
        for (auto& r : sysvipc_table("sem")) {
            if (r.size() < 4) continue;
            SemSet s;
            for (long long i = 0; i < r[3] && i < image::kMaxSysvSemNsems; ++i)
                s.last.push_back(pid_t(semctl(int(r[1]), int(i), GETPID)));
            s.row = std::move(r);
            sem_.push_back(std::move(s));
        }
        ++reads_;
    });
    return sem_;
}

Status detect_ipc(TaskView& t, Reasons& out) {
    // Ours, once per process (crfsd and its workers stay in theirs).
    static const std::optional<ino_t> mine = []() -> std::optional<ino_t> {
        struct stat st;
        if (::stat("/proc/self/ns/ipc", &st) != 0) return std::nullopt;
        return st.st_ino;
    }();
    if (!mine) return {};  // no namespaces: one table
    auto theirs = t.stat_of("ns/ipc");
    if (!theirs) return {};
    if (*mine != (*theirs)->st_ino) {
        out.push_back(
            "sysvipc: the task is in another IPC namespace, whose System V objects "
            "crfs cannot see;" +
            std::string(kNotYet));
        return {};
    }
    sysv_msg_reasons(t, out);  // sem: state/sysv_msg.cc (semaphore sets have none: sysv_sem.h)
    return {};
}

}  // namespace crfs::state
