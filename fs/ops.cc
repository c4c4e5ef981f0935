// Thin FUSE callbacks (STYLE.md 3): each one calls a helper that returns a
// value or an Error, then replies exactly once. Errors become errno in reply_err().
// No exception crosses into libfuse: helpers do not throw, and every callback
// runs its helper inside a catch-all that answers EIO.
#include "fs/ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/piped_image.h"
#include "common/io.h"
#include "common/log.h"
#include "common/thread_stacks.h"
#include "fs/inode.h"
#include "fs/slot_stream.h"

namespace crfs::fs {
namespace {

Daemon& daemon_of(fuse_req_t req) {
    return *static_cast<Daemon*>(fuse_req_userdata(req));
}

Caller caller_of(fuse_req_t req) {
    const fuse_ctx* c = fuse_req_ctx(req);
    return Caller{c->uid, c->gid, c->pid};
}

void reply_err(fuse_req_t req, const Error& e, const char* op) {
    log_debug("%s: %s", op, e.what.c_str());
    fuse_reply_err(req, e.code);
}

// Runs `fn` and turns anything it throws (bad_alloc) into EIO.
template <class Fn>
void guarded(fuse_req_t req, const char* op, Fn fn) {
    note_thread_stack();  // clonecost: a tree's members take no copy of it (common/thread_stacks.h)
    try {
        fn();
    } catch (const std::exception& e) {
        log_error("%s: %s", op, e.what());
        fuse_reply_err(req, EIO);
    }
}

// Boot time in seconds since the epoch, to turn start ticks into times.
time_t boot_time() {
    static const time_t btime = [] {
        auto text = read_file("/proc/stat");
        if (!text) return time_t{0};
        size_t p = text->find("\nbtime ");
        return p == std::string::npos ? time_t{0}
                                      : static_cast<time_t>(std::stoll(text->substr(p + 7)));
    }();
    return btime;
}

time_t start_time_of(const TaskId& id) {
    static const long hz = ::sysconf(_SC_CLK_TCK);
    return boot_time() + static_cast<time_t>(id.starttime / static_cast<uint64_t>(hz));
}

const time_t g_mount_time = ::time(nullptr);

struct stat root_attr() {
    struct stat st {};
    st.st_ino = kRootIno;
    st.st_mode = S_IFDIR | 0555;
    st.st_nlink = 2;
    st.st_atime = st.st_mtime = st.st_ctime = g_mount_time;
    return st;
}

struct stat self_attr(fuse_req_t req) {
    struct stat st {};
    st.st_ino = kSelfIno;
    st.st_mode = S_IFLNK | 0777;
    st.st_nlink = 1;
    auto tgid = tgid_of(caller_of(req).tid);
    st.st_size = tgid ? static_cast<off_t>(std::to_string(*tgid).size()) : 0;
    st.st_atime = st.st_mtime = st.st_ctime = g_mount_time;
    return st;
}

// The largest FUSE request: libfuse derives max_pages from it, so reads
// come in requests of up to this size too.
constexpr unsigned kMaxWrite = 1u << 20;

struct stat task_attr(const Task& t, unsigned entry) {
    struct stat st {};
    st.st_ino = make_ino(t.id.pid, t.id.starttime, entry);
    st.st_uid = t.uid;
    st.st_gid = t.gid;
    st.st_atime = st.st_mtime = st.st_ctime = start_time_of(t.id);
    if (entry == kDirEntry) {
        st.st_mode = S_IFDIR | 0555;
        st.st_nlink = 2;
    } else {
        st.st_mode = kPidEntries[entry - 1].mode;
        st.st_nlink = 1;
        st.st_size = 0;  // generated: size unknown until read (STYLE.md 6)
        // perf: cp reads an image in 1 MiB requests then, not 128 KiB (slot_attr).
        if (kPidEntries[entry - 1].read == read_image) st.st_blksize = kMaxWrite;
    }
    return st;
}

// The task an inode of a pid directory or file names, if it still lives.
// `cached`: the daemon watches it, so the kernel may cache its names.
Result<Task> task_of(fuse_req_t req, uint64_t ino, bool* cached = nullptr) {
    InodeParts p = split_ino(ino);
    if (p.pid == 0 || p.entry > std::size(kPidEntries))
        return make_error(ENOENT, "inode " + std::to_string(ino) + ": not a task node");
    auto t = daemon_of(req).tasks.find(p.pid, p.start_low, cached);
    if (!t) return make_error(ENOENT, t.error().what);
    return t;
}

// Slots live in the pid-0 half of the inode space: (slot id, 0, entry).
bool is_slot_ino(uint64_t ino) {
    InodeParts p = split_ino(ino);
    return p.pid == 0 && p.start_low != 0;
}

Result<std::shared_ptr<Slot>> slot_of(fuse_req_t req, uint64_t ino) {
    InodeParts p = split_ino(ino);
    auto slot = daemon_of(req).slots.find(p.start_low);
    if (!slot || p.entry > std::size(kSlotEntries))
        return make_error(ENOENT, "slot inode " + std::to_string(ino) + " is gone");
    return slot;
}

struct stat slot_attr(const Slot& slot, unsigned entry) {
    struct stat st {};
    st.st_ino = make_ino(0, slot.id, entry);
    st.st_uid = slot.owner_uid;
    st.st_gid = slot.owner_gid;
    st.st_atime = st.st_mtime = st.st_ctime = slot.created;
    st.st_mode = entry == kDirEntry ? S_IFDIR | 0755 : kSlotEntries[entry - 1].mode;
    st.st_nlink = entry == kDirEntry ? 2 : 1;
    // perf: cp sizes its buffer by st_blksize (128 KiB otherwise), and each
    // write(2) on a direct_io file is one FUSE request per max_write: a slot
    // image written by cp then arrives in 1 MiB requests, not 8x as many.
    if (entry == kSlotImage) st.st_blksize = kMaxWrite;
    return st;
}

// The task a restored slot holds, while it lives.
std::optional<Task> slot_task(fuse_req_t req, Slot& slot) {
    pid_t pid;
    {
        std::lock_guard lock(slot.mu);
        pid = slot.ended.empty() ? slot.restored : 0;
    }
    if (!pid) return std::nullopt;
    auto t = daemon_of(req).tasks.find(pid);
    if (!t) return std::nullopt;
    return *t;
}

// A live task always wins over a slot named after its pid, unless the slot
// holds that very task (restored into its own pid: the reaper records the
// end before the pid can be reused). Such a hidden slot reappears once the
// pid is free; its owner may rmdir it meanwhile.
bool hidden_by_task(fuse_req_t req, Slot& slot) {
    if (!slot.want_pid) return false;
    uint64_t own_start = 0;
    {
        std::lock_guard lock(slot.mu);
        if (slot.restored == slot.want_pid && slot.ended.empty()) return false;
        // stream: the task is being restored into its pid while the pages
        // arrive; a lookup meanwhile (a writer's `status` poll) must not
        // cache the name as the task's, or the slot's files vanish after.
        if (slot.stream && slot.stream->task_pid() == slot.want_pid) return false;
        if (slot.restored == slot.want_pid) own_start = slot.restored_start;
    }
    auto t = daemon_of(req).tasks.find(slot.want_pid);
    // Ended: until the reap, the pid is the slot's task's zombie, which must
    // not hide the slot (issue 10: a job that ended just after its restore
    // took `crfs restore`'s `pid` file away). Another start time: a new task.
    return t && (own_start == 0 || t->id.starttime != own_start);
}

Result<struct stat> attr_of(fuse_req_t req, uint64_t ino) {
    if (ino == kRootIno) return root_attr();
    if (ino == kSelfIno) return self_attr(req);
    if (is_slot_ino(ino)) {
        auto slot = slot_of(req, ino);
        if (!slot) return std::unexpected(slot.error());
        return slot_attr(**slot, split_ino(ino).entry);
    }
    auto t = task_of(req, ino);
    if (!t) return std::unexpected(t.error());
    return task_attr(*t, split_ino(ino).entry);
}

// How long the kernel may keep a name. Names of watched tasks are kept (the
// TaskCache invalidates them the moment the task exits; the timeout is only
// a safety cap); anything else, like `self` or an unwatched task, is asked
// for again on every use, since a stale name would hide a new task or a
// restore slot behind a dead one.
constexpr double kWatchedEntryTimeout = 10.0;
constexpr double kWatchedAttrTimeout = 1.0;  // owner changes with setuid/dumpable

void reply_entry(fuse_req_t req, const struct stat& st, uint64_t generation, bool watched) {
    fuse_entry_param e{};
    e.ino = st.st_ino;
    e.generation = generation;
    e.attr = st;
    e.attr_timeout = watched ? kWatchedAttrTimeout : 0;
    e.entry_timeout = watched ? kWatchedEntryTimeout : 0;
    fuse_reply_entry(req, &e);
}

Result<pid_t> parse_pid(const char* name) {
    std::string_view s(name);
    pid_t pid = 0;
    if (s.empty() || s.size() > 7 || s[0] == '0')
        return make_error(ENOENT, "no entry " + std::string(s));
    for (char c : s) {
        if (c < '0' || c > '9') return make_error(ENOENT, "no entry " + std::string(s));
        pid = pid * 10 + (c - '0');
    }
    return pid;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] {
        Daemon& d = daemon_of(req);
        if (parent == kRootIno) {
            auto slot = d.slots.find(std::string_view(name));
            if (slot && !hidden_by_task(req, *slot))
                return reply_entry(req, slot_attr(*slot, kDirEntry), slot->id, false);
            if (std::string_view(name) == "self") return reply_entry(req, self_attr(req), 0, false);
            auto pid = parse_pid(name);
            if (!pid) return reply_err(req, pid.error(), "lookup");
            bool watched = false;
            auto t = d.tasks.find(*pid, &watched);
            if (!t) return reply_err(req, Error{ENOENT, t.error().what}, "lookup");
            return reply_entry(req, task_attr(*t, kDirEntry), t->id.starttime, watched);
        }
        if (split_ino(parent).entry != kDirEntry)
            return reply_err(req, Error{ENOTDIR, "not a directory"}, "lookup");
        if (is_slot_ino(parent)) {
            auto slot = slot_of(req, parent);
            if (!slot) return reply_err(req, slot.error(), "lookup");
            if (auto e = find_slot_entry(name))
                return reply_entry(req, slot_attr(**slot, *e), (*slot)->id, false);
            // Once restored, the slot shows the task's own files too.
            auto idx = find_pid_entry(name);
            auto t = slot_task(req, **slot);
            if (!idx || !t)
                return reply_err(req, Error{ENOENT, "no entry " + std::string(name)}, "lookup");
            return reply_entry(req, task_attr(*t, *idx + 1), t->id.starttime, false);
        }
        bool watched = false;
        auto t = task_of(req, parent, &watched);
        if (!t) return reply_err(req, t.error(), "lookup");
        auto idx = find_pid_entry(name);
        if (!idx) return reply_err(req, Error{ENOENT, "no entry " + std::string(name)}, "lookup");
        reply_entry(req, task_attr(*t, *idx + 1), t->id.starttime, watched);
    });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t) {
    guarded(req, "mkdir", [&] {
        if (parent != kRootIno)
            return reply_err(req, Error{EPERM, "restore slots are made in the root"}, "mkdir");
        if (daemon_of(req).slots.find(std::string_view(name)))
            return reply_err(req, Error{EEXIST, "slot exists"}, "mkdir");
        auto slot = daemon_of(req).slots.create(name, caller_of(req));
        if (!slot) return reply_err(req, slot.error(), "mkdir");
        reply_entry(req, slot_attr(**slot, kDirEntry), (*slot)->id, false);
    });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "rmdir", [&] {
        if (parent != kRootIno) return reply_err(req, Error{ENOTDIR, "not a slot"}, "rmdir");
        auto ok = daemon_of(req).slots.remove(name, caller_of(req));
        if (ok) return (void)fuse_reply_err(req, 0);
        // A process directory cannot be removed, like /proc/<pid>.
        if (ok.error().code == ENOENT && parse_pid(name) &&
            daemon_of(req).tasks.find(*parse_pid(name)))
            return reply_err(req, Error{EPERM, "a process directory, not a slot"}, "rmdir");
        reply_err(req, ok.error(), "rmdir");
    });
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    guarded(req, "getattr", [&] {
        auto st = attr_of(req, ino);
        if (!st) return reply_err(req, st.error(), "getattr");
        bool fixed = ino == kRootIno;
        fuse_reply_attr(req, &*st, fixed ? kWatchedEntryTimeout : 0);
    });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
    guarded(req, "setattr", [&] {
        auto st = attr_of(req, ino);
        if (!st) return reply_err(req, st.error(), "setattr");
        // Only the truncation that `>` redirection asks for, on a writable file.
        if (to_set != FUSE_SET_ATTR_SIZE || attr->st_size != 0)
            return reply_err(req, Error{EPERM, "setattr: not supported"}, "setattr");
        unsigned entry = split_ino(ino).entry;
        if (is_slot_ino(ino) && entry == kSlotTcp) return (void)fuse_reply_attr(req, &*st, 0);
        if (is_slot_ino(ino) && entry == kSlotImage) {
            auto slot = slot_of(req, ino);
            if (!slot) return reply_err(req, slot.error(), "setattr");
            if (auto ok = may_use_slot(caller_of(req), **slot); !ok)
                return reply_err(req, ok.error(), "setattr");
            if (auto ok = slot_truncate(**slot); !ok) return reply_err(req, ok.error(), "setattr");
            return (void)fuse_reply_attr(req, &*st, 0);
        }
        bool writable = ino != kRootIno && ino != kSelfIno && !is_slot_ino(ino) &&
                        entry != kDirEntry && kPidEntries[entry - 1].write != nullptr;
        if (!writable) return reply_err(req, Error{EPERM, "setattr: not supported"}, "setattr");
        fuse_reply_attr(req, &*st, 0);
    });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "readlink", [&] {
        if (ino != kSelfIno) return reply_err(req, Error{EINVAL, "not a symlink"}, "readlink");
        auto tgid = tgid_of(caller_of(req).tid);
        if (!tgid) return reply_err(req, Error{ENOENT, tgid.error().what}, "readlink");
        fuse_reply_readlink(req, std::to_string(*tgid).c_str());
    });
}

