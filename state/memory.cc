// Memory: every VMA with its protection, private anonymous and dirty private
// file pages, shared anonymous content, deleted private file mappings
// (dumped by state/memory_dump.cc), mapped again by the blob
// (state/memory_restore.cc, restorer/blob/blob.c). Deny by default: a VMA
// flag outside kAllowed, a kind of mapping the restore cannot rebuild
// exactly, locked memory and guard regions are reasons.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "common/io.h"
#include "common/pagemap_scan.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/kind.h"
#include "state/memfd.h"
#include "state/memory.h"
#include "state/sysv_shm.h"
#include "state/tree_shmem.h"
#include "state/vma_names.h"

namespace crfs {

image::VmaKind classify_vma(const MapsEntry& e) {
    if (e.path == "[vdso]") return image::VmaKind::kVdso;
    if (e.path == "[vvar]" || e.path == "[vvar_vclock]") return image::VmaKind::kVvar;
    if (e.path == "[vsyscall]") return image::VmaKind::kVsyscall;
    bool shared = e.perms[3] == 's';
    if (state::is_memfd_path(e.path))  // state/memfd.cc
        return shared ? image::VmaKind::kMemfdShared : image::VmaKind::kMemfdPrivate;
    if (shared && e.path.starts_with("/SYSV"))  // state/sysv_shm.cc
        return image::VmaKind::kSysvShm;
    if (shared) {
        // Shared anonymous memory is a shmem file: "/dev/zero (deleted)",
        // "[anon_shmem:name]"; a memfd or unlinked file cannot be re-mapped either.
        if (e.ino == 0 || e.path.ends_with(" (deleted)") || e.path.starts_with("[anon_shmem:"))
            return image::VmaKind::kAnonShared;
        return image::VmaKind::kFileShared;
    }
    if (e.ino == 0) return image::VmaKind::kAnonPrivate;  // heap, stack, [anon:name], plain mmap
    return image::VmaKind::kFilePrivate;
}

const char* map_files_use(const MapsEntry& e) {
    image::VmaKind kind = classify_vma(e);
    if (kind == image::VmaKind::kAnonShared) return "shared memory";
    if (kind == image::VmaKind::kSysvShm) return "System V shared memory";
    if (kind == image::VmaKind::kFilePrivate && e.path.ends_with(" (deleted)"))
        return "private mapping of a deleted file";
    return nullptr;
}

}  // namespace crfs

