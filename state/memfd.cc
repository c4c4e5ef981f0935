// memfd (state/memfd.h): detect, dump and restore halves of one kind, plus
// its KobjKind for the fds (state/kobj.h).
#include "state/memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>

#include "checkpoint/files.h"
#include "common/escape.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "state/holders.h"
#include "state/kobj.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

constexpr std::string_view kPrefix = "/memfd:";
constexpr std::string_view kDeletedSuffix = " (deleted)";
constexpr long kHugetlbfsMagic = 0x958458f6;
// The seals F_GET_SEALS reports (F_SEAL_SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE, EXEC).
constexpr uint32_t kSeals = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20;
constexpr uint32_t kSealExec = 0x20;
constexpr unsigned kMfdNoexecSeal = 0x8, kMfdExec = 0x10;  // linux/memfd.h (6.3)
constexpr uint32_t kOLargefile = 0100000;                  // the kernel's (glibc's is 0)

// "NAME" of "/memfd:NAME (deleted)".
std::string name_of(std::string_view path) {
    path.remove_prefix(kPrefix.size());
    if (path.ends_with(kDeletedSuffix)) path.remove_suffix(kDeletedSuffix.size());
    return std::string(path);
}

// "memfd:NAME" (reasons are escaped as a whole by state/registry.cc; errors here).
std::string shown(std::string_view path) {
    return "memfd:" + name_of(path);
}

// "who: " before a reason of a mapping; fd reasons get "fd N: " from state/fds.cc.
std::string lead(const std::string& who) {
    return who.empty() ? "" : who + ": ";
}

// The processes outside the image (`inside`), other than the task and the
// daemon, that hold memfd (dev, ino) by an fd (whose link reads `link`) or
// map it, as far as the caller sees, sorted. Processes of the image are not
// asked: their sharing is restored (state/tree_shmem_restore.h). From the
// reason read's or checkpoint's one walk of /proc/*/fd and of /proc/*/maps
// (state/holders.h), not a walk per memfd per member.
std::vector<pid_t> other_users(TaskView& t, dev_t dev, uint64_t ino, const std::string& link,
                               const std::vector<pid_t>& inside) {
    auto outside = [&](pid_t p) {
        return p != t.pid() && std::find(inside.begin(), inside.end(), p) == inside.end();
    };
    std::set<pid_t> out;
    Holders holders(t.pid(), t.holder_scan());
    for (const auto& [l, fds] : holders.fds_of({link}))
        for (const HeldFd& h : fds) {
            // The same link may name another memfd of the same name: the inode says.
            struct stat st;
            if (outside(h.pid) && !out.count(h.pid) &&
                ::stat(strfmt("/proc/{}/fd/{}", h.pid, h.fd).c_str(), &st) == 0 &&
                st.st_dev == dev && st.st_ino == ino)
                out.insert(h.pid);
        }
    HolderScan& scan = *t.holder_scan();
    if (!scan.maps_loaded) scan.load_maps();
    if (auto it = scan.memfd_mappers.find(ino); it != scan.memfd_mappers.end())
        for (pid_t p : it->second)
            if (outside(p)) out.insert(p);
    return {out.begin(), out.end()};
}

// Why memfd `link` (read through `src`, as the caller) cannot be saved.
std::optional<std::string> object_reason(TaskView& t, const std::string& who,
                                         const std::string& src, const std::string& link) {
    struct stat st;
    struct statfs sf;
    if (::stat(src.c_str(), &st) != 0 || ::statfs(src.c_str(), &sf) != 0)
        return strfmt("{}{}: cannot stat it: {}", lead(who), shown(link), std::strerror(errno));
    if (sf.f_type == kHugetlbfsMagic)
        return strfmt("{}{} on hugetlbfs (MFD_HUGETLB){}", lead(who), shown(link), kNotYet);
    if (uint64_t(st.st_size) > image::kMaxMemfdBytes)
        return strfmt("{}{} of {} bytes is larger than {}; larger memfds{}", lead(who), shown(link),
                      st.st_size, image::kMaxMemfdBytes, kNotYet);
    // shm: held or mapped by other processes of the image: restored once,
    // its record in the first holder's image (docs/trees.md); sealed against
    // writes, it is sealed at the tree's go (state/tree_shmem_restore.h).
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    auto others = other_users(t, st.st_dev, st.st_ino, link, inside);
    if (!others.empty())
        return strfmt(
            "{}{} is also held or mapped by {}; a memfd shared with another "
            "process{}",
            lead(who), shown(link), Holders::names(others), kNotYet);
    return std::nullopt;
}