// One snapshot of a directory per open handle (STYLE.md 7): readdir serves
// offsets from it, so entries are neither skipped nor repeated.
struct DirHandle {
    struct Row {
        std::string name;
        uint64_t ino;
        mode_t type;
    };
    std::vector<Row> rows;
};

Result<std::unique_ptr<DirHandle>> snapshot_dir(fuse_req_t req, fuse_ino_t ino) {
    auto h = std::make_unique<DirHandle>();
    if (ino == kRootIno) {
        h->rows = {
            {".", kRootIno, S_IFDIR}, {"..", kRootIno, S_IFDIR}, {"self", kSelfIno, S_IFLNK}};
        std::set<std::string> slot_names;
        for (auto& slot : daemon_of(req).slots.list()) {
            if (hidden_by_task(req, *slot)) continue;
            h->rows.push_back({slot->name, make_ino(0, slot->id, kDirEntry), S_IFDIR});
            slot_names.insert(slot->name);
        }
        auto tasks = list_tasks();
        if (!tasks) return std::unexpected(tasks.error());
        for (auto& t : *tasks) {
            std::string name = std::to_string(t.pid);
            if (slot_names.count(name)) continue;  // the slot holds this task (hidden_by_task)
            h->rows.push_back({std::move(name), make_ino(t.pid, t.starttime, kDirEntry), S_IFDIR});
        }
        return h;
    }
    if (split_ino(ino).entry != kDirEntry) return make_error(ENOTDIR, "not a directory");
    h->rows = {{".", ino, S_IFDIR}, {"..", kRootIno, S_IFDIR}};
    std::optional<Task> t;
    if (is_slot_ino(ino)) {
        auto slot = slot_of(req, ino);
        if (!slot) return std::unexpected(slot.error());
        for (unsigned i = 0; i < std::size(kSlotEntries); ++i)
            h->rows.push_back(
                {std::string(kSlotEntries[i].name), make_ino(0, (*slot)->id, i + 1), S_IFREG});
        t = slot_task(req, **slot);
        if (!t) return h;
    } else {
        auto found = task_of(req, ino);
        if (!found) return std::unexpected(found.error());
        t = *found;
    }
    for (unsigned i = 0; i < std::size(kPidEntries); ++i) {
        bool shown = std::any_of(h->rows.begin(), h->rows.end(),
                                 [&](auto& r) { return r.name == kPidEntries[i].name; });
        if (!shown)
            h->rows.push_back({std::string(kPidEntries[i].name),
                               make_ino(t->id.pid, t->id.starttime, i + 1), S_IFREG});
    }
    return h;
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "opendir", [&] {
        auto h = snapshot_dir(req, ino);
        if (!h) return reply_err(req, h.error(), "opendir");
        fi->fh = reinterpret_cast<uint64_t>(h->release());
        if (fuse_reply_open(req, fi) == -ENOENT) delete reinterpret_cast<DirHandle*>(fi->fh);
    });
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "readdir", [&] {
        auto* h = reinterpret_cast<DirHandle*>(fi->fh);
        std::vector<char> buf(size);
        size_t used = 0;
        for (size_t i = static_cast<size_t>(off); i < h->rows.size(); ++i) {
            struct stat st {};
            st.st_ino = h->rows[i].ino;
            st.st_mode = h->rows[i].type;
            size_t need =
                fuse_add_direntry(req, buf.data() + used, size - used, h->rows[i].name.c_str(), &st,
                                  static_cast<off_t>(i + 1));
            if (need > size - used) break;
            used += need;
        }
        fuse_reply_buf(req, buf.data(), used);
    });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<DirHandle*>(fi->fh);
    fuse_reply_err(req, 0);
}

