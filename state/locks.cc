// File locks held through the task's fds: the whole story here (docs/state.md,
// "locks").
//
//   detect    the "lock:" lines of /proc/<pid>/fdinfo/<fd>: leases,
//             delegations, mandatory locks, a lock the task waits for, a lock
//             on anything but a regular file are reasons
//   dump      the same lines while the task is frozen: flock and OFD locks
//             once per open file description (kcmp), POSIX locks once per
//             file (the process holds them), with their type and range
//   restore   stage 1, after the fds are in place, as the writer: flock /
//             F_OFD_SETLK / F_SETLK without waiting. A lock someone else holds
//             now is a restore error naming the file and the range.
#include "state/locks.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>

#include "common/strfmt.h"

namespace crfs::state {
namespace {

// One "lock:" line: "lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF".
struct LockLine {
    std::string text;  // blanks collapsed, for reasons
    std::string kind, mode, type, inode;
    bool waiter = false;  // "1: -> FLOCK ...": the task waits for it
    int64_t start = 0, len = 0;
    bool ok = false;  // every field read
};

std::vector<LockLine> lock_lines(const std::string& fdinfo) {
    std::vector<LockLine> out;
    for (size_t pos = 0; (pos = fdinfo.find("lock:", pos)) != std::string::npos; ++pos) {
        if (pos && fdinfo[pos - 1] != '\n') continue;
        size_t eol = fdinfo.find('\n', pos);
        std::istringstream in(
            fdinfo.substr(pos + 5, eol == std::string::npos ? eol : eol - pos - 5));
        std::vector<std::string> w;
        for (std::string t; in >> t;) w.push_back(t);
        LockLine l;
        for (const auto& t : w) l.text += (l.text.empty() ? "" : " ") + t;
        size_t i = 1;
        if (w.size() > i && w[i] == "->") l.waiter = true, ++i;
        if (w.size() == i + 7) {
            l.kind = w[i], l.mode = w[i + 1], l.type = w[i + 2], l.inode = w[i + 4];
            try {
                l.start = std::stoll(w[i + 5]);
                l.len = w[i + 6] == "EOF" ? 0 : std::stoll(w[i + 6]) - l.start + 1;
                l.ok = l.start >= 0 && l.len >= 0;
            } catch (const std::exception&) {
            }
        }
        out.push_back(std::move(l));
    }
    return out;
}

// Why a lock cannot be taken again; empty if it can.
std::string unsupported(const LockLine& l, const FdView& f) {
    if (!l.ok) return "that crfs cannot read";
    if (l.waiter) return "that the task waits for";
    if (l.kind != "FLOCK" && l.kind != "POSIX" && l.kind != "OFDLCK") return "(a " + l.kind + ")";
    if (l.mode != "ADVISORY") return "(" + l.mode + ")";
    if (l.type != "READ" && l.type != "WRITE") return "of type " + l.type;
    if (!S_ISREG(f.st.st_mode)) return "on a file that is not a regular file";
    return {};
}

image::FileLockKind kind_of(const LockLine& l) {
    return l.kind == "FLOCK"   ? image::FileLockKind::kFlock
           : l.kind == "POSIX" ? image::FileLockKind::kPosix
                               : image::FileLockKind::kOfd;
}

}  // namespace

Status detect_locks(TaskView& t, Reasons& out) {
    auto fds = t.fds();
    if (!fds) return std::unexpected(fds.error());
    for (const FdView& f : **fds)
        for (const LockLine& l : lock_lines(f.fdinfo))
            if (auto why = unsupported(l, f); !why.empty())
                out.push_back("fd " + std::to_string(f.fd) + ": holds a file lock " + why + " (" +
                              l.text + ")" + std::string(kNotYet));
    return {};
}

Result<std::vector<image::FileLockRecord>> dump_locks(TaskView& view) {
    auto fds = view.fds();
    if (!fds) return std::unexpected(fds.error());
    std::vector<image::FileLockRecord> out;
    struct Seen {
        int fd;
        std::string inode, text;
    };
    std::vector<Seen> seen;  // one per lock already recorded
    for (const FdView& f : **fds) {
        for (const LockLine& l : lock_lines(f.fdinfo)) {
            if (auto why = unsupported(l, f); !why.empty())
                return make_error(EBUSY,
                                  strfmt("fd {}: holds a file lock {} ({})", f.fd, why, l.text));
            // The same lock shows on every fd of its description (flock, OFD)
            // or of its file (POSIX): the lowest such fd holds the record.
            std::string key = l.kind + " " + l.type + " " + l.inode + " " +
                              std::to_string(l.start) + " " + std::to_string(l.len);
            bool dup = false;
            for (const Seen& s : seen) {
                if (s.text != key) continue;
                if (l.kind == "POSIX") {
                    dup = true;
                    break;
                }
                long same = syscall(SYS_kcmp, view.pid(), view.pid(), KCMP_FILE, s.fd, f.fd);
                if (same < 0)
                    return errno_error(
                        strfmt("kcmp of fds {} and {} (a file lock on both)", s.fd, f.fd));
                if (same == 0) {
                    dup = true;
                    break;
                }
            }
            if (dup) continue;
            seen.push_back({f.fd, l.inode, key});
            image::FileLockRecord r{};
            r.fd = f.fd;
            r.kind = uint32_t(kind_of(l));
            r.type = l.type == "WRITE" ? F_WRLCK : F_RDLCK;
            r.start = l.start;
            r.len = l.len;
            out.push_back(r);
        }
    }
    return out;
}

Status check_locks(const DecodedImage& img) {
    for (size_t i = 0; i < img.file_locks.size(); ++i) {
        const auto& l = img.file_locks[i];
        auto bad = [&](std::string what) {
            return make_error(EINVAL, strfmt("image field out of range: file lock {} on fd {}: {}",
                                             i, l.fd, what));
        };
        if (l.kind < 1 || l.kind > 3) return bad(strfmt("kind {}", l.kind));
        if (l.type != F_RDLCK && l.type != F_WRLCK) return bad(strfmt("type {}", l.type));
        if (l.reserved) return bad(strfmt("reserved {}", l.reserved));
        bool ranged = l.kind != uint32_t(image::FileLockKind::kFlock);
        if (l.start < 0 || l.len < 0 || (!ranged && (l.start || l.len)) ||
            (l.len && l.start > INT64_MAX - l.len))
            return bad(strfmt("range {} + {}", l.start, l.len));
        for (const auto& f : img.fds)
            if (f.rec.fd == l.fd && f.rec.kind != uint32_t(image::FdKind::kRegular) &&
                f.rec.kind != uint32_t(image::FdKind::kDeleted) &&
                f.rec.kind != uint32_t(image::FdKind::kReopened))  // deltwice: a deleted file's
                return bad(strfmt("the fd is of kind {}, not a regular file", f.rec.kind));
    }
    return {};
}

LockFail child_locks(const std::vector<image::FileLockRecord>& locks) {
    for (uint32_t i = 0; i < locks.size(); ++i) {
        const auto& l = locks[i];
        int r;
        if (l.kind == uint32_t(image::FileLockKind::kFlock)) {
            r = flock(l.fd, (l.type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB);
        } else {
            struct flock fl {};
            fl.l_type = short(l.type);
            fl.l_whence = SEEK_SET;
            fl.l_start = l.start;
            fl.l_len = l.len;
            r = fcntl(l.fd, l.kind == uint32_t(image::FileLockKind::kOfd) ? F_OFD_SETLK : F_SETLK,
                      &fl);
        }
        if (r != 0) return {errno, i};
    }
    return {};
}

std::string lock_text(const DecodedImage& img, uint32_t index) {
    if (index >= img.file_locks.size()) return strfmt("file lock {}", index);
    const auto& l = img.file_locks[index];
    std::string path;
    for (const auto& f : img.fds)
        if (f.rec.fd == l.fd) path = f.path;
    const char* type = l.type == F_WRLCK ? "WRITE" : "READ";
    if (l.kind == uint32_t(image::FileLockKind::kFlock))
        return strfmt("taking the flock {} lock of fd {} ({}) again (another holder now?)", type,
                      l.fd, path);
    std::string range = l.len ? strfmt("bytes {}-{}", l.start, l.start + l.len - 1)
                              : strfmt("bytes {}-EOF", l.start);
    return strfmt("taking the {} {} lock on {} of fd {} ({}) again (another holder now?)",
                  l.kind == uint32_t(image::FileLockKind::kOfd) ? "OFD" : "POSIX", type, range,
                  l.fd, path);
}

}  // namespace crfs::state