namespace crfs::state {
namespace {

// smaps VmFlags the checkpoint and restore handle exactly: protection and
// may-bits, shared, grows-down, accounting, noreserve, soft-dirty; and the
// ones the blob applies again from VmaRecord.vm_flags (state/memory_restore.cc
// madvise_bits, blob advise_vmas): mlock (lo, lf), MADV_DONTFORK (dc),
// MADV_WIPEONFORK (wf), MADV_HUGEPAGE (hg), MADV_NOHUGEPAGE (nh),
// MADV_DONTDUMP (dd).
constexpr std::string_view kAllowed[] = {"rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "ac",
                                         "nr", "sd", "nh", "dd", "lo", "lf", "dc", "wf", "hg"};

// kAllowed as bits of VmaRecord.vm_flags (image::kVmFlagNames): an area
// with no other bit set (nearly all) skips the loop over its flags.
constexpr uint64_t kAllowedBits = [] {
    uint64_t bits = 0;
    for (size_t i = 0; i < std::size(image::kVmFlagNames); ++i)
        if (std::find(std::begin(kAllowed), std::end(kAllowed),
                      std::string_view(image::kVmFlagNames[i])) != std::end(kAllowed))
            bits |= 1ull << i;
    return bits;
}();

// What the others mean to a user (fs/proc/task_mmu.c show_smap_vma_flags).
struct FlagName {
    std::string_view flag, what;
};
constexpr FlagName kFlagNames[] = {
    {"lo", "locked (mlock)"},
    {"lf", "locked on fault (MLOCK_ONFAULT)"},
    {"dc", "MADV_DONTFORK"},
    {"wf", "MADV_WIPEONFORK"},
    {"dd", "MADV_DONTDUMP"},
    {"hg", "MADV_HUGEPAGE"},
    {"nh", "MADV_NOHUGEPAGE"},
    {"mg", "MADV_MERGEABLE (KSM)"},
    {"sr", "MADV_SEQUENTIAL"},
    {"rr", "MADV_RANDOM"},
    {"ht", "hugetlb"},
    {"um", "userfaultfd (missing)"},
    {"uw", "userfaultfd (write-protect)"},
    {"ui", "userfaultfd (minor)"},
    {"sl", "sealed (mseal)"},
    {"ss", "shadow stack"},
    {"pf", "PFN map"},
    {"io", "I/O memory"},
    {"de", "do not expand"},
    {"mm", "mixed map"},
    {"gu", "guard regions (MADV_GUARD_INSTALL)"},
};

bool special(const MapsEntry& m) {
    return m.path == "[vdso]" || m.path == "[vvar]" || m.path == "[vvar_vclock]" ||
           m.path == "[vsyscall]";
}

std::string range(const MapsEntry& m) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%" PRIx64 "-%" PRIx64, m.start, m.end);
    std::string s = buf;
    if (!m.path.empty()) s += " (" + m.path + ")";
    return s;
}

// Whether [start, end) holds a guard region. "gu" only says it may have held
// one; the page tables say whether it does now. A kernel that cannot tell is
// taken at its word ("maybe" counts).
// The first range of [m.start, m.end) in `category` (PAGEMAP_SCAN): how many
// (0 or 1) into `out`; -1 if the kernel cannot tell.
Result<int> first_of(int pagemap, const MapsEntry& m, uint64_t category, PmPageRegion& out) {
    PmScanArg a{};
    a.size = sizeof a;
    a.start = m.start;
    a.end = m.end;
    a.vec = reinterpret_cast<uint64_t>(&out);
    a.vec_len = 1;
    a.category_anyof_mask = category;
    a.return_mask = category;
    int n = ioctl(pagemap, kPagemapScan, &a);
    if (n < 0 && errno == ESRCH) return sys_error(ESRCH, "PAGEMAP_SCAN");
    return n < 0 ? -1 : n;
}

Result<bool> has_guard(int pagemap, const MapsEntry& m) {
    PmPageRegion r;
    auto n = first_of(pagemap, m, kPageIsGuard, r);
    if (!n) return std::unexpected(n.error());
    return *n != 0;  // -1: "maybe" counts
}

// incr (docs/incremental.md): a write-protect registration that is
// asynchronous (UFFD_FEATURE_WP_ASYNC, seen as PAGE_IS_WPALLOWED) never makes
// the task wait: the kernel resolves each write itself. The task behaves as
// without it, so it is no reason (the delta tracking registers so). A kernel
// that cannot tell makes it one.
Result<bool> async_wp(int pagemap, const MapsEntry& m) {
    // A category of the whole area: its first page tells (a walk of one page
    // table entry, not of the whole area).
    MapsEntry first = m;
    first.end = m.start + 4096;
    PmPageRegion r;
    auto n = first_of(pagemap, first, kPageIsWpAllowed, r);
    if (!n) return std::unexpected(n.error());
    return *n == 1 && r.start == m.start;
}

// What the file `m` maps is, when it is not a regular file: the restore maps
// regular files only (state/file_policy_check.cc, the blob's open_regular). A
// private mapping of /dev/zero is one: anonymous memory that maps still
// names "/dev/zero". Asked as the caller, at the path maps shows, of the
// mapped inode only (another file there now is the file policy's, at
// restore); nullptr otherwise. `seen`: the paths stat'd for this task so far
// (perf: a library is mapped in 4-5 areas; one stat of its path, not one each).
using PathStats = std::map<std::string, std::optional<struct stat>, std::less<>>;
const char* not_regular(const MapsEntry& m, PathStats& seen) {
    auto it = seen.find(m.path);
    if (it == seen.end()) {
        struct stat st;
        it = seen.emplace(m.path,
                          ::stat(m.path.c_str(), &st) == 0 ? std::optional(st) : std::nullopt)
                 .first;
    }
    const std::optional<struct stat>& st = it->second;
    if (!st || st->st_ino != m.ino || st->st_dev != makedev(m.dev_major, m.dev_minor) ||
        S_ISREG(st->st_mode))
        return nullptr;
    if (S_ISCHR(st->st_mode)) return "character device";
    if (S_ISBLK(st->st_mode)) return "block device";
    return "file that is not a regular file";
}

std::atomic<OursToProtect> g_ours_to_protect{nullptr};   // crfsd's (set_ours_to_protect)
std::atomic<OursRegistered> g_ours_registered{nullptr};  // a worker's (set_ours_registered)

}  // namespace

void set_ours_to_protect(OursToProtect f) {
    g_ours_to_protect = f;
}

void set_ours_registered(OursRegistered f) {
    g_ours_registered = f;
}