// An open file: of a pid directory (the task it was opened on: writes go to
// that task even if its pid is reused later) or of a slot; for readers, the
// content generated at open, or for `image` at the first read.
struct FileHandle {
    TaskId task;
    const PidEntry* entry = nullptr;
    std::shared_ptr<Slot> slot;  // slot files
    Caller writer;               // who opened a slot image for writing
    bool slot_writer = false;
    bool slot_tcp = false;            // the slot's `tcp` file, open for writing
    std::atomic<bool> wrote = false;  // a slot writer: any bytes through this handle
    Lease image_handle;               // readers of `image`: a share of user_image_handles
    // Readers of `image`: who opened it, kept for the checkpoint at the first
    // read (tree.h OpenerCreds). `content_mu` is held while that checkpoint
    // runs, so concurrent first reads make one image; every read after it
    // serves that one image (or its error) without the lock.
    std::optional<OpenerCreds> opener;
    uid_t opener_uid = 0;  // whose user_checkpoints bound the checkpoint
    std::mutex content_mu;
    std::atomic<bool> settled = false;  // content or content_error is final
    std::optional<Error> content_error;
    // Null for write-only opens, and for `image` until read. Shared: a read
    // keeps it alive while it replies from it (see op_read).
    std::shared_ptr<const Snapshot> content;
};

