// System V semaphore sets the task operated on (state/sysv_sem.h).
#include "state/sysv_sem.h"

#include <sys/sem.h>

#include <algorithm>
#include <cstring>

#include "common/strfmt.h"
#include "state/check.h"
#include "state/sysv_shm.h"
#include "state/sysv_tables.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

using image::SysvSemRecord;

// semctl's fourth argument (the caller defines it: sem.h).
union Semun {
    int val;
    struct semid_ds* buf;
    unsigned short* array;
};

// The sets some semaphore of which `pid` operated on last: /proc/sysvipc/sem
// rows (key semid perms nsems ...), GETPID as the caller, as read once for
// this checkpoint (`tables`). sysvtree: in an image of several processes
// (`inside`, image order) a set two of them operated on is the first one's.
std::vector<SysvTables::Row> used_by(pid_t pid, const std::vector<pid_t>& inside,
                                     SysvTables& tables) {
    std::vector<SysvTables::Row> out;
    for (const auto& s : tables.sem()) {
        auto user = [&](pid_t p) {
            return std::find(s.last.begin(), s.last.end(), p) != s.last.end();
        };
        if (user(pid) && sysv_first_user(pid, inside, user)) out.push_back(s.row);
    }
    return out;
}

std::unexpected<Error> bad(std::string what) {
    return std::unexpected(check::bad(std::move(what)).error());
}

// A sysv-sem payload parsed: its record and values.
struct Parsed {
    SysvSemRecord r{};
    std::vector<unsigned short> values;
};

Result<Parsed> parse(const std::string& p) {
    Parsed out;
    if (p.size() < sizeof out.r) return bad("sysv-sem: a short record");
    std::memcpy(&out.r, p.data(), sizeof out.r);
    const SysvSemRecord& r = out.r;
    std::string at = strfmt("sysv-sem {}", r.semid);
    if (r.nsems == 0 || r.nsems > image::kMaxSysvSemNsems ||
        p.size() != sizeof r + uint64_t(r.nsems) * 2)
        return bad(strfmt("{}: {} semaphores in a record of {} bytes", at, r.nsems, p.size()));
    if (r.semid < 0) return bad(at + ": negative id");
    if (r.mode & ~0777u) return bad(strfmt("{}: mode {:o}", at, r.mode));
    out.values.resize(r.nsems);
    std::memcpy(out.values.data(), p.data() + sizeof r, r.nsems * 2);
    for (uint32_t i = 0; i < r.nsems; ++i)
        if (out.values[i] > image::kMaxSysvSemValue)
            return bad(strfmt("{}: semaphore {}: value {}", at, i, out.values[i]));
    return out;
}

const SysvKind kSem = {
    "System V semaphore set",
    "sem_next_id",
    [](int id) {
        struct semid_ds ds {};
        Semun arg{.buf = &ds};
        return semctl(id, 0, IPC_STAT, arg) == 0 || errno == EACCES;
    },
    [] { return semget(IPC_PRIVATE, 1, IPC_CREAT | 0600); },
    [](int id) { semctl(id, 0, IPC_RMID); },
};

}  // namespace

// --- dump --------------------------------------------------------------------

Result<std::vector<std::string>> dump_sysv_sem(pid_t pid, const std::vector<pid_t>& image_pids,
                                               SysvTables& tables) {
    std::vector<std::string> out;
    for (const auto& row : used_by(pid, image_pids, tables)) {
        int id = int(row[1]);
        std::string set = strfmt("System V semaphore set {} (key 0x{:x})", id, uint32_t(row[0]));
        struct semid_ds ds {};
        Semun arg{.buf = &ds};
        if (semctl(id, 0, IPC_STAT, arg) != 0) return errno_error("IPC_STAT of " + set);
        if (ds.sem_nsems == 0 || ds.sem_nsems > image::kMaxSysvSemNsems)
            return make_error(EFBIG, strfmt("{}: {} semaphores", set, ds.sem_nsems));
        SysvSemRecord r{};
        r.key = ds.sem_perm.__key;
        r.semid = id;
        r.mode = ds.sem_perm.mode & 0777;
        r.uid = ds.sem_perm.uid;
        r.gid = ds.sem_perm.gid;
        r.cuid = ds.sem_perm.cuid;
        r.cgid = ds.sem_perm.cgid;
        r.nsems = uint32_t(ds.sem_nsems);
        std::vector<unsigned short> values(r.nsems);
        Semun all{.array = values.data()};
        if (semctl(id, 0, GETALL, all) != 0) return errno_error("GETALL of " + set);
        std::string p(reinterpret_cast<const char*>(&r), sizeof r);
        p.append(reinterpret_cast<const char*>(values.data()), values.size() * 2);
        out.push_back(std::move(p));
    }
    return out;
}

// --- check (a hostile image) ---------------------------------------------------

Status check_sysv_sem(const DecodedImage& img) {
    std::vector<std::pair<int32_t, int32_t>> id_keys;
    for (const auto& p : img.sysv_sem) {
        auto q = parse(p);
        if (!q) return std::unexpected(q.error());
        id_keys.emplace_back(q->r.semid, q->r.key);
    }
    return sysv_check_unique("sysv-sem", id_keys);
}

// --- restore -------------------------------------------------------------------

namespace {

// Set `q`, made by the current (per-thread) credentials: its creator's.
Status make_set(Parsed& q, bool chosen, SysvMade& made) {
    const SysvSemRecord& r = q.r;
    std::string what = strfmt("System V semaphore set {} (key 0x{:x})", r.semid, uint32_t(r.key));
    int id = semget(r.key, int(r.nsems), IPC_CREAT | IPC_EXCL | int(r.mode | 0600));
    if (auto s = sysv_created(kSem, what, id, r.semid, chosen, made); !s) return s;
    struct semid_ds ds {};
    Semun arg{.buf = &ds};
    if (semctl(id, 0, IPC_STAT, arg) != 0) return errno_error("IPC_STAT of " + what);
    if (auto s = sysv_same_creator(what, ds.sem_perm.cuid, ds.sem_perm.cgid, r.cuid, r.cgid); !s)
        return s;
    Semun all{.array = q.values.data()};
    if (semctl(id, 0, SETALL, all) != 0) return errno_error("giving " + what + " its values");
    ds.sem_perm.uid = r.uid;
    ds.sem_perm.gid = r.gid;
    ds.sem_perm.mode = r.mode;
    if (semctl(id, 0, IPC_SET, arg) != 0)
        return errno_error(
            strfmt("giving {} owner {}:{} and mode {:o}", what, r.uid, r.gid, r.mode));
    return {};
}

}  // namespace

Status sysv_sem_restore(const DecodedImage& img, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made) {
    return sysv_restore_each(
        kSem, "sysv-sem", img.sysv_sem, img.task.pid, writer, tree, parse,
        [](const auto& q) { return q.r.semid; },
        [&](auto& q, bool chosen) { return make_set(q, chosen, made); });
}

}  // namespace crfs::state