// --- the fd kind (state/kobj.h) ------------------------------------------

bool match(const FdView& f) {
    return is_memfd_path(f.link) && S_ISREG(f.st.st_mode) && f.st.st_nlink == 0;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    return object_reason(t, "", t.path(strfmt("fd/{}", f.fd)), f.link);
}

Status dump(pid_t, const FdView& f, TaskFd& t) {
    t.path = "/memfd:" + name_of(f.link);  // informative: restore reopens its memfd record's
    return {};
}

const MemfdEntry* entry_of(const DecodedImage& img, uint64_t ino) {
    for (const auto& m : img.memfds)
        if (m.rec.ino == ino) return &m;
    return nullptr;
}

Status check(const FdEntry& f, const DecodedImage& img) {
    if (!f.kobj.empty()) return kobj_bad(f, "kernel-object records for a memfd");
    if (!entry_of(img, f.rec.ino))
        return kobj_bad(f, strfmt("memfd {} has no memfd record", f.rec.ino));
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK | O_APPEND | kOLargefile | O_NOATIME))
        return kobj_bad(f, strfmt("memfd open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    p.flags = int(f.rec.open_flags);
    p.n[0] = f.rec.pos;
    return {};
}

// Stage 1: a description of its own on the memfd held at `path`.
int make(const KobjPlan& p, const char* path, KobjFail& fail) {
    int fd = ::open(path, p.flags | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_OPEN_FD, errno, 0};
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fail = {CRFS_RA_STEP_FD_TYPE, ESTALE, 0};
        ::close(fd);
        return -1;
    }
    if (lseek(fd, off_t(p.n[0]), SEEK_SET) < 0) {
        fail = {CRFS_RA_STEP_SEEK_FD, errno, 0};
        ::close(fd);
        return -1;
    }
    return fd;
}

// --- dump --------------------------------------------------------------------

Status read_object(const std::string& src, const std::string& link, std::set<uint64_t>& seen,
                   MemfdDump& d) {
    auto fd = open_fd(src, O_RDONLY | O_CLOEXEC);
    if (!fd) return std::unexpected(fd.error().context(escape_nonprintable(shown(link))));
    struct stat st;
    if (fstat(fd->get(), &st) != 0) return errno_error("fstat " + src);
    if (!seen.insert(st.st_ino).second) return {};
    if (uint64_t(st.st_size) > image::kMaxMemfdBytes)
        return make_error(EFBIG, strfmt("{} of {} bytes is too large",
                                        escape_nonprintable(shown(link)), st.st_size));
    int seals = fcntl(fd->get(), F_GET_SEALS);
    if (seals < 0) return errno_error("F_GET_SEALS of " + escape_nonprintable(shown(link)));
    MemfdDump::Object o;
    o.name = name_of(link);
    if (o.name.size() > image::kMaxMemfdName)
        return make_error(ENAMETOOLONG, escape_nonprintable(shown(link)) + ": name too long");
    o.rec = {uint64_t(st.st_ino), uint64_t(st.st_size),    uint32_t(seals),
             st.st_mode & 07777u, uint32_t(o.name.size()), 0};
    off_t pos = 0;
    while (pos < st.st_size) {
        off_t data = lseek(fd->get(), pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO) break;
        if (data < 0) return errno_error("SEEK_DATA of " + escape_nonprintable(shown(link)));
        off_t hole = lseek(fd->get(), data, SEEK_HOLE);
        if (hole < 0) return errno_error("SEEK_HOLE of " + escape_nonprintable(shown(link)));
        hole = std::min<off_t>(hole, st.st_size);
        for (off_t at = data; at < hole;) {
            size_t n = size_t(std::min<off_t>(hole - at, image::kMaxFdDataPerRecord));
            std::string buf(n, '\0');
            if (auto r = pread_exact(fd->get(), buf.data(), n, uint64_t(at)); !r)
                return std::unexpected(r.error().context(escape_nonprintable(shown(link))));
            o.extents.emplace_back(uint64_t(at), std::move(buf));
            at += off_t(n);
        }
        pos = hole;
    }
    d.objects.push_back(std::move(o));
    return {};
}