bool is_image_entry(const PidEntry& e) {
    return e.name == "image" || e.name == "delta";
}

// Makes the content of entry `e` of `task` for a reader, into h.content: the
// read right, then the content. `image` only takes its handle's share of
// user_image_handles and the opener's credentials here: its checkpoint runs
// at the first read (content_of). One path for /crfs/<pid>/ files and a
// restored slot's image.
Status read_content(Daemon& d, const Caller& caller, const TaskId& task, const PidEntry& e,
                    FileHandle& h) {
    if (auto ok = check_right(e.read_right, caller, task); !ok) return ok;
    h.task = task;
    h.entry = &e;
    if (is_image_entry(e)) {
        auto handle = d.limits.take(caller.uid, Resource::kImageHandles);
        if (!handle) return std::unexpected(handle.error());
        auto who = OpenerCreds::of(caller, task);
        if (!who) return std::unexpected(who.error());
        h.image_handle = std::move(*handle);
        h.opener = std::move(*who);
        h.opener_uid = caller.uid;
        return {};
    }
    auto content = e.read(d, task, caller);
    if (!content) return std::unexpected(content.error());
    h.content = std::move(*content);
    h.settled = true;
    return {};
}

// The content a read serves: for `image`, the checkpoint runs now, at the
// first read, holding a share of user_checkpoints while it runs. Its image,
// or its error, is what every later read of the handle gets; only the
// user_checkpoints bound (EAGAIN: try again) is not kept.
Result<std::shared_ptr<const Snapshot>> content_of(Daemon& d, FileHandle& h) {
    if (h.settled) {
        if (h.content_error) return std::unexpected(*h.content_error);
        return h.content;
    }
    std::lock_guard lock(h.content_mu);
    if (!h.settled) {
        if (!h.opener) return make_error(EBADF, "not open for reading");
        auto running = d.limits.take(h.opener_uid, Resource::kCheckpoints);
        if (!running) return std::unexpected(running.error());
        auto content = checkpoint_as(d, h.task, *h.opener, h.entry->name == "delta");
        if (content) {
            h.content = std::move(*content);
        } else {
            // Checkpoint failures are worth a line even without -d.
            log_info("%s", content.error().what.c_str());
            h.content_error = content.error();
        }
        h.settled = true;
    }
    if (h.content_error) return std::unexpected(*h.content_error);
    return h.content;
}

