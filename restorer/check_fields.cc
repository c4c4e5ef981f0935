// Every field of a hostile image in range before anything is created: the
// checksum is public, so each enum, flag, number and register may have been
// chosen by the writer. A value the restore would hand to a syscall that
// accepts it but does something else than the image means (a handler for
// SIGKILL, an unknown open flag, rip outside the code) is refused here, with
// EINVAL naming the record and the value.
#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>

#include "common/file_hash.h"
#include "common/strfmt.h"
#include "restorer/check_inet.h"
#include "restorer/validate.h"
#include "state/check.h"
#include "state/itimers.h"
#include "state/kobj.h"
#include "state/locks.h"
#include "state/memfd.h"
#include "state/mlockall.h"
#include "state/pipe.h"
#include "state/regs.h"
#include "state/restart.h"
#include "state/seccomp.h"
#include "state/settings.h"
#include "state/signals.h"
#include "state/task_attrs.h"
#include "state/thread_attrs.h"
#include "state/threads.h"
#include "state/timers.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"
#include "state/vma_names.h"

namespace crfs {

namespace {

using check::bad;
using check::bad_path;
using check::kUserTop;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kVsyscall = 0xffffffffff600000ull;
constexpr uint32_t kVmaFlags = (1u << 8) - 1;  // kVmaRead .. kVmaGrowsDown
constexpr int kMaxFd = 1 << 20;                // the kernel's NR_OPEN
constexpr uint32_t kOLargefile = 0100000;      // the kernel's (glibc defines it 0 here)
// What fdinfo can show for a regular file or a device (the kernel clears
// O_CREAT, O_EXCL, O_NOCTTY and O_TRUNC after open).
constexpr uint32_t kFdOpenFlags = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | FASYNC | O_DIRECT |
                                  kOLargefile | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_SYNC |
                                  O_PATH;

Status check_vmas(const DecodedImage& img) {
    uint64_t prev_end = 0;
    for (const auto& v : img.vmas) {
        const auto& r = v.rec;
        // Formatted only for an error: 30,000 areas are 30,000 strings otherwise.
        auto at = [&r] { return strfmt("VMA {:x}-{:x}", r.start, r.end); };
        if ((r.kind < 1 || r.kind > 9) && r.kind != 14 && r.kind != 15)
            return bad(strfmt("{}: kind {}", at(), r.kind));
        if (r.flags & ~kVmaFlags) return bad(strfmt("{}: flags 0x{:x}", at(), r.flags));
        if (r.vm_flags >> std::size(image::kVmFlagNames))
            return bad(strfmt("{}: VmFlags 0x{:x}", at(), r.vm_flags));
        bool vsyscall = image::VmaKind(r.kind) == image::VmaKind::kVsyscall;
        if (r.start >= r.end || (r.start | r.end) % kPage ||
            (vsyscall ? r.start != kVsyscall : r.end > kUserTop))
            return bad(at() + ": not a page-aligned user address range");
        if (r.start < prev_end) return bad(at() + ": overlaps the VMA before it");
        prev_end = r.end;
        if (r.pgoff > (~0ull >> 12) - (r.end - r.start) / kPage)
            return bad(strfmt("{}: file offset {} pages", at(), r.pgoff));
        auto k = image::VmaKind(r.kind);
        if ((k == image::VmaKind::kFilePrivate || k == image::VmaKind::kFileShared) &&
            !(r.flags & image::kVmaDeleted) && bad_path(v.path))
            return bad(at() + ": file path not absolute or holds a NUL");
        if (auto why = state::anon_vma_name_problem(k, v.path))  // names
            return bad(at() + ": " + *why);
        // fidelity: a content fingerprint only where the policy checks content,
        // of at most the mapping's bytes.
        if (v.content && (!vma_content_checked(r) || v.content->bytes > r.end - r.start))
            return bad(strfmt("{}: vma-content of {} bytes", at(), v.content->bytes));
    }
    return {};
}

}  // namespace

const VmaEntry* vma_at(const DecodedImage& img, uint64_t addr, bool end_inclusive) {
    for (const auto& v : img.vmas)
        if (addr >= v.rec.start && (addr < v.rec.end || (end_inclusive && addr == v.rec.end)))
            return &v;
    return nullptr;
}

namespace {

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
// checks the owner's side): one share-fd record, no path, flags as any fd's.
Status check_shared_fd(const FdEntry& f) {
    const auto& r = f.rec;
    bool lead = r.same_as < 0;
    if (f.kobj.size() != (lead ? 1u : 0u) ||
        (lead && f.kobj[0].first != image::RecordType::kShareFd) || !f.path.empty() ||
        (r.open_flags & ~kFdOpenFlags) || (r.fd_flags & ~image::kFdCloexec) || f.content)
        return bad(
            strfmt("fd {}: a shared fd needs one share-fd record, no path, "
                   "known flags",
                   r.fd));
    return {};
}

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
        // Kernel objects (state/kobj.h) check their own records and flags; so do
        // pipes, FIFOs and unix sockets (state/pipe.cc, state/unix_socket.cc).
        bool kobj = state::is_kobj(r.kind);
        bool pipe = r.kind == uint32_t(image::FdKind::kPipe) ||
                    r.kind == uint32_t(image::FdKind::kUnixSocket) ||
                    r.kind == uint32_t(image::FdKind::kUnixBound) ||
                    r.kind == uint32_t(image::FdKind::kFifo);
        if ((r.kind < 1 || r.kind > 3) && !kobj && !pipe)
            return bad(strfmt("fd {}: kind {}", r.fd, r.kind));
        if (!kobj && !f.kobj.empty())
            return bad(strfmt("fd {}: kernel-object records for a file", r.fd));
        if (kobj)
            if (auto s = state::kobj_check(f, img); !s) return s;
        if ((r.open_flags & ~(kFdOpenFlags | (kobj ? uint32_t(O_EXCL) : 0))) ||
            (r.open_flags & O_ACCMODE) == O_ACCMODE)
            return bad(strfmt("fd {}: open flags 0{:o}", r.fd, r.open_flags));
        if (r.fd_flags & ~image::kFdCloexec)
            return bad(strfmt("fd {}: fd flags 0x{:x}", r.fd, r.fd_flags));
        if (r.pos > uint64_t(INT64_MAX)) return bad(strfmt("fd {}: offset {}", r.fd, r.pos));
        if (!pipe && bad_path(f.path) && !state::kobj_is_pathless(r.kind))
            return bad(strfmt("fd {}: path not absolute or holds a NUL", r.fd));
        // fidelity: a fingerprint of a read-only file, of the size its record says.
        if (f.content &&
            (!fd_content_checked(r) || f.content->size != r.size || f.content->reserved))
            return bad(strfmt("fd {}: fd-content of {} bytes (reserved 0x{:x})", r.fd,
                              f.content->size, f.content->reserved));
    }
    return {};
}

}  // namespace

Status check_fields(const DecodedImage& img) {
    for (auto check : {check_task, check_itimers, check_vmas, check_regs, check_fds, check_signals,
                       check_settings, state::check_pipes, state::check_unix_sockets, check_inet,
                       check_threads, state::check_memfds, state::check_unix_bound,

                       state::check_seccomp, state::check_posix_timers, state::check_locks,
                       check_restart, state::check_mlockall, state::check_thread_attrs})
        if (auto s = check(img); !s) return s;
    return {};
}

}  // namespace crfs
