// Kernel objects held by fds (issue 11, single task): eventfd, timerfd,
// signalfd, epoll, inotify, O_PATH, directory and pidfd descriptors. Each kind is one
// file under state/ holding its whole story behind one KobjKind:
//
//   detect   the reason this fd cannot be saved exactly (`reason`), or none
//   dump     the FdRecord kind and its records (checkpoint/files.cc, frozen)
//   check    every field of a hostile image in range (state/fd_check.cc calls it)
//   plan     the parent's preparation, as the writer (restorer/files.cc)
//   make     stage 1 in the new task: the new fd (restorer/files.cc)
//   finish   stage 1 once every fd is in place (epoll: its watches)
//
// kobj.cc is the one dispatcher the fd table (state/fds.cc), the checkpointer
// and the restorer call; docs/state.md lists the kinds, docs/image-format.md
// their records.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_reader.h"
#include "crfs/image_format.h"
#include "crfs/restorer_args.h"
#include "state/kind.h"

namespace crfs {
struct TaskFd;
}

namespace crfs::state {

struct MqueueMade;  // state/mqueue.h

struct KobjWatch {
    int32_t tfd;
    uint32_t events;
    uint64_t data;
};

// What stage 1 needs to make one object, prepared by `plan` in the parent.
// Stage 1 reads it and makes syscalls only (restorer/child.h): no allocation.
struct KobjPlan {
    uint32_t kind = 0;  // image::FdKind; 0: not a kernel object
    int flags = 0;      // creation or open flags
    uint64_t n[6] = {};
    int32_t clockid = 0;
    bool same_boot = false;
    dev_t dev = 0;  // O_PATH, directory: the file it must be
    ino_t ino = 0;
    std::vector<KobjWatch> watches;  // epoll; inotify: {wd, mask}
    std::vector<std::string> paths;  // inotify: each watch's path
    MqueueMade* mq_made = nullptr;   // mqueue: its failclean slot (restorer/files.cc)
};

// A failure in stage 1: which step (CRFS_RA_STEP_*) and errno.
struct KobjFail {
    int step = 0;
    int err = 0;
    uint64_t arg = 0;  // 0: the fd's number
};

struct KobjKind {
    image::FdKind kind;
    std::string_view name;
    bool (*match)(const FdView&);
    // Why this fd cannot be saved and restored exactly, or nullopt.
    std::optional<std::string> (*detect)(TaskView&, const FdView&);
    // Fills t.rec.kind (the common FdRecord fields are already set) and t.records.
    Status (*dump)(pid_t, const FdView&, TaskFd& t);
    Status (*check)(const FdEntry&, const DecodedImage&);
    Status (*plan)(const FdEntry&, KobjPlan&);
    // The new fd (close-on-exec; files.cc places it), or -1 with `fail` set.
    int (*make)(const KobjPlan&, const char* path, KobjFail& fail);
    // Once every fd of the task is in place (nullptr: nothing to do). false: `fail` set.
    bool (*finish)(const KobjPlan&, int fd, KobjFail& fail);
};

// The kinds, one file each (their tables).
extern const KobjKind kEventfdKind;    // state/eventfd.cc
extern const KobjKind kTimerfdKind;    // state/timerfd.cc
extern const KobjKind kSignalfdKind;   // state/signalfd.cc
extern const KobjKind kEpollKind;      // state/epoll.cc
extern const KobjKind kOpathKind;      // state/opath.cc
extern const KobjKind kDirectoryKind;  // state/dirfd.cc
extern const KobjKind kPidfdKind;      // state/pidfd.cc
extern const KobjKind kInotifyKind;    // state/inotify.cc
extern const KobjKind kMemfdKind;      // state/memfd.cc (the memfd object: state/memfd.h)
extern const KobjKind kTtyKind;        // state/tty.cc: the session's terminal, other terminals
extern const KobjKind kDevTtyKind;     // state/tty.cc: /dev/tty
extern const KobjKind kMqueueKind;     // state/mqueue.cc: POSIX message queues
extern const KobjKind kMqueueSecondKind;  // state/mqueue_second.cc: another description of one

// --- the dispatcher (kobj.cc) ------------------------------------------------

// The FdKind table's entry (state/fds.cc): whether one of these kinds claims f.
bool kobj_match(const FdView& f);
std::optional<std::string> kobj_detect(TaskView& t, const FdView& f);

// Checkpoint: nullptr when no kind claims f, else the kind's dump result.
// `claimed` tells the two apart.
Status kobj_dump(pid_t pid, const FdView& f, TaskFd& t, bool& claimed);

// Restore: whether an FdRecord kind is one of these.
bool is_kobj(uint32_t fd_kind);
// Whether that kind is made anew (eventfd, ...) rather than reopened by path.
bool kobj_is_pathless(uint32_t fd_kind);
Status kobj_check(const FdEntry& f, const DecodedImage& img);
Status kobj_plan(const FdEntry& f, KobjPlan& plan);
int kobj_make(const KobjPlan& plan, const char* path, KobjFail& fail);
bool kobj_finish(const KobjPlan& plan, int fd, KobjFail& fail);

// --- shared by the kinds -----------------------------------------------------

// The fdinfo lines that start with `prefix` ("tfd:", "inotify ").
std::vector<std::string> fdinfo_lines(std::string_view fdinfo, std::string_view prefix);
// The value after "key" on its fdinfo line ("eventfd-count:" -> "    5"), trimmed.
std::optional<std::string_view> fdinfo_value(std::string_view fdinfo, std::string_view key);
// A number of fdinfo, in `base`; nullopt when absent or malformed.
std::optional<uint64_t> fdinfo_number(std::string_view fdinfo, std::string_view key, int base);

// The records of `type` an image gives fd `f`.
std::vector<const std::string*> kobj_records(const FdEntry& f, image::RecordType type);
// EINVAL "image field out of range: ..." (restorer/check_fields.cc's words).
std::unexpected<Error> kobj_bad(const FdEntry& f, std::string what);

// Records of `f` (exactly one of `type`) as T; the check half calls it first.
template <class T>
Result<T> kobj_one(const FdEntry& f, image::RecordType type, const char* name) {
    auto recs = kobj_records(f, type);
    if (recs.size() != 1 || f.kobj.size() != 1)
        return kobj_bad(f, std::to_string(f.kobj.size()) + " records, wants one " + name);
    T v;
    std::memcpy(&v, recs[0]->data(), sizeof v);
    return v;
}

// "0755": flags in octal, as fdinfo shows them (strfmt has no octal).
std::string kobj_oct(uint64_t v);

// One record of a kind, as TaskFd::kobj holds it.
template <class T>
std::pair<image::RecordType, std::string> kobj_record(image::RecordType type, const T& rec) {
    return {type, std::string(reinterpret_cast<const char*>(&rec), sizeof rec)};
}

// The detect and dump halves of a kind whose one record is read from fdinfo.
template <class R>
std::optional<std::string> kobj_reason(const Result<R>& parsed) {
    return parsed ? std::nullopt : std::optional<std::string>(parsed.error().what);
}
template <class R>
Status kobj_add(std::vector<std::pair<image::RecordType, std::string>>& out, image::RecordType type,
                int fd, const Result<R>& parsed) {
    if (!parsed) return std::unexpected(parsed.error().context("fd " + std::to_string(fd)));
    out.push_back(kobj_record(type, *parsed));
    return {};
}

// Stage 1: `path` opened with `flags` (O_CLOEXEC added), which must be the
// inode dev/ino; -1 with `fail` set otherwise.
int kobj_open_same(const char* path, int flags, dev_t dev, ino_t ino, KobjFail& fail);

// O_PATH and directory fds: the path still names the file the fd holds.
std::optional<std::string> path_still_names(const FdView& f, const char* what);

}  // namespace crfs::state
