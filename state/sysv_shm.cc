// System V shared memory attached by the task (state/sysv_shm.h).
#include "state/sysv_shm.h"

#include <fcntl.h>
#include <sys/shm.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>

#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/writer.h"
#include "state/check.h"
#include "state/sysv_ids.h"
#include "state/tree.h"
#include "state/tree_shmem.h"

namespace crfs::state {
namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint32_t kShmLocked = 02000;  // SHM_LOCKED in shm_perm.mode

bool is_sysv(const MapsEntry& m) {
    return m.path.starts_with("/SYSV") && m.perms[3] == 's';
}

uint64_t page_up(uint64_t n) {
    return (n + kPage - 1) & ~(kPage - 1);
}

// One row of /proc/sysvipc/shm: key shmid perms size cpid lpid nattch uid gid
// cuid cgid ... (perms in octal, read here as its digits).
struct ShmRow {
    long long key = 0, shmid = -1, size = 0, nattch = 0;
    uint32_t mode = 0, uid = 0, gid = 0, cuid = 0, cgid = 0;
};

std::map<long long, ShmRow> shm_rows() {
    std::map<long long, ShmRow> out;
    for (const auto& r : sysvipc_table("shm")) {
        if (r.size() < 11) continue;
        ShmRow s;
        s.key = r[0];
        s.shmid = r[1];
        s.mode = uint32_t(std::stoul(std::to_string(r[2]), nullptr, 8));
        s.size = r[3];
        s.nattch = r[6];
        s.uid = uint32_t(r[7]);
        s.gid = uint32_t(r[8]);
        s.cuid = uint32_t(r[9]);
        s.cgid = uint32_t(r[10]);
        out[s.shmid] = s;
    }
    return out;
}

std::string range(const MapsEntry& m) {
    return strfmt("{:x}-{:x} ({})", m.start, m.end, m.path);
}

// Whether `m` is a whole attach of segment `s`.
bool whole(const MapsEntry& m, const ShmRow& s) {
    return m.pgoff == 0 && m.end - m.start == page_up(uint64_t(s.size));
}

// Segment `s` is attached by a process outside the image: `n` attaches are
// the task's (`tree`: the image's processes', all of them).
std::string outside_reason(const ShmRow& s, long long n, bool tree) {
    return strfmt(
        "memory: System V shared memory segment {} (key 0x{:x}) is attached {} times, {} by the "
        "{}: another process attaches it too, and would not share the segment a restore makes",
        s.shmid, uint32_t(s.key), s.nattch, n, tree ? "image's processes" : "task");
}

}  // namespace

// --- detect ------------------------------------------------------------------

void sysv_shm_reasons(TaskView& t, const std::vector<MapsEntry>& maps, Reasons& out) {
    std::map<long long, int> attaches;  // shmid -> whole attaches of it in the task
    bool any = false;
    for (const MapsEntry& m : maps)
        if (is_sysv(m)) any = true;
    if (!any) return;
    auto rows = shm_rows();
    for (const MapsEntry& m : maps) {
        if (!is_sysv(m)) continue;
        auto it = rows.find((long long)m.ino);
        if (it == rows.end()) {
            out.push_back(
                strfmt("memory: System V shared memory {}: segment {} is not in "
                       "/proc/sysvipc/shm (another IPC namespace's)",
                       range(m), m.ino));
            continue;
        }
        const ShmRow& s = it->second;
        if (!whole(m, s)) {
            out.push_back(
                strfmt("memory: System V shared memory {}: part of an attach of "
                       "segment {} ({} bytes), split or partly unmapped;{}",
                       range(m), s.shmid, s.size, kNotYet));
            continue;
        }
        if (s.mode & kShmLocked)
            out.push_back(
                strfmt("memory: System V shared memory segment {} is locked in memory "
                       "(SHM_LOCK);{}",
                       s.shmid, kNotYet));
        ++attaches[s.shmid];
    }
    if (attaches.empty()) return;
    // sysvtree: the other processes of the image attach the same segments
    // (state/sysv_ids.h); only an attach outside the image is a reason.
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());  // as state/tree_shmem.cc
    std::map<long long, int> others;
    for (pid_t p : inside) {
        if (p == t.pid()) continue;
        std::vector<MapsEntry> storage;
        for (const MapsEntry& m : member_maps(t, p, storage))
            if (is_sysv(m) && attaches.count((long long)m.ino) && whole(m, rows[(long long)m.ino]))
                ++others[(long long)m.ino];
    }
    for (const auto& [id, n] : attaches) {
        const ShmRow& s = rows[id];
        if (s.nattch > n + others[id])
            out.push_back(outside_reason(s, n + others[id], inside.size() > 1));
    }
}