Result<std::unique_ptr<FileHandle>> open_slot_file(fuse_req_t req, fuse_ino_t ino, int flags) {
    auto slot = slot_of(req, ino);
    if (!slot) return std::unexpected(slot.error());
    Slot& s = **slot;
    unsigned entry = split_ino(ino).entry;
    if (entry == kDirEntry) return make_error(EISDIR, "is a directory");
    Caller caller = caller_of(req);
    if (auto ok = may_use_slot(caller, s); !ok) return std::unexpected(ok.error());
    int acc = flags & O_ACCMODE;
    auto h = std::make_unique<FileHandle>();
    h->slot = *slot;
    if (entry == kSlotImage) {
        if (acc == O_RDWR) return make_error(EINVAL, "slot image: open it to write or to read");
        if (acc == O_WRONLY) {
            std::lock_guard lock(s.mu);
            if (s.restored)
                return make_error(EINVAL, "slot " + s.name + " already holds restored task " +
                                              std::to_string(s.restored));
            h->writer = caller;
            h->slot_writer = true;
            return h;
        }
        // Reading the image of a restored slot checkpoints the restored task.
        auto t = slot_task(req, s);
        if (!t)
            return make_error(EACCES, "slot " + s.name + ": image is write-only until restored");
        const PidEntry& e = kPidEntries[*find_pid_entry("image")];
        if (auto ok = read_content(daemon_of(req), caller, t->id, e, *h); !ok)
            return std::unexpected(ok.error());
        return h;
    }
    if (entry == kSlotTcp && acc != O_RDONLY) {
        h->slot_tcp = true;
        return h;
    }
    if (acc != O_RDONLY)
        return make_error(EACCES, std::string(kSlotEntries[entry - 1].name) + " is read-only");
    std::lock_guard lock(s.mu);
    h->content = text_content(entry == kSlotStatus ? s.status_text()
                              : entry == kSlotTcp  ? (s.tcp_close ? "close\n" : "keep\n")
                              : s.restored         ? std::to_string(s.restored) + "\n"
                                                   : "");
    h->settled = true;
    return h;
}

