// The memory kind's restore half (state/memory_restore.h).
#include "state/memory_restore.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <optional>

#include "common/file_hash.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "state/check.h"
#include "state/sysv_shm.h"
#include "state/vma_names.h"

namespace crfs {

namespace {

constexpr uint64_t kPage = 4096;
using check::kUserTop;
constexpr uint64_t kLowest = 0x10000ull;  // above any mmap_min_addr

bool is_special(const VmaEntry& v) {
    auto k = image::VmaKind(v.rec.kind);
    return k == image::VmaKind::kVdso || k == image::VmaKind::kVvar;
}

bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) {
    return a0 < b1 && b0 < a1;
}

// fidelity: the VmFlags the blob applies again (crfs_ra_vma.madv); the others
// are the mapping's own (protection, shared, grows-down, noreserve) or refused
// by state/memory.cc.
constexpr uint64_t vm_flag(std::string_view name) {
    for (size_t i = 0; i < std::size(image::kVmFlagNames); ++i)
        if (image::kVmFlagNames[i] == name) return 1ull << i;
    return 0;
}
uint64_t madvise_bits(uint64_t vm_flags) {
    struct Bit {
        uint64_t flag;
        uint32_t madv;
    };
    static constexpr Bit kBits[] = {{vm_flag("dc"), CRFS_RA_MADV_DONTFORK},
                                    {vm_flag("wf"), CRFS_RA_MADV_WIPEONFORK},
                                    {vm_flag("hg"), CRFS_RA_MADV_HUGEPAGE},
                                    {vm_flag("nh"), CRFS_RA_MADV_NOHUGEPAGE},
                                    {vm_flag("dd"), CRFS_RA_MADV_DONTDUMP}};
    uint64_t out = 0;
    for (const auto& b : kBits)
        if (vm_flags & b.flag) out |= b.madv;
    if (vm_flags & vm_flag("lo"))
        out |= (vm_flags & vm_flag("lf")) ? CRFS_RA_MADV_LOCKONFAULT : CRFS_RA_MADV_LOCK;
    return out;
}

}  // namespace

// --- plan (restore) ----------------------------------------------------------

namespace {

Result<std::vector<SpecialMapping>> read_specials() {
    auto text = read_file("/proc/self/maps");
    if (!text) return std::unexpected(text.error());
    std::vector<SpecialMapping> out;
    size_t pos = 0;
    while (pos < text->size()) {
        size_t nl = text->find('\n', pos);
        if (nl == std::string::npos) nl = text->size();
        std::string line = text->substr(pos, nl - pos);
        pos = nl + 1;
        uint64_t s, e;
        char name[64] = {};
        if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %63s", &s, &e,
                        name) != 3)
            continue;
        std::string n = name;
        if (n == "[vdso]" || n == "[vvar]" || n == "[vvar_vclock]") out.push_back({n, s, e});
    }
    return out;
}

}  // namespace

Result<std::vector<SpecialMapping>> current_specials() {
    // The kernel places a process's vdso and vvar at its exec and nothing in
    // the daemon moves them (only a restore's blob does, in its own task):
    // read once per daemon, not at every restore (~0.3 ms of /proc/self/maps
    // for a daemon of a hundred mappings; docs/performance.md "Small tasks:
    // where a 1 MiB restore's time goes").
    static std::mutex mu;
    static std::optional<std::vector<SpecialMapping>> known;
    std::lock_guard lock(mu);
    if (!known) {
        auto read = read_specials();
        if (!read) return read;
        known = std::move(*read);
    }
    return *known;
}