// --- dump --------------------------------------------------------------------

Result<std::vector<image::SysvShmRecord>> dump_sysv_shm(const std::vector<MapsEntry>& maps) {
    std::vector<image::SysvShmRecord> out;
    std::map<long long, ShmRow> rows;
    for (const MapsEntry& m : maps) {
        if (!is_sysv(m)) continue;
        if (rows.empty()) rows = shm_rows();
        if (std::any_of(out.begin(), out.end(),
                        [&](const image::SysvShmRecord& r) { return uint64_t(r.shmid) == m.ino; }))
            continue;
        auto it = rows.find((long long)m.ino);
        if (it == rows.end())
            return make_error(ENOENT, strfmt("System V shared memory segment {} ({:x}-{:x}) is "
                                             "not in /proc/sysvipc/shm",
                                             m.ino, m.start, m.end));
        const ShmRow& s = it->second;
        image::SysvShmRecord r{};
        r.key = int32_t(s.key);
        r.shmid = int32_t(s.shmid);
        r.size = uint64_t(s.size);
        r.mode = s.mode & (0777 | image::kSysvShmDest);
        r.uid = s.uid;
        r.gid = s.gid;
        r.cuid = s.cuid;
        r.cgid = s.cgid;
        out.push_back(r);
    }
    return out;
}

Status share_sysv_shm_between_members(std::span<const pid_t> pids,
                                      std::span<MemoryDump* const> mems,
                                      std::span<std::vector<image::SysvShmRecord>* const> recs) {
    std::map<int32_t, size_t> first;  // shmid -> its first holder (image order)
    for (size_t i = 0; i < recs.size(); ++i)
        for (const auto& r : *recs[i]) {
            auto [at, fresh] = first.try_emplace(r.shmid, i);
            if (fresh) continue;
            const auto& was =
                *std::find_if(recs[at->second]->begin(), recs[at->second]->end(),
                              [&](const image::SysvShmRecord& o) { return o.shmid == r.shmid; });
            if (std::memcmp(&was, &r, sizeof r) != 0)
                return make_error(EAGAIN, strfmt("System V shared memory segment {}: changed "
                                                 "between pid {} and pid {}",
                                                 r.shmid, pids[at->second], pids[i]));
        }
    if (first.empty()) return {};
    std::map<long long, long long> attaches;  // shmid -> whole attaches by the members
    for (size_t i = 0; i < mems.size(); ++i)
        for (const MapsEntry& m : mems[i]->maps) {
            if (!is_sysv(m)) continue;
            ++attaches[(long long)m.ino];
            auto f = first.find(int32_t(m.ino));
            if (f != first.end() && f->second != i)  // the first holder's carry the content
                std::erase_if(mems[i]->runs, [&](const CopiedRun& r) {
                    return r.vaddr >= m.start && r.vaddr < m.end;
                });
        }
    auto rows = shm_rows();  // as sysv_shm_reasons: an attach outside the image
    for (const auto& [id, n] : attaches)
        if (auto it = rows.find(id); it != rows.end() && it->second.nattch > n)
            return make_error(EBUSY, outside_reason(it->second, n, true));
    return {};
}

// --- check (a hostile image) ---------------------------------------------------

