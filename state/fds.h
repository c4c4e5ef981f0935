// File descriptors: one FdKind per kind of file, chosen by what the fd link,
// stat and fdinfo say; the first kind that matches decides. No match is a
// reason (deny by default).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "state/holders.h"
#include "state/kind.h"
#include "state/sockets.h"
#include "state/unix_socket.h"

namespace crfs::state {

// What the kinds of one task share (the socket tables, read once).
struct FdContext {
    explicit FdContext(TaskView& t) : sockets(t.pid()), holders(t.pid(), t.holder_scan()) {}
    SocketTable sockets;
    Holders holders;
    UnixTable unix_sockets;
};

struct FdKind {
    std::string_view name;
    bool (*match)(const FdView&);
    // Why this fd cannot be saved and restored exactly, or nullopt.
    std::optional<std::string> (*detect)(TaskView&, const FdView&, FdContext&);
};

std::span<const FdKind> fd_kinds();

// /dev/null, zero, full, random, urandom: no state but the open flags.
bool stateless_char_device(const FdView& f);

// The reason for one fd (without the "fd N: " prefix), or nullopt.
std::optional<std::string> fd_reason(TaskView& t, const FdView& f, FdContext& ctx);

// Open file descriptions: fds of one task that share one (dup, fork,
// `>log 2>&1`) are a group, told apart by kcmp KCMP_FILE between fds on one
// inode. The one grouping of crfs: `detect` and the checkpointer
// (checkpoint/files.cc) both call it.
struct FdIdentity {
    int fd;
    dev_t dev;
    ino_t ino;
};
// For each of `fds` (sorted by fd), the lowest fd sharing its description, or
// -1 when it is the lowest itself. The task being gone is ESRCH; a kcmp that
// fails otherwise (EPERM, ENOSYS) is an error naming the two fds. `kcmp`: the
// answers of this `reason` read or checkpoint (state/kcmp_cache.h); null: none.
Result<std::vector<int>> description_groups(pid_t pid, std::span<const FdIdentity> fds,
                                            KcmpCache* kcmp = nullptr);

}  // namespace crfs::state