Result<SpecialsPlan> plan_specials(const DecodedImage& img,
                                   const std::vector<SpecialMapping>& cur) {
    SpecialsPlan plan;
    std::vector<const VmaEntry*> isp;
    const VmaEntry* ivdso = nullptr;
    for (const auto& v : img.vmas)
        if (is_special(v)) {
            isp.push_back(&v);
            if (v.path == "[vdso]") ivdso = &v;
        }
    const SpecialMapping* cvdso = nullptr;
    for (const auto& c : cur)
        if (c.name == "[vdso]") cvdso = &c;
    if (isp.empty()) {
        for (const auto& c : cur) plan.drop.push_back({c.start, c.end});
        return plan;
    }
    if (!ivdso) {
        // Data pages without code: nothing reads them; leave them out.
        for (const auto& c : cur) plan.drop.push_back({c.start, c.end});
        return plan;
    }
    if (!cvdso)
        return make_error(ENOTSUP, "the image has a vdso but this kernel maps none (vdso=0?)");
    uint64_t ilen = ivdso->rec.end - ivdso->rec.start, clen = cvdso->end - cvdso->start;
    if (ilen != clen)
        return make_error(ENOTSUP, strfmt("the image's vdso is {} pages (kernel {}), this kernel's "
                                          "is {}: the program holds pointers into vdso code that "
                                          "images do not store; restore on the same kernel",
                                          ilen / kPage,
                                          std::string(img.header.kernel_release,
                                                      strnlen(img.header.kernel_release, 64)),
                                          clen / kPage));
    // Same layout: every current special has an image twin of the same size at
    // the same offset from the vdso.
    bool same = isp.size() == cur.size();
    for (const auto& c : cur) {
        auto it = std::find_if(isp.begin(), isp.end(), [&](const VmaEntry* v) {
            return v->path == c.name && v->rec.end - v->rec.start == c.end - c.start &&
                   v->rec.start - ivdso->rec.start == c.start - cvdso->start;
        });
        if (it == isp.end()) same = false;
    }
    for (const auto& c : cur) {
        uint64_t dst = ivdso->rec.start + (c.start - cvdso->start);  // same in both cases
        uint64_t len = c.end - c.start;
        if (!same) {
            if (dst < kLowest || dst + len > kUserTop)
                return make_error(ENOTSUP, strfmt("this kernel's {} cannot be placed at "
                                                  "{:x} next to the image's vdso",
                                                  c.name, dst));
            for (const auto& v : img.vmas)
                if (!is_special(v) && image::VmaKind(v.rec.kind) != image::VmaKind::kVsyscall &&
                    overlaps(dst, dst + len, v.rec.start, v.rec.end))
                    return make_error(
                        ENOTSUP,
                        strfmt("this kernel's vdso/vvar layout differs from the image's and "
                               "its {} would land at {:x}-{:x} on the image's mapping "
                               "{:x}-{:x} {}",
                               c.name, dst, dst + len, v.rec.start, v.rec.end, v.path));
        }
        plan.moves.push_back({c.start, len, plan.tmp_len, dst});  // tmp: offset for now
        plan.tmp_len += len;
    }
    return plan;
}

Result<BlobArea> map_blob_area(const DecodedImage& img, const std::vector<SpecialMapping>& cur,
                               uint64_t len, uint64_t tmp_len,
                               const std::vector<std::pair<uint64_t, uint64_t>>& taken) {
    std::vector<std::pair<uint64_t, uint64_t>> used = taken;
    for (const auto& v : img.vmas)
        if (image::VmaKind(v.rec.kind) != image::VmaKind::kVsyscall)
            used.push_back({v.rec.start, v.rec.end});
    for (const auto& c : cur) used.push_back({c.start, c.end});
    // The vdso may be placed next to the image's vdso with this kernel's
    // offsets: keep a margin around the image's specials too.
    for (const auto& v : img.vmas)
        if (is_special(v))
            used.push_back(
                {v.rec.start > (64 << 20) ? v.rec.start - (64 << 20) : 0, v.rec.end + (64 << 20)});
    std::sort(used.begin(), used.end());
    uint64_t need = len + tmp_len + 2 * kPage;
    std::vector<std::pair<uint64_t, uint64_t>> gaps;
    uint64_t at = kLowest;
    for (const auto& [s, e] : used) {
        if (s > at) gaps.push_back({at, s});
        at = std::max(at, e);
    }
    if (at < kUserTop) gaps.push_back({at, kUserTop});
    std::sort(gaps.begin(), gaps.end(), [](auto& a, auto& b) { return a.second > b.second; });
    uint64_t step = std::max<uint64_t>(need, 256ull << 20);
    for (const auto& [gs, ge] : gaps) {
        if (ge - gs < need) continue;
        for (int k = 0; k < 32; ++k) {
            uint64_t top = ge - kPage - uint64_t(k) * step;
            if (top < gs + need) break;
            uint64_t addr = (top - len - tmp_len) & ~(kPage - 1);
            void* p = mmap(reinterpret_cast<void*>(addr), len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p == MAP_FAILED) continue;
            if (reinterpret_cast<uint64_t>(p) != addr) {
                munmap(p, len);
                continue;
            }
            return BlobArea{addr, len, addr + len};
        }
    }
    return make_error(ENOMEM, strfmt("no room for the restorer ({} KiB) outside the image's "
                                     "mappings",
                                     need >> 10));
}

