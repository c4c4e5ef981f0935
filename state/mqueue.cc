// POSIX message queues (issue 11): an fd on the mqueue filesystem, made exact.
//
//   detect   a queue with an mq_notify registration (whose owner and signal
//            crfs does not restore), a queue larger than image::kMaxMqBytes
//            (mq_maxmsg * mq_msgsize), a name crfs cannot give back, and a
//            queue the task's own ids cannot open read-write (crfs reads it
//            through such a description, with those ids: the kernel decides);
//   dump     its name (the fd's link; unlinked when the inode has no link),
//            attributes, mode and owner, and its queued messages with their
//            priorities in order. The task is frozen; crfs receives every
//            message through its own description and sends them back in the
//            same order at the same priorities. Meanwhile a process outside
//            the image that uses the queue by its name could find it empty,
//            or full, or take a message (one blocked in mq_receive is handed
//            the first one sent back): the messages a checkpoint saw are the
//            ones the image holds, and the queue afterwards holds them again
//            unless such a process took them or sent its own in between;
//   restore  stage 1, with the writer's ids in the writer's IPC namespace:
//            mq_open(O_CREAT | O_EXCL) of the name with the recorded
//            attributes, mode (fchmod, past the umask), owner checked, the
//            messages sent in order, then the fd opened by name with the
//            task's flags and, for an unlinked queue, the name unlinked again.
//            A queue of that name that exists already must be the recorded
//            one (attributes, mode, owner, messages: received, compared and
//            sent back) and is then opened as it is (a named queue outlives
//            its holders: a kill -9 after the checkpoint leaves it); any other
//            is an error naming it, never a merge. An unlinked queue whose
//            name is taken again is an error too. A queue it created is
//            recorded (MqueueMade): a failed restore removes it again
//            (state/names_made.h), never one that was there.
// Not restored: an mq_notify registration (a reason), the queue's times.
// A named queue that two descriptions hold is one queue (the second finds
// the first's); an unlinked one held by a second description of the task is
// recorded once, by its lowest fd, and the other descriptions name it
// (state/mqueue_second.cc); one held by a process outside the image would be
// two queues: a reason (unlinked_elsewhere). One description held by several
// members of a tree is made once, by the first, and handed to the others
// (state/tree_share.h).
#include "state/mqueue.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "checkpoint/files.h"
#include "common/escape.h"
#include "common/log.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "state/file_kind.h"
#include "state/holders.h"
#include "state/kobj.h"
#include "state/tree.h"
#include "state/unix_socket.h"