Status check_sysv_shm(const DecodedImage& img) {
    using check::bad;
    for (size_t i = 0; i < img.sysv_shm.size(); ++i) {
        const auto& r = img.sysv_shm[i];
        std::string at = strfmt("sysv-shm {}", r.shmid);
        if (r.shmid < 0) return bad(at + ": negative id");
        if (r.size == 0 || r.size > check::kUserTop) return bad(strfmt("{}: size {}", at, r.size));
        if (r.mode & ~(0777u | image::kSysvShmDest))
            return bad(strfmt("{}: mode {:o}", at, r.mode));
        if (r.reserved) return bad(at + ": reserved field");
        if (r.key != 0 && (r.mode & image::kSysvShmDest))
            return bad(at + ": a removed segment (SHM_DEST) with a key");
        for (size_t k = 0; k < i; ++k) {
            if (img.sysv_shm[k].shmid == r.shmid) return bad(at + ": a second record");
            if (r.key != 0 && img.sysv_shm[k].key == r.key)
                return bad(strfmt("{}: key 0x{:x} of segment {} too", at, uint32_t(r.key),
                                  img.sysv_shm[k].shmid));
        }
        bool attached = std::any_of(img.vmas.begin(), img.vmas.end(), [&](const VmaEntry& v) {
            return v.rec.kind == uint32_t(image::VmaKind::kSysvShm) &&
                   v.rec.ino == uint64_t(r.shmid);
        });
        if (!attached) return bad(at + ": not attached by any VMA");
    }
    for (const auto& v : img.vmas) {
        if (v.rec.kind != uint32_t(image::VmaKind::kSysvShm)) continue;
        std::string at = strfmt("VMA {:x}-{:x}", v.rec.start, v.rec.end);
        auto r = std::find_if(
            img.sysv_shm.begin(), img.sysv_shm.end(),
            [&](const image::SysvShmRecord& s) { return uint64_t(s.shmid) == v.rec.ino; });
        if (r == img.sysv_shm.end())
            return bad(strfmt("{}: System V segment {} without its record", at, v.rec.ino));
        if (v.rec.pgoff != 0 || v.rec.end - v.rec.start != page_up(r->size) ||
            !(v.rec.flags & image::kVmaShared))
            return bad(strfmt("{}: not a whole attach of System V segment {} ({} bytes)", at,
                              r->shmid, r->size));
    }
    return {};
}

// --- restore -------------------------------------------------------------------