Result<std::unique_ptr<FileHandle>> open_file(fuse_req_t req, fuse_ino_t ino, int flags) {
    Daemon& d = daemon_of(req);
    Caller caller = caller_of(req);
    if (ino == kRootIno) return make_error(EISDIR, "is a directory");
    if (is_slot_ino(ino)) return open_slot_file(req, ino, flags);
    auto t = task_of(req, ino);
    if (!t) return std::unexpected(t.error());
    unsigned entry = split_ino(ino).entry;
    if (entry == kDirEntry) return make_error(EISDIR, "is a directory");
    const PidEntry& e = kPidEntries[entry - 1];
    int acc = flags & O_ACCMODE;
    auto h = std::make_unique<FileHandle>();
    h->task = t->id;
    h->entry = &e;
    if (acc == O_WRONLY || acc == O_RDWR) {
        if (!e.write) return make_error(EACCES, std::string(e.name) + " is read-only");
        if (auto ok = check_right(e.write_right, caller, t->id); !ok)
            return std::unexpected(ok.error());
    }
    if (acc == O_RDONLY || acc == O_RDWR) {
        if (!e.read) return make_error(EACCES, std::string(e.name) + " is write-only");
        if (auto ok = read_content(d, caller, t->id, e, *h); !ok)
            return std::unexpected(ok.error());
    }
    return h;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "open", [&] {
        auto h = open_file(req, ino, fi->flags);
        if (!h) return reply_err(req, h.error(), "open");
        fi->direct_io = 1;  // generated content: no page cache, size 0 (STYLE.md 6)
        // A reader's open is non-seekable: the kernel's splice read of a FUSE
        // file stops at the inode size (0) even for direct_io, so sendfile and
        // splice would copy 0 bytes; without FMODE_LSEEK/FMODE_PREAD they fail
        // at once and python/busybox copy with read(2) (docs/decisions.md).
        fi->nonseekable = (fi->flags & O_ACCMODE) != O_WRONLY;
        fi->fh = reinterpret_cast<uint64_t>(h->release());
        if (fuse_reply_open(req, fi) == -ENOENT) delete reinterpret_cast<FileHandle*>(fi->fh);
    });
}