namespace crfs::state {
namespace {

constexpr long kMqueueMagic = 0x19800202;
constexpr std::string_view kDeleted = " (deleted)";
constexpr uint32_t kModes = 07777;

struct Msg {
    uint32_t prio = 0;
    std::string bytes;
};

// What the queue of one fd is, read through a description of crfs's own.
struct Queue {
    std::string name;  // "/name"
    bool deleted = false;
    struct stat st {};
    mq_attr attr{};
    UniqueFd fd;  // O_RDWR | O_NONBLOCK, opened with the task's ids
};

bool match(const FdView& f) {
    struct statfs sf;
    return f.pid > 0 && S_ISREG(f.st.st_mode) &&
           ::statfs(strfmt("/proc/{}/fd/{}", f.pid, f.fd).c_str(), &sf) == 0 &&
           sf.f_type == kMqueueMagic;
}

std::unexpected<Error> refuse(const std::string& what) {
    return make_error(ENOTSUP, "POSIX message queue " + what + std::string(kNotYet));
}

// The queue of f, opened as the task; ENOTSUP errors are reasons.
Result<Queue> inspect(const FdView& f) {
    Queue q;
    q.name = f.link;
    q.deleted = f.st.st_nlink == 0;
    if (q.deleted && q.name.ends_with(kDeleted)) q.name.resize(q.name.size() - kDeleted.size());
    std::string shown = escape_nonprintable(q.name);
    if (q.name.size() < 2 || q.name.size() > image::kMaxMqName || q.name[0] != '/' ||
        q.name.find('/', 1) != std::string::npos)
        return refuse(shown + " whose name crfs cannot reopen; such a queue");
    auto status = read_status(f.pid);
    if (!status) return std::unexpected(status.error());
    int fd = -1;
    std::string proc = strfmt("/proc/{}/fd/{}", f.pid, f.fd);
    int e = as_task(status->uid[1], status->gid[1], [&] {
        fd = ::open(proc.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
        return fd < 0 ? errno : 0;
    });
    if (fd >= 0) q.fd = UniqueFd(fd);
    if (e)
        return refuse(shown + " that the task's ids cannot open read-write (" + std::strerror(e) +
                      "), which crfs reads it through; such a queue");
    if (::fstat(q.fd.get(), &q.st) != 0 || mq_getattr(q.fd.get(), &q.attr) != 0)
        return errno_error("mq_getattr of " + shown);
    if (q.st.st_ino != f.st.st_ino || q.st.st_dev != f.st.st_dev)
        return make_error(ESTALE, shown + ": the fd changed meanwhile");
    if (uint64_t(q.attr.mq_maxmsg) * uint64_t(q.attr.mq_msgsize) > image::kMaxMqBytes ||
        q.attr.mq_maxmsg > long(image::kMaxMqMessages))
        return refuse(strfmt("{} of {} messages of {} bytes, larger than {} bytes; such a queue",
                             shown, q.attr.mq_maxmsg, q.attr.mq_msgsize, image::kMaxMqBytes));
    // "QSIZE:%-10lu NOTIFY:%-5d SIGNO:%-5d NOTIFY_PID:%-6d"
    char text[256];
    ssize_t n = ::pread(q.fd.get(), text, sizeof text - 1, 0);
    if (n < 0) return errno_error("reading the status of " + shown);
    text[n] = 0;
    const char* at = std::strstr(text, "NOTIFY_PID:");
    long pid = at ? std::strtol(at + 11, nullptr, 10) : -1;
    if (pid != 0)
        return refuse(
            strfmt("{} with an mq_notify registration (pid {}); such a registration", shown, pid));
    return q;
}

// An unlinked queue comes back from its one record as a new queue: a process
// outside the image holding it would keep another queue, a reason (another
// open file description of it in the task is state/mqueue_second.cc's).
// Another process is found by its fd link ("/name (deleted)"). A member of
// the image holding one description with the task (a child that inherited
// it) is given it at restore, and one with a description of its own is
// refused, by the tree's rules (state/tree_share.h); a member holding another
// unlinked queue of that name (another inode) is refused here, never merged.
std::optional<std::string> unlinked_elsewhere(TaskView& t, const FdView& f,
                                              const std::string& shown) {
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    std::vector<pid_t> outside;
    Holders holders(t.pid(), t.holder_scan());
    for (const auto& [link, held] : holders.fds_of({f.link}))
        for (const HeldFd& h : held) {
            if (std::find(inside.begin(), inside.end(), h.pid) == inside.end()) {
                if (outside.empty() || outside.back() != h.pid) outside.push_back(h.pid);
                continue;
            }
            struct stat st {};
            if (::stat(strfmt("/proc/{}/fd/{}", h.pid, h.fd).c_str(), &st) == 0 &&
                st.st_ino == f.st.st_ino && st.st_dev == f.st.st_dev)
                continue;  // the same queue: the tree's rules
            return strfmt(
                "POSIX message queue {} (unlinked) while pid {} of the image holds another "
                "unlinked queue of that name (fd {}); such queues{}",
                shown, h.pid, h.fd, kNotYet);
        }
    if (!outside.empty())
        return strfmt(
            "POSIX message queue {} (unlinked) also held by {}, outside the image; such "
            "a queue{}",
            shown, Holders::names(outside), kNotYet);
    return std::nullopt;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    auto q = inspect(f);
    if (!q) return q.error().what;
    if (q->deleted) return unlinked_elsewhere(t, f, escape_nonprintable(q->name));
    return std::nullopt;
}

// Every message of q, received in order (the task is frozen).
Result<std::vector<Msg>> drain(Queue& q, const std::string& shown) {
    std::vector<Msg> out;
    std::string buf(size_t(q.attr.mq_msgsize), '\0');
    for (;;) {
        unsigned prio = 0;
        ssize_t n = mq_receive(q.fd.get(), buf.data(), buf.size(), &prio);
        if (n < 0) {
            if (errno == EAGAIN) return out;
            return errno_error(strfmt("mq_receive of {} (message {})", shown, out.size()));
        }
        out.push_back({prio, buf.substr(0, size_t(n))});
        if (out.size() > image::kMaxMqMessages)
            return make_error(EOVERFLOW, shown + ": more messages than mq_maxmsg");
    }
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    // A later description of an unlinked queue: the first's record holds it.
    if (f.st.st_nlink == 0)
        if (auto first = first_fd_of_inode(pid, f)) {
            mqueue_second_dump(f, *first, t);
            return {};
        }
    auto q = inspect(f);
    if (!q) return std::unexpected(q.error().context(strfmt("fd {}", f.fd)));
    std::string shown = escape_nonprintable(q->name);
    auto msgs = drain(*q, shown);
    // Every message received goes back, in order, whatever else failed.
    size_t back = 0;
    int err = 0;
    if (msgs)
        for (; back < msgs->size(); ++back) {
            const Msg& m = (*msgs)[back];
            if (mq_send(q->fd.get(), m.bytes.data(), m.bytes.size(), m.prio) != 0) {
                err = errno;
                break;
            }
        }
    if (!msgs) return std::unexpected(msgs.error());
    if (err)
        return make_error(err, strfmt("fd {}: sending message {} of {} back to {} after reading "
                                      "it (a process outside the image filled it meanwhile?); "
                                      "the rest are lost",
                                      f.fd, back, msgs->size(), shown));
    image::MqueueRecord r{};
    r.fd = f.fd;
    r.mode = q->st.st_mode & kModes;
    r.uid = q->st.st_uid;
    r.gid = q->st.st_gid;
    r.maxmsg = uint64_t(q->attr.mq_maxmsg);
    r.msgsize = uint64_t(q->attr.mq_msgsize);
    r.nmsgs = uint32_t(msgs->size());
    r.name_len = uint32_t(q->name.size());
    r.deleted = q->deleted;
    std::string lens, data;
    for (const Msg& m : *msgs) {
        uint32_t pair[2] = {m.prio, uint32_t(m.bytes.size())};
        lens.append(reinterpret_cast<const char*>(pair), sizeof pair);
        data += m.bytes;
    }
    r.data_len = data.size();
    auto rec = kobj_record(image::RecordType::kMqueue, r);
    rec.second += q->name + lens + data;
    t.records.push_back(std::move(rec));
    t.path.clear();  // the name is the record's
    return {};
}

// The record of f, its name, and its {priority, length} pairs (checked).
struct Parsed {
    image::MqueueRecord r{};
    std::string_view name, data;
    std::vector<std::pair<uint32_t, uint32_t>> msgs;
};

Result<Parsed> parse(const FdEntry& f) {
    auto recs = kobj_records(f, image::RecordType::kMqueue);
    if (recs.size() != 1 || f.kobj.size() != 1)
        return kobj_bad(f, strfmt("{} records, wants one mqueue", f.kobj.size()));
    Parsed p;
    const std::string& s = *recs[0];
    if (s.size() < sizeof p.r) return kobj_bad(f, "a short mqueue record");
    std::memcpy(&p.r, s.data(), sizeof p.r);
    const auto& r = p.r;
    uint64_t want = sizeof r + uint64_t(r.name_len) + uint64_t(r.nmsgs) * 8 + r.data_len;
    if (r.name_len < 2 || r.name_len > image::kMaxMqName || r.nmsgs > image::kMaxMqMessages ||
        r.data_len > image::kMaxMqBytes || want != s.size())
        return kobj_bad(f, strfmt("mqueue name of {} bytes, {} messages, {} bytes in a record of "
                                  "{}",
                                  r.name_len, r.nmsgs, r.data_len, s.size()));
    p.name = std::string_view(s).substr(sizeof r, r.name_len);
    if (p.name[0] != '/' || p.name.find('/', 1) != std::string_view::npos ||
        p.name.find('\0') != std::string_view::npos)
        return kobj_bad(f, "mqueue name " + escape_nonprintable(p.name));
    if (r.maxmsg < 1 || r.msgsize < 1 || r.maxmsg > image::kMaxMqMessages ||
        r.msgsize > image::kMaxMqBytes || r.maxmsg * r.msgsize > image::kMaxMqBytes ||
        r.nmsgs > r.maxmsg)
        return kobj_bad(f, strfmt("mqueue of {} messages of {} bytes holding {}", r.maxmsg,
                                  r.msgsize, r.nmsgs));
    if ((r.mode & ~kModes) || r.deleted > 1 || r.reserved)
        return kobj_bad(f, strfmt("mqueue mode {} deleted {}", kobj_oct(r.mode), r.deleted));
    size_t at = sizeof r + r.name_len;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < r.nmsgs; ++i, at += 8) {
        uint32_t pair[2];
        std::memcpy(pair, s.data() + at, sizeof pair);
        if (pair[0] >= uint32_t(MQ_PRIO_MAX) || pair[1] > r.msgsize)
            return kobj_bad(
                f, strfmt("mqueue message {}: priority {}, {} bytes", i, pair[0], pair[1]));
        sum += pair[1];
        p.msgs.emplace_back(pair[0], pair[1]);
    }
    if (sum != r.data_len)
        return kobj_bad(f, strfmt("mqueue messages of {} bytes, data of {}", sum, r.data_len));
    p.data = std::string_view(s).substr(at);
    return p;
}

Status check(const FdEntry& f, const DecodedImage&) {
    auto p = parse(f);
    if (!p) return std::unexpected(p.error());
    return mqueue_check_flags(f);
}

}  // namespace

bool mqueue_unlinked(const FdEntry& f) {
    auto p = parse(f);
    return p && p->r.deleted;
}

Status mqueue_check_flags(const FdEntry& f) {
    // O_LARGEFILE: open(2) sets it on a description made through /proc/self/fd
    // (mqueue-second, a tree's reopen); a queue ignores it, mq_open keeps it.
    constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK | kOLargefile))
        return kobj_bad(f, strfmt("mqueue open flags {}", kobj_oct(f.rec.open_flags)));
    if ((f.rec.open_flags & O_ACCMODE) == O_ACCMODE) return kobj_bad(f, "mqueue access mode 3");
    return {};
}