namespace {

const SysvKind kShm = {
    "System V shared memory",
    "shm_next_id",
    [](int id) {
        struct shmid_ds ds {};
        return shmctl(id, IPC_STAT, &ds) == 0 || errno == EACCES;
    },
    [] { return shmget(IPC_PRIVATE, 1, IPC_CREAT | 0600); },
    [](int id) { shmctl(id, IPC_RMID, nullptr); },
};

// The attach of segment `r` that run `run` lies in, or null.
const VmaEntry* attach_of(const DecodedImage& img, const PageRun& run,
                          const image::SysvShmRecord& r) {
    // VMAs are sorted and disjoint, each run in one (common/image_reader.cc).
    auto it = std::upper_bound(img.vmas.begin(), img.vmas.end(), run.vaddr,
                               [](uint64_t a, const VmaEntry& e) { return a < e.rec.start; });
    const VmaEntry* v = it == img.vmas.begin() ? nullptr : &*std::prev(it);
    if (!v || v->rec.kind != uint32_t(image::VmaKind::kSysvShm) || v->rec.ino != uint64_t(r.shmid))
        return nullptr;
    return v;
}

// The pages of the attaches of `r` in img.pages, written into the segment
// (attached at `base` in this process); they leave img.pages.
Status fill(DecodedImage& img, int pages_fd, const image::SysvShmRecord& r, char* base) {
    std::vector<PageRun> rest;
    Status out;
    for (auto& run : img.pages) {
        const VmaEntry* v = attach_of(img, run, r);
        if (!v) {
            rest.push_back(std::move(run));
            continue;
        }
        uint64_t off = run.vaddr - v->rec.start;
        if (off + run.nr_pages * kPage > v->rec.end - v->rec.start)
            return check::bad_image(
                strfmt("pages at {:x} past System V segment {}", run.vaddr, r.shmid));
        if (out)
            if (auto s = pread_exact(pages_fd, base + off, run.nr_pages * kPage, run.stream_offset);
                !s)
                out = std::unexpected(
                    s.error().context(strfmt("reading System V segment {}", r.shmid)));
    }
    img.pages = std::move(rest);
    return out;
}

// Segment `r`, made by the current (per-thread) credentials: its creator's.
// `tree`: it keeps the daemon's attach (state/sysv_ids.h).
Status make_segment(DecodedImage& img, int pages_fd, const image::SysvShmRecord& r, bool chosen,
                    SysvMade& made, SysvTree* tree) {
    std::string what =
        strfmt("System V shared memory segment {} (key 0x{:x})", r.shmid, uint32_t(r.key));
    int id = shmget(r.key, r.size, IPC_CREAT | IPC_EXCL | int((r.mode & 0777) | 0600));
    if (auto s = sysv_created(kShm, what, id, r.shmid, chosen, made); !s) return s;
    struct shmid_ds ds {};
    if (shmctl(id, IPC_STAT, &ds) != 0) return errno_error("IPC_STAT of " + what);
    if (auto s = sysv_same_creator(what, ds.shm_perm.cuid, ds.shm_perm.cgid, r.cuid, r.cgid); !s)
        return s;
    void* base = shmat(id, nullptr, 0);
    if (base == reinterpret_cast<void*>(-1)) return errno_error("attaching " + what);
    auto s = fill(img, pages_fd, r, static_cast<char*>(base));
    if (tree)
        tree->pin(base);
    else
        shmdt(base);
    if (!s) return s;
    ds.shm_perm.uid = r.uid;
    ds.shm_perm.gid = r.gid;
    ds.shm_perm.mode = r.mode & 0777;
    if (shmctl(id, IPC_SET, &ds) != 0)
        return errno_error(
            strfmt("giving {} owner {}:{} and mode {:o}", what, r.uid, r.gid, r.mode & 0777));
    return {};
}

// sysvtree: segment `r` of a later member, which process `o.maker` of the
// tree made: the same record, and its attaches without pages of their own.
Status take_segment(const DecodedImage& img, const image::SysvShmRecord& r,
                    const SysvTree::Object& o) {
    std::string at = strfmt("sysv-shm {} of process {}", r.shmid, img.task.pid);
    if (o.rec.size() != sizeof r || std::memcmp(o.rec.data(), &r, sizeof r) != 0)
        return check::bad_image(
            strfmt("{}: not the segment process {} made of that id (its key, size, mode or owner "
                   "differ)",
                   at, o.maker));
    for (const auto& run : img.pages)
        if (attach_of(img, run, r))
            return check::bad_image(
                strfmt("{}: pages at {:x}, in an attach of a segment process {} made and filled",
                       at, run.vaddr, o.maker));
    return {};
}

}  // namespace

Status sysv_shm_restore(DecodedImage& img, int pages_fd, const WriterPlan& writer, SysvTree* tree,
                        SysvMade& made) {
    for (const auto& r : img.sysv_shm) {
        if (const auto* o = tree ? tree->find(kShm, r.shmid) : nullptr) {
            if (auto s = take_segment(img, r, *o); !s) return s;
            continue;
        }
        if (auto m = sysv_make(
                kShm, writer, r.shmid, r.cuid, r.cgid,
                [&](bool chosen) { return make_segment(img, pages_fd, r, chosen, made, tree); });
            !m)
            return m;
        if (tree)
            tree->add(kShm, r.shmid, std::string(reinterpret_cast<const char*>(&r), sizeof r),
                      img.task.pid);
    }
    return {};
}

void sysv_shm_blob_vma(const DecodedImage& img, const VmaEntry& v, crfs_ra_vma& r) {
    r.kind = CRFS_RA_SYSV;
    r.file_off = v.rec.ino;
    // VM_MAYWRITE ("mw", bit 5) is what SHM_RDONLY takes away.
    r.open_flags = ((v.rec.vm_flags & (1u << 5)) ? 0 : SHM_RDONLY) |
                   ((v.rec.flags & image::kVmaExec) ? SHM_EXEC : 0);
    for (const auto& s : img.sysv_shm)
        if (uint64_t(s.shmid) == v.rec.ino && (s.mode & image::kSysvShmDest))
            r.mmap_flags = CRFS_RA_SYSV_RMID;
}

}  // namespace crfs::state