// A read never fails with EAGAIN: on a file that is not non-blocking, Python's
// io takes it for "no data yet" (FileIO.read returns None, readall and
// shutil.copyfileobj stop there as at the end of the file), so an image whose
// stream failed would be kept, cut short, with no error. The "try again"
// cases (user_checkpoints, a state that changed while it was read, memory the
// task took away before it was sent) are EBUSY, their message in the log.
void reply_read_err(fuse_req_t req, Error e) {
    if (e.code == EAGAIN) e.code = EBUSY;
    reply_err(req, e, "read");
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "read", [&] {
        auto* h = reinterpret_cast<FileHandle*>(fi->fh);
        auto got = content_of(daemon_of(req), *h);
        if (!got) return reply_read_err(req, got.error());
        if (!*got) return reply_err(req, Error{EBADF, "not open for reading"}, "read");
        if (off < 0) return (void)fuse_reply_buf(req, nullptr, 0);
        // Once the reader has its bytes it may close the file, and the
        // RELEASE that frees `h` can run on another thread before the reply
        // call returns: the reply comes from `content`, which this call
        // keeps alive, never from `h`.
        std::shared_ptr<const Snapshot> content = std::move(*got);
        // An image: straight from the stream's window, one copy fewer.
        if (auto* piped = dynamic_cast<const PipedImage*>(content.get())) {
            auto n = piped->serve(
                uint64_t(off), size,
                [&](const iovec* pieces, int count) { fuse_reply_iov(req, pieces, count); },
                fuse_req_ctx(req)->pid);
            if (!n) reply_read_err(req, n.error());
            return;
        }
        thread_local std::vector<char> buf;
        if (buf.size() < size) buf.resize(size);
        auto n = content->read(static_cast<uint64_t>(off), buf.data(), size);
        if (!n) return reply_read_err(req, n.error());
        fuse_reply_buf(req, buf.data(), *n);
    });
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
    note_request_buffer(buf, size);  // member: no tree member copies it (common/thread_stacks.h)
    guarded(req, "write", [&] {
        auto* h = reinterpret_cast<FileHandle*>(fi->fh);
        if (h->slot) {
            if (auto ok = may_use_slot(caller_of(req), *h->slot); !ok)
                return reply_err(req, ok.error(), "write");
            if (h->slot_tcp) {
                if (auto ok = slot_set_tcp(*h->slot, std::string_view(buf, size)); !ok)
                    return reply_err(req, ok.error(), "write");
                return (void)fuse_reply_write(req, size);
            }
            // Answered early (slot_write's `answer`): the writer may close and
            // the handle go (RELEASE) while the bytes are still used, so the
            // slot and the writer are held here; neither `req` nor `h` is
            // touched after the answer.
            std::shared_ptr<Slot> slot = h->slot;
            Caller writer = h->writer;
            struct Answer {
                fuse_req_t req;
                FileHandle* h;
                size_t size;
                bool sent = false;
            } a{req, h, size};
            auto write = [&] {
                return slot_write(daemon_of(req).limits, *slot, writer, buf, size, off, [&a] {
                    a.h->wrote = true;
                    a.sent = true;
                    fuse_reply_write(a.req, a.size);
                });
            };
            Result<size_t> n = 0;
            try {
                n = write();
            } catch (const std::exception& e) {
                if (!a.sent) throw;  // guarded answers EIO
                n = make_error(EIO, e.what());
            }
            if (a.sent) {
                if (!n) log_debug("write (answered): %s", n.error().what.c_str());
                return;
            }
            if (!n) return reply_err(req, n.error(), "write");
            h->wrote = true;
            return (void)fuse_reply_write(req, *n);
        }
        // Rights are checked on every call, not only at open.
        if (auto ok = check_right(h->entry->write_right, caller_of(req), h->task); !ok)
            return reply_err(req, ok.error(), "write");
        if (!daemon_of(req).tasks.alive(h->task))
            return reply_err(req, Error{ESRCH, "task " + std::to_string(h->task.pid) + " exited"},
                             "write");
        if (auto ok = h->entry->write(daemon_of(req), h->task, std::string_view(buf, size)); !ok)
            return reply_err(req, ok.error(), "write");
        fuse_reply_write(req, size);
    });
}