Status detect_memory(TaskView& t, Reasons& out) {
    // A task a live snapshot of crfs streams runs with its memory registered
    // to crfs's userfaultfd (write-protect); it cannot have such a
    // registration of its own then (the checkpoint refused one, and an area
    // takes one userfaultfd) but on an area mapped after the freeze, which
    // the next checkpoint finds.
    OursToProtect ours = g_ours_to_protect.load();
    bool ours_wp = ours && ours(t.pid());
    OursRegistered ahead = g_ours_registered.load();
    auto maps = t.smaps();
    if (!maps) return std::unexpected(maps.error());
    UniqueFd pagemap;
    PathStats stats;
    shmem_alias_reasons(**maps, out);  // state/shmem.cc
    shmem_share_reasons(t, out);       // state/tree_shmem.cc
    sysv_shm_reasons(t, **maps, out);  // state/sysv_shm.cc
    for (const MapsEntry& m : **maps) {
        if (special(m)) continue;
        // Read through /proc/<pid>/map_files by the dump, which the kernel
        // opens only with CAP_CHECKPOINT_RESTORE: asked of it, as the caller.
        if (const char* what = map_files_use(m)) {
            std::string link = t.path(strfmt("map_files/{:x}-{:x}", m.start, m.end));
            struct stat st;
            if (::stat(link.c_str(), &st) != 0 && (errno == EPERM || errno == EACCES))
                out.push_back(
                    strfmt("vma {:x}-{:x}: {} is read through /proc/{}/map_files, "
                           "which the kernel opens only with CAP_CHECKPOINT_RESTORE",
                           m.start, m.end, what, t.pid()));
        }
        vma_name_reasons(t, m, out);  // names: state/vma_names.cc
        bool shared = m.perms[3] == 's';
        bool deleted = m.path.ends_with(" (deleted)");
        if (m.path.starts_with("/[aio]")) {
            out.push_back("memory: AIO ring " + range(m) + " (io_setup)" + std::string(kNotYet));
            continue;
        }
        if (classify_vma(m) == image::VmaKind::kSysvShm) continue;  // state/sysv_shm.cc
        bool shmem =
            m.ino == 0 || m.path.starts_with("/dev/zero") || m.path.starts_with("[anon_shmem:");
        if (is_memfd_path(m.path)) {  // state/memfd.cc; its VmFlags are checked below
            if (auto why = memfd_vma_reason(t, m)) out.push_back(*why);
        } else if (shared && shmem) {
            // Mapped by other processes: state/tree_shmem.cc (shmem_share_reasons).
        } else if (shared && !shmem && deleted) {
            out.push_back("memory: shared mapping of a deleted file " + range(m) +
                          std::string(kNotYet));
        } else if (auto kind = classify_vma(m); !deleted && (kind == image::VmaKind::kFilePrivate ||
                                                             kind == image::VmaKind::kFileShared)) {
            if (const char* type = not_regular(m, stats))
                out.push_back(strfmt("memory: {} mapping of a {} {}{}",
                                     shared ? "shared" : "private", type, range(m), kNotYet));
        }
        if (!m.unknown_flags.empty())
            out.push_back("memory: " + range(m) +
                          " has VmFlags unknown to crfs: " + m.unknown_flags);
        for (size_t i = 0; i < std::size(image::kVmFlagNames); ++i) {
            if (!(m.vm_flags & ~kAllowedBits & (1ull << i))) continue;
            std::string_view f = image::kVmFlagNames[i];
            if (f == "uw" && (ours_wp || (ahead && ahead(t.pid(), m.start, m.end)))) continue;
            if (f == "gu" || f == "uw") {
                if (!pagemap) {
                    auto fd = open_fd(t.path("pagemap"), O_RDONLY);
                    if (!fd) return std::unexpected(fd.error());
                    pagemap = std::move(*fd);
                }
                if (f == "gu") {
                    auto g = has_guard(pagemap.get(), m);
                    if (!g) return std::unexpected(g.error());
                    if (!*g) continue;
                } else {
                    auto a = async_wp(pagemap.get(), m);
                    if (!a) return std::unexpected(a.error());
                    if (*a) continue;
                }
            }
            std::string what = "flag " + std::string(f);
            for (const auto& n : kFlagNames)
                if (n.flag == f) what = std::string(n.what);
            out.push_back("memory: " + range(m) + " is " + what + std::string(kNotYet));
        }
    }
    return {};
}

}  // namespace crfs::state
