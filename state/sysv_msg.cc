// System V message queues the task used (state/sysv_msg.h).
#include "state/sysv_msg.h"

#include <sys/msg.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/strfmt.h"
#include "state/check.h"
#include "state/sysv_shm.h"
#include "state/sysv_tables.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

using image::SysvMsgRecord;

// The queues whose last msgsnd or msgrcv was `pid`'s: /proc/sysvipc/msg rows
// (key msqid perms cbytes qnum lspid lrpid ...). sysvtree: in an image of
// several processes (`inside`, image order) a queue two of them used is the
// first one's. `tables`: as read once for the checkpoint or `reason` read.
std::vector<SysvTables::Row> used_by(pid_t pid, const std::vector<pid_t>& inside,
                                     SysvTables& tables) {
    std::vector<SysvTables::Row> out;
    for (const auto& r : tables.msg()) {
        if (r.size() < 7) continue;
        auto user = [&](pid_t p) { return r[5] == p || r[6] == p; };
        if (user(pid) && sysv_first_user(pid, inside, user)) out.push_back(r);
    }
    return out;
}

std::string queue(long long id, long long key) {
    return strfmt("sysvipc: message queue {} (key 0x{:x})", id, uint32_t(key));
}

// A sysv-msg payload parsed: its record, {mtype, length} pairs and texts.
struct Parsed {
    SysvMsgRecord r{};
    std::vector<std::pair<int64_t, uint64_t>> msgs;
    const char* text = nullptr;
};

std::unexpected<Error> bad(std::string what) {
    return std::unexpected(check::bad(std::move(what)).error());
}

Result<Parsed> parse(const std::string& p) {
    Parsed out;
    if (p.size() < sizeof out.r) return bad("sysv-msg: a short record");
    std::memcpy(&out.r, p.data(), sizeof out.r);
    const SysvMsgRecord& r = out.r;
    std::string at = strfmt("sysv-msg {}", r.msqid);
    if (r.nmsgs > image::kMaxSysvMsgMessages || r.cbytes > image::kMaxSysvMsgBytes ||
        p.size() != sizeof r + uint64_t(r.nmsgs) * 16 + r.cbytes)
        return bad(strfmt("{}: {} messages of {} bytes in a record of {}", at, r.nmsgs, r.cbytes,
                          p.size()));
    if (r.msqid < 0) return bad(at + ": negative id");
    if (r.mode & ~0777u) return bad(strfmt("{}: mode {:o}", at, r.mode));
    if (r.qbytes == 0 || r.qbytes > uint64_t(INT_MAX))
        return bad(strfmt("{}: qbytes {}", at, r.qbytes));
    uint64_t sum = 0;
    for (uint32_t i = 0; i < r.nmsgs; ++i) {
        int64_t pair[2];
        std::memcpy(pair, p.data() + sizeof r + i * 16, 16);
        if (pair[0] <= 0 || pair[1] < 0 || uint64_t(pair[1]) > r.cbytes - sum)
            return bad(strfmt("{}: message {}: type {}, {} bytes", at, i, pair[0], pair[1]));
        sum += uint64_t(pair[1]);
        out.msgs.emplace_back(pair[0], uint64_t(pair[1]));
    }
    if (sum != r.cbytes)
        return bad(strfmt("{}: messages of {} bytes, texts of {}", at, sum, r.cbytes));
    out.text = p.data() + sizeof r + uint64_t(r.nmsgs) * 16;
    return out;
}

const SysvKind kMsg = {
    "System V message queue",
    "msg_next_id",
    [](int id) {
        struct msqid_ds ds {};
        return msgctl(id, IPC_STAT, &ds) == 0 || errno == EACCES;
    },
    [] { return msgget(IPC_PRIVATE, IPC_CREAT | 0600); },
    [](int id) { msgctl(id, IPC_RMID, nullptr); },
};

}  // namespace

// --- detect ------------------------------------------------------------------

void sysv_msg_reasons(TaskView& t, Reasons& out) {
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());  // as state/sysv_shm.cc
    for (const auto& r : used_by(t.pid(), inside, *t.sysv_tables())) {
        std::string q = queue(r[1], r[0]);
        struct msqid_ds ds {};
        if (msgctl(int(r[1]), IPC_STAT, &ds) != 0) {
            out.push_back(
                strfmt("{} was last used by the task: the caller cannot read it "
                       "(IPC_STAT: {})",
                       q, std::strerror(errno)));
            continue;
        }
        if (ds.msg_qnum > image::kMaxSysvMsgMessages || ds.msg_cbytes > image::kMaxSysvMsgBytes)
            out.push_back(
                strfmt("{} holds {} messages of {} bytes, more than an image holds "
                       "({}, {} bytes)",
                       q, ds.msg_qnum, ds.msg_cbytes, image::kMaxSysvMsgMessages,
                       image::kMaxSysvMsgBytes));
    }
}

// --- dump --------------------------------------------------------------------