namespace {

Status plan(const FdEntry& f, KobjPlan& k) {
    auto p = parse(f);
    if (!p) return std::unexpected(p.error());
    k.flags = int(f.rec.open_flags);
    k.n[0] = p->r.maxmsg;
    k.n[1] = p->r.msgsize;
    k.n[2] = p->r.mode;
    k.n[3] = uint64_t(p->r.uid) << 32 | p->r.gid;
    k.n[4] = p->r.deleted;
    k.paths = {std::string(p->name), std::string(p->data)};
    for (auto [prio, len] : p->msgs) k.watches.push_back({int32_t(len), prio, 0});
    return {};
}

// Stage 1 (no allocation): the planned messages, from the plan's data.
int send_all(const KobjPlan& p, int q) {
    const char* d = p.paths[1].data();
    for (const KobjWatch& m : p.watches) {
        if (mq_send(q, d, size_t(m.tfd), m.events) != 0) return errno;
        d += m.tfd;
    }
    return 0;
}

// Whether q's owner and mode are the plan's (0) or EPERM.
int same_owner(const KobjPlan& p, int q) {
    struct stat st {};
    if (fstat(q, &st) != 0) return errno;
    uint64_t ids = uint64_t(st.st_uid) << 32 | st.st_gid;
    return ids == p.n[3] && (st.st_mode & kModes) == p.n[2] ? 0 : EPERM;
}

// Whether an existing queue q is the planned one: 0, EEXIST (other
// attributes, owner or messages) or an errno. Its messages are received,
// compared and sent back in order.
int same_queue(const KobjPlan& p, int q) {
    mq_attr a{};
    if (mq_getattr(q, &a) != 0) return errno;
    size_t n = p.watches.size();
    if (uint64_t(a.mq_maxmsg) != p.n[0] || uint64_t(a.mq_msgsize) != p.n[1] ||
        size_t(a.mq_curmsgs) != n || same_owner(p, q))
        return EEXIST;
    if (!n) return 0;
    size_t slot = size_t(p.n[1]) + 8, len = n * slot;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return errno;
    char* buf = static_cast<char*>(m);
    size_t got = 0;
    bool same = true;
    const char* want = p.paths[1].data();
    for (; got < n; ++got) {
        char* s = buf + got * slot;
        unsigned prio = 0;
        ssize_t got_len = mq_receive(q, s + 8, size_t(p.n[1]), &prio);
        if (got_len < 0) break;
        uint32_t r = uint32_t(got_len);
        std::memcpy(s, &r, 4);
        std::memcpy(s + 4, &prio, 4);
        const KobjWatch& w = p.watches[got];
        same = same && r == uint32_t(w.tfd) && prio == w.events &&
               !std::memcmp(s + 8, want, size_t(r));
        want += w.tfd;
    }
    int err = got == n ? 0 : EEXIST;
    for (size_t i = 0; i < got; ++i) {  // back, in order
        char* s = buf + i * slot;
        uint32_t r, prio;
        std::memcpy(&r, s, 4);
        std::memcpy(&prio, s + 4, 4);
        if (mq_send(q, s + 8, r, prio) != 0) {
            err = errno;
            break;
        }
    }
    munmap(m, len);
    return err ? err : same ? 0 : EEXIST;
}

// failclean: the queue q that mq_open just created, in its slot (0 or an
// errno). A queue that was there already is never recorded.
int record_made(const KobjPlan& p, int q) {
    if (!p.mq_made) return 0;
    MqueueMade& m = *p.mq_made;
    struct stat st {};
    if (fstat(q, &st) != 0) return errno;
    size_t len = std::min(p.paths[0].size(), sizeof m.name - 1);
    std::memcpy(m.name, p.paths[0].data(), len);
    m.name[len] = 0;
    m.dev = st.st_dev;
    m.ino = st.st_ino;
    slot_made(m, true);
    return 0;
}

// It unlinked the queue it made again: nothing to remove.
void unrecord(const KobjPlan& p) {
    if (p.mq_made) slot_made(*p.mq_made, false);
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    const char* name = p.paths[0].c_str();
    mq_attr a{};
    a.mq_maxmsg = long(p.n[0]);
    a.mq_msgsize = long(p.n[1]);
    int q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC, mode_t(p.n[2]), &a);
    int step = 0, err = 0;
    if (q >= 0) {
        err = record_made(p, q);
        if (!err && fchmod(q, mode_t(p.n[2])) != 0) err = errno;
        if (!err) err = same_owner(p, q);
        if (!err) err = send_all(p, q);
        if (err) {
            step = CRFS_RA_STEP_MQ_FILL;
            close(q);
            if (mq_unlink(name) == 0) unrecord(p);
        }
    } else if (errno == EEXIST && !p.n[4]) {
        q = mq_open(name, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (q < 0) {
            step = CRFS_RA_STEP_MQ_OPEN;
            err = errno;
        } else if ((err = same_queue(p, q))) {
            step = CRFS_RA_STEP_MQ_OTHER;
            close(q);
        }
    } else {
        step = CRFS_RA_STEP_MQ_OPEN;
        err = errno;
    }
    if (err) {
        fail = {step, err, 0};
        return -1;
    }
    int fd = mq_open(name, p.flags | O_CLOEXEC);
    if (fd < 0) fail = {CRFS_RA_STEP_MQ_OPEN, errno, 0};
    if (p.n[4]) {
        if (mq_unlink(name) == 0)
            unrecord(p);
        else if (fd >= 0) {
            fail = {CRFS_RA_STEP_MQ_FILL, errno, 0};
            close(fd);
            fd = -1;
        }
    }
    close(q);
    return fd;
}

}  // namespace