MemoryPlan plan_memory(const DecodedImage& img, const BlobArea& area,
                       const std::vector<SpecialMapping>& cur, const SpecialsPlan& sp,
                       const std::vector<state::MemfdHeld>& memfds) {
    MemoryPlan plan;
    std::vector<crfs_ra_range> keep{{area.start, area.start + area.len}};
    for (const auto& m : sp.moves) keep.push_back({m.cur, m.cur + m.len});
    (void)cur;
    std::sort(keep.begin(), keep.end(), [](auto& a, auto& b) { return a.start < b.start; });
    uint64_t at = 0;
    for (const auto& k : keep) {
        if (k.start > at) plan.unmap.push_back({at, k.start});
        at = std::max(at, k.end);
    }
    if (at < kUserTop) plan.unmap.push_back({at, kUserTop});

    for (const auto& v : img.vmas) {
        auto kind = image::VmaKind(v.rec.kind);
        crfs_ra_vma r{};
        r.start = v.rec.start;
        r.end = v.rec.end;
        r.prot = ((v.rec.flags & image::kVmaRead) ? PROT_READ : 0) |
                 ((v.rec.flags & image::kVmaWrite) ? PROT_WRITE : 0) |
                 ((v.rec.flags & image::kVmaExec) ? PROT_EXEC : 0);
        std::string path;
        switch (kind) {
            case image::VmaKind::kAnonPrivate:
                r.kind = CRFS_RA_ANON;
                r.mmap_flags = MAP_PRIVATE | MAP_ANONYMOUS;
                if (v.rec.flags & image::kVmaGrowsDown) r.mmap_flags |= MAP_GROWSDOWN;
                break;
            case image::VmaKind::kAnonShared:
                r.kind = CRFS_RA_ANON;
                r.mmap_flags = MAP_SHARED | MAP_ANONYMOUS;
                break;
            case image::VmaKind::kFilePrivate:
                if (v.rec.flags & image::kVmaDeleted) {
                    // The file is gone; the image stores all its pages (up to EOF).
                    r.kind = CRFS_RA_ANON;
                    r.mmap_flags = MAP_PRIVATE | MAP_ANONYMOUS;
                    break;
                }
                r.kind = CRFS_RA_FILE;
                r.mmap_flags = MAP_PRIVATE;
                r.open_flags = O_RDONLY;
                r.file_off = v.rec.pgoff * kPage;
                path = v.path;
                break;
            case image::VmaKind::kFileShared:
                r.kind = CRFS_RA_FILE;
                r.mmap_flags = MAP_SHARED;
                // VM_MAYWRITE ("mw", bit 5) needs a writable file even while read-only.
                r.open_flags = (v.rec.flags & image::kVmaWrite) || (v.rec.vm_flags & (1u << 5))
                                   ? O_RDWR
                                   : O_RDONLY;
                r.file_off = v.rec.pgoff * kPage;
                path = v.path;
                break;
            case image::VmaKind::kMemfdShared:  // kobj: the memfd made by state/memfd.cc
            case image::VmaKind::kMemfdPrivate:
                r.kind = CRFS_RA_FILE;
                r.mmap_flags = kind == image::VmaKind::kMemfdShared ? MAP_SHARED : MAP_PRIVATE;
                r.open_flags =
                    kind == image::VmaKind::kMemfdShared &&
                            ((v.rec.flags & image::kVmaWrite) || (v.rec.vm_flags & (1u << 5)))
                        ? O_RDWR
                        : O_RDONLY;
                r.file_off = v.rec.pgoff * kPage;
                path = state::memfd_self_path(memfds, v.rec.ino);
                break;
            case image::VmaKind::kSysvShm:  // sysv: attached, filled already
                state::sysv_shm_blob_vma(img, v, r);
                path = v.path;
                plan.vmas.push_back(r);
                plan.paths.push_back(std::move(path));
                plan.names.emplace_back();
                continue;
            case image::VmaKind::kAnonSharedOwner:  // shm: state/tree_shmem_restore.h
            case image::VmaKind::kAnonSharedTaken:
                r.kind = CRFS_RA_FILE;
                r.mmap_flags = MAP_SHARED;
                r.open_flags = O_RDWR;  // as MAP_SHARED|MAP_ANONYMOUS: may-write, always
                r.file_off = v.rec.pgoff * kPage;
                path = state::memfd_self_path(memfds, v.rec.ino);
                break;
            default:
                continue;  // vdso/vvar are moved, vsyscall is fixed
        }
        // VM_NORESERVE ("nr", bit 17): huge sparse reservations (ASan's shadow)
        // only fit under the overcommit heuristic without accounting.
        if (v.rec.vm_flags & (1ull << 17)) r.mmap_flags |= MAP_NORESERVE;
        r.madv = madvise_bits(v.rec.vm_flags);  // fidelity
        plan.vmas.push_back(r);
        plan.paths.push_back(std::move(path));
        plan.names.emplace_back(state::anon_vma_name(kind, v.path));  // names
    }
    for (const auto& p : img.pages) plan.pages.push_back({p.vaddr, p.nr_pages, p.stream_offset});
    return plan;
}

// --- check (a hostile image) -------------------------------------------------

namespace {

constexpr uint64_t kVsyscall = 0xffffffffff600000ull;
constexpr uint32_t kVmaFlags = (1u << 8) - 1;  // kVmaRead .. kVmaGrowsDown

using check::bad;
using check::bad_path;

}  // namespace

Status check_vmas(const DecodedImage& img) {
    uint64_t prev_end = 0;
    for (const auto& v : img.vmas) {
        const auto& r = v.rec;
        // Formatted only for an error: 30,000 areas are 30,000 strings otherwise.
        auto at = [&r] { return strfmt("VMA {:x}-{:x}", r.start, r.end); };
        if ((r.kind < 1 || r.kind > 9) && r.kind != 14 && r.kind != 15 && r.kind != 16)
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

const VmaEntry* vma_at(const DecodedImage& img, uint64_t addr, bool end_inclusive) {
    for (const auto& v : img.vmas)
        if (addr >= v.rec.start && (addr < v.rec.end || (end_inclusive && addr == v.rec.end)))
            return &v;
    return nullptr;
}

}  // namespace crfs