// close(): a slot image that received bytes is restored now, so that the
// error reaches close() and `cp` prints it.
void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    guarded(req, "flush", [&] {
        auto* h = reinterpret_cast<FileHandle*>(fi->fh);
        if (!h->slot_writer) return (void)fuse_reply_err(req, 0);
        Daemon& d = daemon_of(req);
        auto pid = slot_restore(d.limits, *h->slot, h->writer, h->wrote);
        if (!pid) return reply_err(req, pid.error(), "restore");
        if (*pid) {
            std::weak_ptr<Slot> slot = h->slot;
            d.reaper.adopt(*pid, [slot, pid = *pid](int code, int status) {
                if (auto s = slot.lock()) slot_task_ended(*s, pid, code, status);
            });
        }
        fuse_reply_err(req, 0);
    });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<FileHandle*>(fi->fh);
    fuse_reply_err(req, 0);
}

void op_init(void*, fuse_conn_info* conn) {
    // Larger requests: libfuse derives max_pages from max_write, and the
    // kernel then sends reads of up to 1 MiB too (images are large).
    conn->max_write = kMaxWrite;
    conn->max_read = 0;
    // member: a write's bytes are in the worker's own receive buffer, never in
    // a buffer libfuse allocates for one spliced request and frees after it
    // (common/thread_stacks.h note_request_buffer).
    conn->want &= ~FUSE_CAP_SPLICE_READ;
}

const fuse_lowlevel_ops kOps = [] {
    fuse_lowlevel_ops ops{};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.getattr = op_getattr;
    ops.setattr = op_setattr;
    ops.readlink = op_readlink;
    ops.opendir = op_opendir;
    ops.readdir = op_readdir;
    ops.releasedir = op_releasedir;
    ops.open = op_open;
    ops.read = op_read;
    ops.write = op_write;
    ops.release = op_release;
    ops.flush = op_flush;
    ops.mkdir = op_mkdir;
    ops.rmdir = op_rmdir;
    return ops;
}();

}  // namespace

const fuse_lowlevel_ops& crfs_ops() {
    return kOps;
}

}  // namespace crfs::fs
