// The fd table's check of a hostile image (restorer/check_fields.cc's
// aggregator calls check_fds): every fd record's number, description group
// (same_as), flags, offset and path in range, then its kind's own check:
// files (state/file_kind.h), kernel objects (state/kobj.h), sockets
// (restorer/check_inet.h), shared descriptions (state/tree_share_restore.cc checks
// the giver's side). Pipes, FIFOs and unix sockets check their records in
// their own files (state/pipe.cc, unix_socket.cc, unix_bound.cc).
#include <fcntl.h>

#include <algorithm>
#include <set>

#include "common/file_hash.h"
#include "common/strfmt.h"
#include "restorer/check_inet.h"
#include "state/check.h"
#include "state/file_kind.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

constexpr int kMaxFd = 1 << 20;            // the kernel's NR_OPEN
constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
// What fdinfo can show for a regular file or a device (the kernel clears
// O_CREAT, O_EXCL, O_NOCTTY and O_TRUNC after open).
constexpr uint32_t kFdOpenFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | FASYNC | O_DIRECT |
                                  kOLargefile | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_SYNC |
                                  O_PATH;

using check::bad;

// A later fd of an open file description: restore dups `same_as` to it, so
// that must be an earlier record of the image that is its own description, and
// the fields restore does not read (it uses the first fd's) must say the same.
Status check_same_as(const DecodedImage& img, const FdEntry& f) {
    const auto& r = f.rec;
    auto lead = std::find_if(img.fds.begin(), img.fds.end(),
                             [&](const FdEntry& e) { return e.rec.fd == r.same_as; });
    if (lead == img.fds.end() || lead >= img.fds.begin() + (&f - img.fds.data()) ||
        lead->rec.same_as != -1 || r.same_as >= r.fd)
        return bad(
            strfmt("fd {}: same_as {} is not a lower fd recorded before it that has no "
                   "same_as of its own",
                   r.fd, r.same_as));
    const auto& l = lead->rec;
    struct Field {
        const char* name;
        bool differs;
    };
    const Field fields[] = {{"kind", r.kind != l.kind},
                            {"path", f.path != lead->path},
                            {"open_flags", r.open_flags != l.open_flags},
                            {"pos", r.pos != l.pos},
                            {"mode", r.mode != l.mode},
                            {"dev", r.dev != l.dev},
                            {"ino", r.ino != l.ino},
                            {"size", r.size != l.size},
                            {"rdev", r.rdev != l.rdev},
                            {"mtime", r.mtime_sec != l.mtime_sec || r.mtime_nsec != l.mtime_nsec}};
    for (const auto& field : fields)
        if (field.differs)
            return bad(strfmt("fd {}: same_as {} but its {} differs from fd {}'s", r.fd, r.same_as,
                              field.name, r.same_as));
    return {};
}

// share: a description an earlier process of the tree gives (state/tree_share_restore.h
// checks the owner's side): one share-fd record, no path, flags as any fd's
// (thpidfd2: O_EXCL, PIDFD_THREAD, as a kernel object's: state/pidfd.cc
// plan_taken wants the giver's flags).
Status check_shared_fd(const FdEntry& f) {
    const auto& r = f.rec;
    bool lead = r.same_as < 0;
    if (f.kobj.size() != (lead ? 1u : 0u) ||
        (lead && f.kobj[0].first != image::RecordType::kShareFd) || !f.path.empty() ||
        (r.open_flags & ~(kFdOpenFlags | uint32_t(O_EXCL))) || (r.fd_flags & ~image::kFdCloexec) ||
        f.content)
        return bad(
            strfmt("fd {}: a shared fd needs one share-fd record, no path, "
                   "known flags",
                   r.fd));
    return {};
}

bool is_pipe_kind(uint32_t kind) {
    return kind == uint32_t(image::FdKind::kPipe) || kind == uint32_t(image::FdKind::kUnixSocket) ||
           kind == uint32_t(image::FdKind::kUnixBound) || kind == uint32_t(image::FdKind::kFifo) ||
           kind == uint32_t(image::FdKind::kFifoJoin);  // fifo: state/pipe.cc check_fifo_join
}

}  // namespace

Status check_fds(const DecodedImage& img) {
    std::set<int> seen;
    for (const auto& f : img.fds) {
        const auto& r = f.rec;
        if (r.fd < 0 || r.fd >= kMaxFd || !seen.insert(r.fd).second)
            return bad(strfmt("fd number {} (negative, too large or twice)", r.fd));
        if (r.reserved) return bad(strfmt("fd {}: reserved 0x{:x}", r.fd, r.reserved));
        if (r.same_as != -1)
            if (auto s = check_same_as(img, f); !s) return s;
        if (is_socket_kind(r.kind)) {
            if (auto s = check_socket_fd(f); !s) return s;
            continue;
        }
        if (r.kind == uint32_t(image::FdKind::kShared)) {  // state/tree_share_restore.cc checks it
            if (auto s = check_shared_fd(f); !s) return s;
            continue;
        }
        bool kobj = is_kobj(r.kind);
        bool pipe = is_pipe_kind(r.kind);
        if (!kobj && !pipe && !is_file(r.kind)) return bad(strfmt("fd {}: kind {}", r.fd, r.kind));
        if (pipe && !f.kobj.empty())
            return bad(strfmt("fd {}: kernel-object records for a file", r.fd));
        if (kobj)
            if (auto s = kobj_check(f, img); !s) return s;
        if (!kobj && !pipe)
            if (auto s = file_check(f, img); !s) return s;
        uint32_t allowed = kFdOpenFlags | (kobj ? uint32_t(O_EXCL) : file_own_flags(r.kind));
        if ((r.open_flags & ~allowed) || (r.open_flags & O_ACCMODE) == O_ACCMODE)
            return bad(strfmt("fd {}: open flags 0{:o}", r.fd, r.open_flags));
        if (r.fd_flags & ~image::kFdCloexec)
            return bad(strfmt("fd {}: fd flags 0x{:x}", r.fd, r.fd_flags));
        if (r.pos > uint64_t(INT64_MAX)) return bad(strfmt("fd {}: offset {}", r.fd, r.pos));
        if (!pipe && bad_image_path(f.path) && !kobj_is_pathless(r.kind))
            return bad(strfmt("fd {}: path not absolute or holds a NUL", r.fd));
        // fidelity: a fingerprint only where the file policy checks content
        // (state/file_policy.h), of the size its record says.
        if (f.content &&
            (!fd_content_checked(r) || f.content->size != r.size || f.content->reserved))
            return bad(strfmt("fd {}: fd-content of {} bytes (reserved 0x{:x})", r.fd,
                              f.content->size, f.content->reserved));
    }
    return {};
}

}  // namespace crfs::state