// --- restore -----------------------------------------------------------------

Status copy_run(int image_fd, const MemfdEntry::Run& run, int fd) {
    char buf[65536];
    uint64_t done = 0;
    while (done < run.len) {
        size_t want = size_t(std::min<uint64_t>(run.len - done, sizeof buf));
        ssize_t r = pread(image_fd, buf, want, off_t(run.stream_offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return errno_error("reading memfd content from the image");
        if (pwrite(fd, buf, size_t(r), off_t(run.offset + done)) != r)
            return errno_error("writing memfd content");
        done += uint64_t(r);
    }
    return {};
}

}  // namespace

const KobjKind kMemfdKind = {
    image::FdKind::kMemfd, "memfd", match, detect, dump, check, plan, make, nullptr};

bool is_memfd_path(std::string_view path) {
    return path.starts_with(kPrefix) && path.ends_with(kDeletedSuffix);
}

std::optional<std::string> memfd_vma_reason(TaskView& t, const MapsEntry& m) {
    auto fds = t.fds();
    if (!fds)
        return strfmt("vma {:x}-{:x}: {}: {}", m.start, m.end, shown(m.path), fds.error().what);
    for (const FdView& f : **fds)
        if (match(f) && f.st.st_ino == m.ino) return std::nullopt;  // the fd's detect says it
    std::string who = strfmt("vma {:x}-{:x}", m.start, m.end);
    std::string src = t.path(strfmt("map_files/{:x}-{:x}", m.start, m.end));
    struct stat st;
    if (::stat(src.c_str(), &st) != 0 && (errno == EPERM || errno == EACCES))
        return strfmt(
            "{}: {} (mapped, no fd) is read through /proc/{}/map_files, which the "
            "kernel opens only with CAP_CHECKPOINT_RESTORE",
            who, shown(m.path), t.pid());
    return object_reason(t, who, src, m.path);
}

Result<MemfdDump> dump_memfds(pid_t pid, const std::vector<std::pair<int, std::string>>& fds,
                              const std::vector<MapsEntry>& maps) {
    MemfdDump d;
    std::set<uint64_t> seen;
    for (const auto& [fd, link] : fds) {
        if (!is_memfd_path(link)) continue;
        if (auto s = read_object(strfmt("/proc/{}/fd/{}", pid, fd), link, seen, d); !s)
            return std::unexpected(s.error().context(strfmt("fd {}", fd)));
    }
    for (const MapsEntry& m : maps) {
        if (!is_memfd_path(m.path) || seen.count(m.ino)) continue;
        std::string src = strfmt("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
        if (auto s = read_object(src, m.path, seen, d); !s)
            return std::unexpected(s.error().context(strfmt("vma {:x}-{:x}", m.start, m.end)));
    }
    return d;
}

void write_memfds(ImageWriter& w, const MemfdDump& d) {
    for (const auto& o : d.objects) {
        w.add(image::RecordType::kMemfd, Payload().add(o.rec).add_string(o.name));
        for (const auto& [off, bytes] : o.extents)
            w.add_external(image::RecordType::kMemfdData,
                           Payload().add(image::MemfdDataRecord{o.rec.ino, off}).bytes(),
                           bytes.data(), bytes.size());
    }
}

Status check_memfds(const DecodedImage& img) {
    auto bad = [](std::string what) {
        return make_error(EINVAL, "image field out of range: " + std::move(what));
    };
    std::set<uint64_t> used;
    for (const auto& f : img.fds)
        if (f.rec.kind == uint32_t(image::FdKind::kMemfd)) used.insert(f.rec.ino);
    // Pages of a shared memfd mapping would be written into the memfd: its
    // contents are its record's alone.
    std::vector<std::pair<uint64_t, uint64_t>> shared;
    for (const auto& v : img.vmas) {
        auto k = image::VmaKind(v.rec.kind);
        if (k != image::VmaKind::kMemfdShared && k != image::VmaKind::kMemfdPrivate) continue;
        // shm: in a tree, an earlier process's record (state/tree_shmem_restore.cc checks).
        if (!entry_of(img, v.rec.ino) && img.processes.empty())
            return bad(strfmt("VMA {:x}-{:x}: memfd {} has no memfd record", v.rec.start, v.rec.end,
                              v.rec.ino));
        used.insert(v.rec.ino);
        if (k == image::VmaKind::kMemfdShared) shared.push_back({v.rec.start, v.rec.end});
    }
    for (const auto& p : img.pages) {
        uint64_t end = p.vaddr + uint64_t(p.nr_pages) * image::kPageSize;
        auto it =
            std::upper_bound(shared.begin(), shared.end(), std::make_pair(p.vaddr, ~uint64_t(0)));
        if (it != shared.begin() && std::prev(it)->second > p.vaddr)
            return bad(strfmt("pages {:x}-{:x} in a shared memfd mapping", p.vaddr, end));
        if (it != shared.end() && it->first < end)
            return bad(strfmt("pages {:x}-{:x} in a shared memfd mapping", p.vaddr, end));
    }
    for (const auto& m : img.memfds) {
        const auto& r = m.rec;
        if (r.reserved || (r.seals & ~kSeals) || (r.mode & ~07777u) ||
            m.name.find('\0') != std::string::npos)
            return bad(strfmt("memfd {}: seals 0x{:x}, mode {}, reserved {}, or a NUL in its name",
                              r.ino, r.seals, kobj_oct(r.mode), r.reserved));
        if (!used.count(r.ino))
            return bad(strfmt("memfd {}: no fd or mapping of the task names it", r.ino));
    }
    return {};
}

Result<std::vector<MemfdHeld>> plan_memfds(const DecodedImage& img, int image_fd, int min_fd,
                                           bool chown) {
    std::vector<MemfdHeld> out;
    for (const auto& m : img.memfds) {
        const auto& r = m.rec;
        std::string what = "memfd:" + escape_nonprintable(m.name);
        // MFD_NOEXEC_SEAL (which adds F_SEAL_EXEC now) only for a memfd that
        // had that seal and no exec bit; otherwise MFD_EXEC, chmod after.
        bool noexec = (r.seals & kSealExec) && !(r.mode & 0111);
        unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (noexec ? kMfdNoexecSeal : kMfdExec);
        int fd = memfd_create(m.name.c_str(), flags);
        if (fd < 0 && errno == EINVAL && !noexec)  // a kernel before 6.3: no MFD_EXEC
            fd = memfd_create(m.name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) return errno_error("memfd_create of " + what);
        UniqueFd own(fd);
        if (ftruncate(fd, off_t(r.size)) != 0) return errno_error("ftruncate of " + what);
        for (const auto& run : m.runs)
            if (auto s = copy_run(image_fd, run, fd); !s)
                return std::unexpected(s.error().context(what));
        if ((chown && fchown(fd, img.creds.uid[3], img.creds.gid[3]) != 0) ||
            fchmod(fd, r.mode) != 0)
            return errno_error("chown/chmod of " + what);
        int hi = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
        if (hi < 0) return errno_error("dup of " + what);
        out.push_back({r.ino, UniqueFd(hi), r.seals});
    }
    return out;
}

std::string memfd_self_path(const std::vector<MemfdHeld>& held, uint64_t ino) {
    for (const auto& h : held)
        if (h.ino == ino) return strfmt("/proc/self/fd/{}", h.fd.get());
    return {};
}

std::vector<crfs_ra_memfd> memfd_blob_list(const std::vector<MemfdHeld>& held) {
    std::vector<crfs_ra_memfd> out;
    for (const auto& h : held) out.push_back({h.fd.get(), h.seals});
    return out;
}

}  // namespace crfs::state
