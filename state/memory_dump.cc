// The memory kind's dump half (state/memory_dump.h).
#include "state/memory_dump.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "checkpoint/task_attrs.h"
#include "common/huge_pages.h"
#include "common/io.h"
#include "common/log.h"
#include "common/pagemap_scan.h"
#include "common/strfmt.h"

namespace crfs {

using image::VmaKind;

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr size_t kPagemapBatch = 64 * 1024;  // entries per pread of pagemap
constexpr size_t kIovBatch = 1024;           // IOV_MAX

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

image::VmaRecord vma_record(const MapsEntry& e) {
    image::VmaRecord r{};
    r.start = e.start;
    r.end = e.end;
    r.pgoff = e.pgoff;
    r.dev = makedev(e.dev_major, e.dev_minor);
    r.ino = e.ino;
    r.kind = uint32_t(classify_vma(e));
    r.flags =
        (e.perms[0] == 'r' ? image::kVmaRead : 0) | (e.perms[1] == 'w' ? image::kVmaWrite : 0) |
        (e.perms[2] == 'x' ? image::kVmaExec : 0) | (e.perms[3] == 's' ? image::kVmaShared : 0) |
        (e.path == "[heap]" ? image::kVmaHeap : 0) | (e.path == "[stack]" ? image::kVmaStack : 0) |
        (ends_with(e.path, " (deleted)") ? image::kVmaDeleted : 0) |
        (e.vm_flags & (1ull << 8) ? image::kVmaGrowsDown : 0);  // kVmFlagNames[8] == "gd"
    // Not "uw": the only write-protect registration a checkpointed task may
    // have is asynchronous (state/memory.cc), the delta tracking's, which is
    // not the task's state (docs/incremental.md).
    r.vm_flags = e.vm_flags & ~(1ull << 30);  // kVmFlagNames[30] == "uw"
    r.path_len = uint32_t(e.path.size());
    return r;
}

bool page_needed(VmaKind kind, uint64_t pme) {
    switch (kind) {
        case VmaKind::kAnonPrivate:
            return pme & (kPmPresent | kPmSwapped);
        case VmaKind::kFilePrivate:
        case VmaKind::kMemfdPrivate:  // state/memfd.cc: the memfd itself is its own record
            // A present page that is not a page-cache page is a private copy: dirty.
            return (pme & kPmSwapped) || ((pme & kPmPresent) && !(pme & kPmFileOrSharedAnon));
        default:
            return false;
    }
}

bool is_zero_page(const char* page) {
    const uint64_t* w = reinterpret_cast<const uint64_t*>(page);
    for (size_t i = 0; i < kPage / 8; i += 8) {
        uint64_t acc =
            w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
        if (acc) return false;
    }
    return true;
}

// --- PageArena -----------------------------------------------------------------

PageArena::PageArena(size_t chunk) : chunk_((chunk + kHugePage - 1) & ~(kHugePage - 1)) {}

PageArena::~PageArena() {
    if (warming_) warming_->stop = true;
    if (warmer_.joinable()) warmer_.detach();
    for (auto [p, n] : chunks_) munmap(p, n);
}

bool PageArena::warm(size_t bytes) {
    bytes = (bytes + kHugePage - 1) & ~(kHugePage - 1);
    std::lock_guard lock(mu_);
    if (!bytes || !chunks_.empty() || warm_chunk_) return false;
    size_t n = std::max(chunk_, bytes);
    char* p = map_huge_aligned(n);
    if (!p) return false;
    warm_chunk_ = std::shared_ptr<char>(p, [n](char* q) { munmap(q, n); });
    warming_ = std::make_shared<Warming>();
    at_ = p;
    left_ = n;
    auto warming = [chunk = warm_chunk_, w = warming_, bytes] {
        // The freeze and the captures go first; what is not warmed by the
        // copy the copy faults in itself, as without.
        run_when_idle();
        size_t done = 0;
        for (; done < bytes && !w->stop; done += kHugePage)
            fault_in_by_writes(chunk.get() + done, kHugePage);
        w->done = done;
    };
    try {
        warmer_ = std::thread(warming);
    } catch (const std::system_error&) {
        // No thread (the caller at its RLIMIT_NPROC, say): the chunk is the
        // first, not warmed, and the copy faults it in, as without.
        return false;
    }
    return true;
}

size_t PageArena::warmed() {
    if (warmer_.joinable()) warmer_.join();
    return warming_ ? warming_->done : 0;
}

char* PageArena::take(size_t bytes) {
    bytes = (bytes + kPage - 1) & ~(kPage - 1);
    std::lock_guard lock(mu_);
    if (bytes > left_) {
        size_t n = std::max(chunk_, (bytes + kHugePage - 1) & ~(kHugePage - 1));
        char* p = map_huge_aligned(n);
        if (!p) return nullptr;
        chunks_.emplace_back(p, n);
        // A slice of a chunk or more keeps the current chunk's rest for the next.
        if (n > chunk_ || bytes > chunk_ / 2) return p;
        at_ = p;
        left_ = n;
    }
    char* slice = at_;
    at_ += bytes;
    left_ -= bytes;
    return slice;
}

// --- PageBuffer ----------------------------------------------------------------

PageBuffer::PageBuffer(PageBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      used_(std::exchange(o.used_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      arena_(std::move(o.arena_)) {}

PageBuffer& PageBuffer::operator=(PageBuffer&& o) noexcept {
    if (this != &o) {
        release();
        data_ = std::exchange(o.data_, nullptr);
        used_ = std::exchange(o.used_, 0);
        mapped_ = std::exchange(o.mapped_, 0);
        arena_ = std::move(o.arena_);
    }
    return *this;
}

PageBuffer::~PageBuffer() {
    release();
}

void PageBuffer::release() {
    if (data_ && !arena_) munmap(data_, mapped_);  // an arena's slice goes with the arena
    data_ = nullptr;
    used_ = mapped_ = 0;
    arena_.reset();
}

Status PageBuffer::reserve(size_t bytes) {
    bytes = (bytes + kPage - 1) & ~(kPage - 1);
    if (bytes <= mapped_) return {};
    if (arena_) {
        if (!data_) {
            if (char* slice = arena_->take(bytes)) {
                data_ = slice;
                mapped_ = bytes;
                return {};
            }
        }
        // More than its slice, or no room mapped: a buffer of its own, with what it holds.
        PageBuffer own;
        if (auto r = own.reserve(bytes); !r) return r;
        if (used_) std::memcpy(own.data_, data_, used_);
        own.used_ = used_;
        *this = std::move(own);
        return {};
    }
    if (data_) {
        void* p = mremap(data_, mapped_, bytes, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) return errno_error("mremap page buffer");
        data_ = static_cast<char*>(p);
        madvise(data_ + mapped_, bytes - mapped_, MADV_HUGEPAGE);
    } else if (bytes >= kHugePage / 2) {
        // perf: on huge-page boundaries and a whole number of huge pages, so
        // MADV_HUGEPAGE takes effect: the pre-fault below is then one fault
        // per 2 MiB, not one per page (1 MiB was ~0.6 ms of every small live
        // checkpoint). Smaller buffers (a tree's small members) stay as they
        // are: rounding them up would be waste.
        bytes = (bytes + kHugePage - 1) & ~(kHugePage - 1);
        data_ = map_huge_aligned(bytes);
        if (!data_) return errno_error("mmap page buffer");
    } else {
        void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return errno_error("mmap page buffer");
        data_ = static_cast<char*>(p);
    }
    // Fault the new part in now, so the copy while frozen does not pay for it.
    madvise(data_ + mapped_, bytes - mapped_, MADV_POPULATE_WRITE);
    mapped_ = bytes;
    return {};
}

Result<size_t> PageBuffer::grow(size_t bytes) {
    if (used_ + bytes > mapped_) {
        if (auto r = reserve(std::max(used_ + bytes, mapped_ + mapped_ / 4)); !r)
            return std::unexpected(r.error());
    }
    size_t off = used_;
    used_ += bytes;
    return off;
}

bool readv_can_read(const MapsEntry& e) {
    return e.perms[0] == 'r' && e.shared_kb == 0;
}

// --- dump_memory ---------------------------------------------------------------

void PagePlan::add(uint64_t vaddr, uint64_t n, PageSource src) {
    if (!new_vma && !runs.empty() && sources.back().fd < 0 && src.fd < 0 &&
        sources.back().readable == src.readable && sources.back().ptes == src.ptes &&
        runs.back().vaddr + runs.back().nr_pages * kPage == vaddr) {
        runs.back().nr_pages += n;
    } else {
        runs.push_back({vaddr, n, 0});
        sources.push_back(src);
    }
    new_vma = false;
    pages += n;
}

namespace {

using Source = PageSource;
using Plan = PagePlan;

// PAGEMAP_SCAN (Linux 6.7): the kernel walks the page tables and returns only
// populated ranges, so a huge sparse VMA (a JVM heap reservation, ASan's
// shadow) costs what it holds, not 8 bytes per page of address space.
// (common/pagemap_scan.h)

// Whether VMA `e` of `kind` is scanned through pagemap (private memory whose
// pages are stored only where populated).
bool scanned_by_pagemap(const MapsEntry& e, VmaKind kind) {
    return (kind == VmaKind::kAnonPrivate || kind == VmaKind::kFilePrivate ||
            kind == VmaKind::kMemfdPrivate) &&
           !map_files_use(e);
}

// perf: what a VMA's smaps counts already say of the pages a pagemap walk
// would find (see plan_pages). Only where the counts hold (MapsEntry::counted:
// read from smaps) and there is no swap: an anonymous VMA with no page in its
// page tables (Rss 0; copies of the zero page, which Rss leaves out and the
// walk stores, read as zero either way) or with every page there (Rss its
// size); a private file mapping with no private copy (Anonymous 0: its pages
// come back from the file) or only private copies (Anonymous its size). Not
// a hugetlb, PFN, mixed or I/O map, whose pages Rss does not count (they are
// reasons: state/memory.cc).
enum class Counted { kWalk, kNone, kAll };

Counted counted_pages(const MapsEntry& e, VmaKind kind) {
    static const uint64_t kUncounted =
        vm_flag_mask("ht") | vm_flag_mask("pf") | vm_flag_mask("mm") | vm_flag_mask("io");
    if (!e.counted || e.swap_kb || (e.vm_flags & kUncounted)) return Counted::kWalk;
    const uint64_t held = kind == VmaKind::kAnonPrivate ? e.resident_kb : e.anon_kb;
    if (held == 0) return Counted::kNone;
    if (held == (e.end - e.start) / 1024) return Counted::kAll;
    return Counted::kWalk;
}

// One PAGEMAP_SCAN walk over neighbouring pagemap-scanned VMAs maps[b, e):
// the kernel walks the page tables of the whole span and returns only
// populated ranges, so 30,000 small areas cost one walk, not 30,000 calls.
// Ranges are cut at VMA boundaries (a pages record lies in one VMA).
// Returns false if the kernel has no PAGEMAP_SCAN (the caller falls back).
Result<bool> scan_span_ioctl(pid_t pid, int pagemap, const std::vector<MapsEntry>& maps, size_t b,
                             size_t e, Plan& plan, uint64_t& scanned) {
    PmPageRegion vec[512];
    size_t v = b, last = SIZE_MAX;  // the VMA being cut; the VMA of the last run added
    for (uint64_t start = maps[b].start, end = maps[e - 1].end; start < end;) {
        PmScanArg a{};
        a.size = sizeof a;
        a.start = start;
        a.end = end;
        a.vec = reinterpret_cast<uint64_t>(vec);
        a.vec_len = std::size(vec);
        a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
        a.return_mask = kPageIsPresent | kPageIsSwapped | kPageIsFile;
        int n = ioctl(pagemap, kPagemapScan, &a);
        if (n < 0) {
            // Unknown to this kernel: the first call says so, before any run was added.
            if (start == maps[b].start &&
                (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP))
                return false;
            return errno_error(strfmt("PAGEMAP_SCAN of task {}", pid));
        }
        for (int i = 0; i < n; ++i) {
            uint64_t c = vec[i].categories;
            uint64_t pme = (c & kPageIsPresent ? kPmPresent : 0) |
                           (c & kPageIsSwapped ? kPmSwapped : 0) |
                           (c & kPageIsFile ? kPmFileOrSharedAnon : 0);
            for (uint64_t at = vec[i].start; at < vec[i].end;) {
                while (v < e && maps[v].end <= at) ++v;
                if (v == e || at < maps[v].start)
                    return make_error(EIO, strfmt("PAGEMAP_SCAN of task {} returned {:x}, outside "
                                                  "its areas",
                                                  pid, at));
                uint64_t to = std::min(vec[i].end, maps[v].end);
                if (page_needed(classify_vma(maps[v]), pme)) {
                    plan.new_vma = v != last;
                    plan.add(at, (to - at) / kPage, Source{-1, 0, readv_can_read(maps[v]), true});
                    last = v;
                }
                at = to;
            }
        }
        if (a.walk_end <= start) return make_error(EIO, "PAGEMAP_SCAN made no progress");
        start = a.walk_end;
    }
    for (size_t i = b; i < e; ++i) scanned += (maps[i].end - maps[i].start) / kPage;
    return true;
}

// Without PAGEMAP_SCAN (before Linux 6.7): 8 bytes of pagemap per page.
Status scan_pagemap(pid_t pid, int pagemap, const MapsEntry& e, VmaKind kind, Plan& plan,
                    uint64_t& scanned, std::vector<uint64_t>& pm) {
    Source src{-1, 0, readv_can_read(e), true};
    for (uint64_t addr = e.start; addr < e.end;) {
        size_t n = std::min<uint64_t>(kPagemapBatch, (e.end - addr) / kPage);
        ssize_t got = pread(pagemap, pm.data(), n * 8, off_t(addr / kPage * 8));
        if (got < 0) return errno_error(strfmt("read pagemap of task {}", pid));
        if (got == 0) return make_error(ESRCH, strfmt("pagemap of task {} ended: task gone?", pid));
        n = size_t(got) / 8;
        scanned += n;
        for (size_t i = 0; i < n;) {
            if (!page_needed(kind, pm[i])) {
                ++i;
                continue;
            }
            size_t j = i + 1;
            while (j < n && page_needed(kind, pm[j])) ++j;
            plan.add(addr + i * kPage, j - i, src);
            i = j;
        }
        addr += n * kPage;
    }
    return {};
}

// A private mapping of an unlinked file: its clean pages cannot come back from
// the file at restore, so every page the file backs is stored, read through
// the task's view (dirty copies included). Pages past the end of the file
// would fault, so the range stops there.
Status scan_deleted_private(pid_t pid, const MapsEntry& e, Plan& plan, uint64_t& scanned) {
    std::string path = proc_path(pid, strfmt("map_files/{:x}-{:x}", e.start, e.end));
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
    uint64_t file_pages = (uint64_t(st.st_size) + kPage - 1) / kPage;
    uint64_t vma_pages = (e.end - e.start) / kPage;
    uint64_t n = file_pages > e.pgoff ? std::min(vma_pages, file_pages - e.pgoff) : 0;
    if (n) plan.add(e.start, n, Source{-1, 0, readv_can_read(e)});
    scanned += vma_pages;
    return {};
}

// Shared anonymous memory: the allocated extents of the shmem file behind it.
// sysv: a System V segment's are read from the task's memory (/proc/<pid>/mem,
// any protection): its file ends at the segment's size, inside the last page
// the task can write whole.
Status scan_shared(pid_t pid, const MapsEntry& e, Plan& plan, std::vector<UniqueFd>& fds) {
    bool sysv = classify_vma(e) == VmaKind::kSysvShm;
    std::string path = proc_path(pid, strfmt("map_files/{:x}-{:x}", e.start, e.end));
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::unexpected(fd.error());
    off_t lo = off_t(e.pgoff * kPage), hi = off_t(e.pgoff * kPage + (e.end - e.start));
    for (off_t pos = lo; pos < hi;) {
        off_t data = lseek(fd->get(), pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;  // no data after pos
            return errno_error("SEEK_DATA " + path);
        }
        if (data >= hi) break;
        off_t hole = lseek(fd->get(), data, SEEK_HOLE);
        if (hole < 0) return errno_error("SEEK_HOLE " + path);
        hole = std::min(hole, hi);
        data &= ~off_t(kPage - 1);
        uint64_t n = (uint64_t(hole - data) + kPage - 1) / kPage;
        n = std::min<uint64_t>(n, (uint64_t(hi) - uint64_t(data)) / kPage);
        plan.add(e.start + uint64_t(data - lo), n,
                 sysv ? Source{-1, 0, false} : Source{fd->get(), uint64_t(data), true});
        pos = data + off_t(n * kPage);
    }
    fds.push_back(std::move(*fd));
    return {};
}

Status read_mem(int mem, uint64_t vaddr, char* dst, size_t len, pid_t pid) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(mem, dst + done, len - done, off_t(vaddr + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return make_error(
                EIO, strfmt("read {} bytes at {:x} of task {}: {}", len - done, vaddr + done, pid,
                            n < 0 ? std::strerror(errno) : "short"));
        done += size_t(n);
    }
    return {};
}

// A piece of a run, at most kMaxItemPages, so that work splits evenly over threads.
struct Item {
    uint64_t vaddr;
    size_t len;
    size_t buf_off;
    Source src;
};
constexpr uint64_t kMaxItemPages = 4096;

// Copies items [begin, end): readable task memory in process_vm_readv batches of
// up to IOV_MAX ranges into consecutive buffer space, the rest with pread.
Status copy_range(pid_t pid, int mem, const std::vector<Item>& items, size_t begin, size_t end,
                  char* base) {
    for (size_t i = begin; i < end;) {
        const Item& it = items[i];
        if (it.src.fd >= 0 || !it.src.readable) {
            char* dst = base + it.buf_off;
            if (it.src.fd >= 0) {
                auto n = pread(it.src.fd, dst, it.len, off_t(it.src.file_off));
                if (n != ssize_t(it.len))
                    return make_error(
                        EIO, strfmt("read shared memory at {:x} of task {}", it.vaddr, pid));
            } else if (auto r = read_mem(mem, it.vaddr, dst, it.len, pid); !r) {
                return r;
            }
            ++i;
            continue;
        }
        iovec remote[kIovBatch];
        size_t k = 0, bytes = 0;
        while (i + k < end && k < kIovBatch && items[i + k].src.fd < 0 &&
               items[i + k].src.readable) {
            remote[k] = {reinterpret_cast<void*>(items[i + k].vaddr), items[i + k].len};
            bytes += items[i + k].len;
            ++k;
        }
        iovec local{base + it.buf_off, bytes};
        ssize_t n = process_vm_readv(pid, &local, 1, remote, k, 0);
        if (n < 0 && errno == ESRCH) return make_error(ESRCH, strfmt("task {} is gone", pid));
        size_t got = n < 0 ? 0 : size_t(n);
        if (got == bytes) {
            i += k;
            continue;
        }
        // Short: skip the fully read items, finish the failed one through /proc/<pid>/mem.
        while (got >= items[i].len) {
            got -= items[i].len;
            ++i;
        }
        if (auto r = read_mem(mem, items[i].vaddr + got, base + items[i].buf_off + got,
                              items[i].len - got, pid);
            !r)
            return r;
        ++i;
    }
    return {};
}

// Copies every run, on up to kCopyThreads threads: one core's copy bandwidth
// is well below the machine's, and the frozen task waits on this.
constexpr unsigned kCopyThreads = 4;

Status copy_runs(pid_t pid, int mem, const Plan& plan, char* base) {
    std::vector<Item> items;
    uint64_t total = 0;
    for (size_t r = 0; r < plan.runs.size(); ++r) {
        const CopiedRun& run = plan.runs[r];
        for (uint64_t p = 0; p < run.nr_pages; p += kMaxItemPages) {
            uint64_t n = std::min(kMaxItemPages, run.nr_pages - p);
            Source src = plan.sources[r];
            src.file_off += p * kPage;
            items.push_back({run.vaddr + p * kPage, n * kPage, run.buf_off + p * kPage, src});
            total += n * kPage;
        }
    }
    // perf: the CPUs counted only for a big copy (hardware_concurrency reads
    // /sys/devices/system/cpu/online: once per tree member, before).
    if (total < (64u << 20)) return copy_range(pid, mem, items, 0, items.size(), base);
    unsigned threads = std::min(kCopyThreads, std::max(1u, std::thread::hardware_concurrency()));
    if (threads == 1) return copy_range(pid, mem, items, 0, items.size(), base);

    // Ranges of consecutive items of about equal bytes, handed out in order.
    std::vector<size_t> cuts{0};
    uint64_t per = total / (threads * 4) + 1, acc = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        acc += items[i].len;
        if (acc >= per) {
            cuts.push_back(i + 1);
            acc = 0;
        }
    }
    if (cuts.back() != items.size()) cuts.push_back(items.size());
    std::atomic<size_t> next{0};
    std::mutex mu;
    Status first_error;
    auto work = [&] {
        for (size_t c; (c = next.fetch_add(1)) + 1 < cuts.size();) {
            auto r = copy_range(pid, mem, items, cuts[c], cuts[c + 1], base);
            if (!r) {
                std::lock_guard l(mu);
                if (first_error) first_error = r;
                next = cuts.size();  // stop the others early
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    return first_error;
}

}  // namespace

Result<PagePlan> plan_pages(pid_t pid, const std::vector<MapsEntry>& areas,
                            const std::vector<char>* skip) {
    auto pagemap = open_fd(proc_path(pid, "pagemap"), O_RDONLY);
    if (!pagemap) return std::unexpected(pagemap.error());
    Plan plan;
    std::vector<uint64_t> pm;  // the pread fallback's buffer, for every VMA
    static std::atomic<bool> no_scan_ioctl{false};
    auto skipped = [&](size_t k) { return skip && (*skip)[k]; };
    for (size_t i = 0; i < areas.size();) {
        const MapsEntry& e = areas[i];
        VmaKind kind = classify_vma(e);
        plan.new_vma = true;
        Status s;
        size_t next = i + 1;
        const bool scanned = scanned_by_pagemap(e, kind);
        const Counted counted = scanned ? counted_pages(e, kind) : Counted::kWalk;
        if (skipped(i)) {
            // the caller's
        } else if (counted != Counted::kWalk) {
            if (counted == Counted::kAll)
                plan.add(e.start, (e.end - e.start) / kPage,
                         Source{-1, 0, readv_can_read(e), true});
            plan.pages_scanned += (e.end - e.start) / kPage;
        } else if (scanned) {
            auto walked = [&](size_t k) {
                VmaKind kk = classify_vma(areas[k]);
                return scanned_by_pagemap(areas[k], kk) &&
                       counted_pages(areas[k], kk) == Counted::kWalk;
            };
            while (next < areas.size() && !skipped(next) && walked(next)) ++next;
            for (size_t k = i; k < next; ++k)
                plan.pages_walked += (areas[k].end - areas[k].start) / kPage;
            auto done = no_scan_ioctl ? Result<bool>(false)
                                      : scan_span_ioctl(pid, pagemap->get(), areas, i, next, plan,
                                                        plan.pages_scanned);
            if (!done) return std::unexpected(done.error());
            if (!*done) {
                no_scan_ioctl = true;
                pm.resize(kPagemapBatch);
                for (size_t k = i; k < next && s; ++k) {
                    plan.new_vma = true;
                    s = scan_pagemap(pid, pagemap->get(), areas[k], classify_vma(areas[k]), plan,
                                     plan.pages_scanned, pm);
                }
            }
        } else if (kind == VmaKind::kFilePrivate) {
            s = scan_deleted_private(pid, e, plan, plan.pages_scanned);
        } else if (kind == VmaKind::kAnonShared || kind == VmaKind::kSysvShm) {  // sysv
            s = scan_shared(pid, e, plan, plan.fds);
        }
        if (!s) return std::unexpected(s.error());
        i = next;
    }
    return plan;
}

Status copy_pages(pid_t pid, PagePlan& plan, PageBuffer& buffer) {
    auto mem = open_fd(proc_path(pid, "mem"), O_RDONLY);
    if (!mem) return std::unexpected(mem.error());
    auto off = buffer.grow(plan.pages * kPage);
    if (!off) return std::unexpected(off.error());
    size_t pos = *off;
    for (CopiedRun& r : plan.runs) {
        r.buf_off = pos;
        pos += r.nr_pages * kPage;
    }
    return copy_runs(pid, mem->get(), plan, buffer.data());
}

MemoryTrace::MemoryTrace() : on_(getenv("CRFS_CHECKPOINT_TRACE") != nullptr) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0_ = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

void MemoryTrace::mark(const char* what) {
    if (!on_) return;
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
    log_info("checkpoint:   memory %s: %llu us", what, (unsigned long long)((now - t0_) / 1000));
    t0_ = now;
}

MemoryDump copied_dump(std::vector<MapsEntry> maps, PagePlan& plan, PageBuffer buffer) {
    MemoryDump d;
    d.maps = std::move(maps);
    d.pages_scanned = plan.pages_scanned;
    d.pages_copied = plan.pages;
    d.runs = std::move(plan.runs);
    d.buffer = std::move(buffer);
    return d;
}

Result<MemoryDump> dump_memory(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer) {
    MemoryTrace trace;
    auto plan = plan_pages(pid, maps);
    if (!plan) return std::unexpected(plan.error());
    trace.mark("pagemap scan");
    if (auto r = copy_pages(pid, *plan, buffer); !r) return std::unexpected(r.error());
    trace.mark("copy");
    return copied_dump(std::move(maps), *plan, std::move(buffer));
}

}  // namespace crfs