void MqueuesMade::remove(int mnt) const {
    for (size_t i = 0; i < size(); ++i) {
        if (!made(i)) continue;
        const MqueueMade& m = *slot(i);
        const char* name = m.name + 1;  // "/name": "name" in the file system's root
        std::string shown = escape_nonprintable(m.name);
        struct stat st {};
        if (fstatat(mnt, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != m.dev ||
            st.st_ino != m.ino) {
            log_debug(
                "restore failed: POSIX message queue %s is no longer the one it created: "
                "left",
                shown.c_str());
            continue;
        }
        if (unlinkat(mnt, name, 0) < 0)
            log_info("restore failed: removing POSIX message queue %s: %s", shown.c_str(),
                     std::strerror(errno));
    }
}

int mqueue_mount() {
    UniqueFd fs(fsopen("mqueue", FSOPEN_CLOEXEC));
    if (!fs || fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) return -errno;
    int m = fsmount(fs.get(), FSMOUNT_CLOEXEC, 0);
    return m < 0 ? -errno : m;
}

std::optional<std::string> mqueue_step_text(const DecodedImage& img, int step, int fd) {
    std::string what = strfmt("fd {}", fd);
    for (const FdEntry& f : img.fds)
        if (f.rec.fd == fd)
            if (auto p = parse(f)) what += ", POSIX message queue " + escape_nonprintable(p->name);
    switch (step) {
        case CRFS_RA_STEP_MQ_OPEN:
            return "creating or opening by its name " + what;
        case CRFS_RA_STEP_MQ_OTHER:
            return what +
                   ": a queue of that name exists with other attributes, owner or "
                   "messages than the image's (remove it with mq_unlink to restore)";
        case CRFS_RA_STEP_MQ_FILL:
            return "giving its mode, owner and messages to " + what;
        case CRFS_RA_STEP_MQ_SECOND:  // mq2: state/mqueue_second.cc
            return "opening " + what +
                   " again through /proc/self/fd of an earlier fd, as another open file "
                   "description of its unlinked POSIX message queue";
    }
    return std::nullopt;
}

const KobjKind kMqueueKind = {
    image::FdKind::kMqueue, "mqueue", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
