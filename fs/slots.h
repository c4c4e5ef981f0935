// Restore slots: `mkdir /crfs/NAME` makes one; writing its `image` and
// closing the file restores the image as a live task.
//
//   /crfs/NAME/image    w   the image, written sequentially; restore runs at close
//                           (in FUSE flush, so close() returns the error).
//                           Once restored, reading it checkpoints the restored task.
//   /crfs/NAME/pid      r   the restored task's pid, once restored
//   /crfs/NAME/status   r   "empty" | "restored <pid>" | "error: <why>" |
//                           "exited <code>" | "killed by SIG<NAME>" (the task ended)
//   /crfs/NAME/tcp      rw  "keep" (default) | "close": the image's established TCP
//                           connections come back repaired, or aborted (docs/network.md)
//   nocr, reason        the restored task's, once restored (the slot is a view of it)
//
// A numeric NAME restores with that pid; only root or a member of the
// restore_pid_group may make one, and a live task of that pid is shown at
// /crfs/NAME instead of the slot unless the slot holds that very task
// (docs/security-limits.md). The bytes are spooled to a memfd, never kept on
// the heap; the memfd exists only from the first write until the restore
// attempt at close, so an empty slot holds no descriptor. Slots belong to
// their creator: only the creator or a caller with CAP_SYS_ADMIN may use one.
// Each slot and each spooled byte counts against its owner's limits.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_prehash.h"
#include "common/image_spool.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/access.h"
#include "fs/limits.h"

namespace crfs::fs {

inline constexpr size_t kMaxSlotName = 64;

// The files of a slot directory, declared once: lookup, readdir and getattr walk it.
struct SlotEntry {
    std::string_view name;
    mode_t mode;
};
inline constexpr SlotEntry kSlotEntries[] = {
    {"image", S_IFREG | 0600},
    {"pid", S_IFREG | 0444},
    {"status", S_IFREG | 0444},
    {"tcp", S_IFREG | 0600},
};
inline constexpr unsigned kSlotImage = 1, kSlotPid = 2, kSlotStatus = 3,
                          kSlotTcp = 4;  // entry numbers

std::optional<unsigned> find_slot_entry(std::string_view name);

// EINVAL unless NAME is 1-64 of [A-Za-z0-9._-], not "self", ".", "..", and
// not a number with a leading zero. `pid` gets the number of a numeric name.
Status check_slot_name(std::string_view name, pid_t* pid);

class SlotStream;  // fs/slot_stream.h

struct Slot {
    uint64_t id = 0;  // inode key, never reused while the daemon runs
    std::string name;
    pid_t want_pid = 0;  // numeric name
    uid_t owner_uid = 0;
    gid_t owner_gid = 0;
    time_t created = 0;
    Lease counted;  // the owner's share of user_slots, given back when the slot goes

    // Guards the fields below; held across a restore of this slot.
    std::mutex mu;
    // The bytes written so far, page data page-aligned (common/image_spool.h);
    // made at the first write.
    std::optional<ImageSpool> spool;
    Lease spool_bytes;  // the owner's share of user_spool: `written`
    uint64_t written = 0;
    // Of `written` bytes, as they arrived: the restore reads no page twice.
    ImagePrehash hash;
    bool pending = false;          // bytes written since the last restore attempt
    bool removed = false;          // rmdir'ed while a handle was open: takes no more bytes
    std::optional<Error> refused;  // a write of this image failed (ENOSPC): close says so
    pid_t restored = 0;
    // The restored task's start time (/proc stat field 22): with `restored`
    // it names that task, also as the zombie it is between the reaper's
    // `ended` and the reap (ops.cc hidden_by_task). 0 if it was unreadable.
    uint64_t restored_start = 0;
    std::string ended;  // "exited 0", "killed by SIGKILL": the restored task is gone
    std::string error;  // the last failed restore or empty close, "" if none
    // The `tcp` file: restore established connections closed.
    bool tcp_close = false;
    // stream: the restore running while the pages arrive (fs/slot_stream.h).
    std::unique_ptr<SlotStream> stream;

    std::string status_text() const;  // caller holds mu
    void drop_spool();                // caller holds mu: closes the memfd, gives back bytes
};

// Who may use a slot: its creator, or a caller with CAP_SYS_ADMIN.
Status may_use_slot(const Caller& caller, const Slot& slot);

// Who may name a slot after a pid (and so choose the pid of a restore, which
// the kernel reserves to CAP_CHECKPOINT_RESTORE): uid 0 with CAP_SYS_ADMIN in
// the daemon's user namespace, or a member of `group` (restore_pid_group).
// EPERM with words otherwise.
Status may_name_pid(const Caller& caller, const LimitConfig& config, std::string_view name);

class SlotTable {
  public:
    explicit SlotTable(Limits& limits) : limits_(limits) {}
    Result<std::shared_ptr<Slot>> create(std::string_view name, const Caller& caller);
    Status remove(std::string_view name, const Caller& caller);
    std::shared_ptr<Slot> find(std::string_view name) const;
    std::shared_ptr<Slot> find(uint64_t id) const;
    std::vector<std::shared_ptr<Slot>> list() const;

  private:
    Limits& limits_;
    mutable std::mutex mu_;  // guards the maps only; never held with a Slot::mu
    std::map<std::string, std::shared_ptr<Slot>, std::less<>> by_name_;
    std::map<uint64_t, std::shared_ptr<Slot>> by_id_;
    uint64_t next_id_ = 1;
};

// Writing the image: sequential, at the current end (EINVAL for a gap or
// overlap, or once the slot holds a restored task; ENOSPC past user_spool).
Status slot_truncate(Slot& slot);
// `writer`: who opened the image (the restore acts as them, as at close).
// `answer`, if given, is called once, under the slot's lock, before the bytes
// are used, when they go to a streamed restore (fs/slot_stream.h): the caller
// answers the writer then, so that its next write(2), and the kernel's copy of
// it into another FUSE worker, overlap this write's copy into the task
// (docs/performance.md "Restore: the FUSE write path profiled"). A failure
// of an answered write reaches the writer at its next write or at close
// (`refused`), as the failure of any image that cannot be whole.
// CRFS_SLOT_ANSWER_LATE=1 in crfsd's environment: never (benches: "before").
Result<size_t> slot_write(Limits& limits, Slot& slot, const Caller& writer, const char* buf,
                          size_t len, off_t off, const std::function<void()>& answer = {});

// At each close() of a handle open for writing (`wrote`: whether that handle
// wrote anything): restores the written image and returns the new pid, or 0
// when there is nothing new to restore. A handle closed with nothing written
// into an empty slot is ENODATA. Every attempt gives the spool back; the
// error, if any, is kept in the slot's status too. EAGAIN past user_restores.
Result<pid_t> slot_restore(Limits& limits, Slot& slot, const Caller& caller, bool wrote);

// The `tcp` file: "keep" or "close" (one trailing newline allowed), else EINVAL.
Status slot_set_tcp(Slot& slot, std::string_view text);

// The reaper saw the slot's restored task `pid` end with `info` (waitid).
void slot_task_ended(Slot& slot, pid_t pid, int code, int status);

}  // namespace crfs::fs