Result<std::vector<std::string>> dump_sysv_msg(pid_t pid, const std::vector<pid_t>& image_pids,
                                               SysvTables& tables) {
    std::vector<std::string> out;
    for (const auto& row : used_by(pid, image_pids, tables)) {
        int id = int(row[1]);
        std::string q = queue(row[1], row[0]);
        struct msqid_ds ds {};
        if (msgctl(id, IPC_STAT, &ds) != 0) return errno_error("IPC_STAT of " + q);
        if (ds.msg_qnum > image::kMaxSysvMsgMessages || ds.msg_cbytes > image::kMaxSysvMsgBytes)
            return make_error(EFBIG,
                              strfmt("{}: {} messages of {} bytes", q, ds.msg_qnum, ds.msg_cbytes));
        SysvMsgRecord r{};
        r.key = ds.msg_perm.__key;
        r.msqid = id;
        r.mode = ds.msg_perm.mode & 0777;
        r.uid = ds.msg_perm.uid;
        r.gid = ds.msg_perm.gid;
        r.cuid = ds.msg_perm.cuid;
        r.cgid = ds.msg_perm.cgid;
        r.nmsgs = uint32_t(ds.msg_qnum);
        r.qbytes = ds.msg_qbytes;
        r.cbytes = ds.msg_cbytes;
        // Each message copied, not consumed (MSG_COPY: msgtyp is its index).
        std::vector<char> buf(sizeof(long) + r.cbytes + 1);
        std::string pairs, texts;
        for (uint32_t i = 0; i < r.nmsgs; ++i) {
            ssize_t n = msgrcv(id, buf.data(), r.cbytes + 1, long(i), IPC_NOWAIT | MSG_COPY);
            if (n < 0)
                return errno_error(strfmt("copying message {} of {} (msgrcv MSG_COPY)", i, q));
            long type;
            std::memcpy(&type, buf.data(), sizeof type);
            int64_t pair[2] = {type, int64_t(n)};
            pairs.append(reinterpret_cast<const char*>(pair), sizeof pair);
            texts.append(buf.data() + sizeof(long), size_t(n));
        }
        if (texts.size() != r.cbytes)
            return make_error(EAGAIN, strfmt("{}: changed while read ({} bytes, then {})", q,
                                             r.cbytes, texts.size()));
        std::string p(reinterpret_cast<const char*>(&r), sizeof r);
        out.push_back(p + pairs + texts);
    }
    return out;
}

// --- check (a hostile image) ---------------------------------------------------

Status check_sysv_msg(const DecodedImage& img) {
    std::vector<std::pair<int32_t, int32_t>> id_keys;
    for (const auto& p : img.sysv_msg) {
        auto q = parse(p);
        if (!q) return std::unexpected(q.error());
        id_keys.emplace_back(q->r.msqid, q->r.key);
    }
    return sysv_check_unique("sysv-msg", id_keys);
}

// --- restore -------------------------------------------------------------------

namespace {

// Queue `q`, made by the current (per-thread) credentials: its creator's.
Status make_queue(const Parsed& q, bool chosen, SysvMade& made) {
    const SysvMsgRecord& r = q.r;
    std::string what = strfmt("System V message queue {} (key 0x{:x})", r.msqid, uint32_t(r.key));
    int id = msgget(r.key, IPC_CREAT | IPC_EXCL | int(r.mode | 0600));
    if (auto s = sysv_created(kMsg, what, id, r.msqid, chosen, made); !s) return s;
    struct msqid_ds ds {};
    if (msgctl(id, IPC_STAT, &ds) != 0) return errno_error("IPC_STAT of " + what);
    if (auto s = sysv_same_creator(what, ds.msg_perm.cuid, ds.msg_perm.cgid, r.cuid, r.cgid); !s)
        return s;
    if (ds.msg_qbytes != r.qbytes) {  // before the refill, which it may need
        ds.msg_qbytes = r.qbytes;
        if (msgctl(id, IPC_SET, &ds) != 0)
            return errno_error(strfmt("giving {} qbytes {}", what, r.qbytes));
    }
    std::vector<char> buf(sizeof(long) + r.cbytes + 1);
    uint64_t off = 0;
    for (size_t i = 0; i < q.msgs.size(); ++i) {
        long type = long(q.msgs[i].first);
        std::memcpy(buf.data(), &type, sizeof type);
        std::memcpy(buf.data() + sizeof type, q.text + off, q.msgs[i].second);
        off += q.msgs[i].second;
        if (msgsnd(id, buf.data(), q.msgs[i].second, IPC_NOWAIT) != 0)
            return errno_error(
                strfmt("queueing message {} ({} bytes) on {}", i, q.msgs[i].second, what));
    }
    ds.msg_perm.uid = r.uid;
    ds.msg_perm.gid = r.gid;
    ds.msg_perm.mode = r.mode;
    if (msgctl(id, IPC_SET, &ds) != 0)
        return errno_error(
            strfmt("giving {} owner {}:{} and mode {:o}", what, r.uid, r.gid, r.mode));
    return {};
}

}  // namespace

Status sysv_msg_restore(const DecodedImage& img, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made) {
    return sysv_restore_each(
        kMsg, "sysv-msg", img.sysv_msg, img.task.pid, writer, tree, parse,
        [](const auto& q) { return q.r.msqid; },
        [&](auto& q, bool chosen) { return make_queue(q, chosen, made); });
}

}  // namespace crfs::state
