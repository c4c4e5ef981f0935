#include "checkpoint/incremental.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <algorithm>

#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/pagemap_scan.h"
#include "common/procfs.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

constexpr uint64_t kPage = image::kPageSize;

// Areas the tracking covers: private anonymous memory (heap, stacks, mmap).
// File-backed and shared areas are copied in full each time, as a complete
// image copies them.
bool trackable(const MapsEntry& e) {
    return classify_vma(e) == image::VmaKind::kAnonPrivate;
}

bool register_area(int uffd, const MapsEntry& e) {
    uffdio_register reg{};
    reg.range.start = e.start;
    reg.range.len = e.end - e.start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0;
}

// Calls f(region) for every range of [lo, hi) PAGEMAP_SCAN returns for `a`.
template <class F>
Status scan(int pagemap, pid_t pid, uint64_t lo, uint64_t hi, PmScanArg a, F&& f) {
    PmPageRegion vec[512];
    for (uint64_t start = lo; start < hi;) {
        a.size = sizeof a;
        a.start = start;
        a.end = hi;
        a.vec = reinterpret_cast<uint64_t>(vec);
        a.vec_len = std::size(vec);
        int n = ioctl(pagemap, kPagemapScan, &a);
        if (n < 0) return errno_error(strfmt("PAGEMAP_SCAN (written pages) of task {}", pid));
        for (int i = 0; i < n; ++i) f(vec[i]);
        if (a.walk_end <= start) return make_error(EIO, "PAGEMAP_SCAN made no progress");
        start = a.walk_end;
    }
    return {};
}

// Step 1: the plan's pages in tracked areas that were not written since the
// tracking was armed move out of the plan into keep records.
Status leave_unwritten(pid_t pid, int pagemap, PagePlan& plan, Tracking& t) {
    if (plan.runs.empty()) return {};
    uint64_t lo = plan.runs.front().vaddr;
    uint64_t hi = plan.runs.back().vaddr + plan.runs.back().nr_pages * kPage;
    std::vector<std::pair<uint64_t, uint64_t>> clean;  // sorted, disjoint
    PmScanArg a{};
    a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    a.return_mask = kPageIsWritten | kPageIsWpAllowed;
    auto s = scan(pagemap, pid, lo, hi, a, [&](const PmPageRegion& r) {
        if (!(r.categories & kPageIsWpAllowed) || (r.categories & kPageIsWritten)) return;
        if (!clean.empty() && clean.back().second == r.start)
            clean.back().second = r.end;
        else
            clean.emplace_back(r.start, r.end);
    });
    if (!s) return s;

    PagePlan out;
    out.fds = std::move(plan.fds);
    out.pages_scanned = plan.pages_scanned;
    auto copy = [&](uint64_t a, uint64_t b, const PageSource& src) {
        out.runs.push_back({a, (b - a) / kPage, 0});
        out.sources.push_back(src);
        out.pages += (b - a) / kPage;
    };
    size_t c = 0;
    for (size_t r = 0; r < plan.runs.size(); ++r) {
        const PageSource& src = plan.sources[r];
        uint64_t at = plan.runs[r].vaddr, end = at + plan.runs[r].nr_pages * kPage;
        // Shared memory and unlinked files' pages are not in the page tables
        // tracking covers: always copied.
        if (src.fd >= 0 || !src.ptes) {
            copy(at, end, src);
            continue;
        }
        while (c < clean.size() && clean[c].second <= at) ++c;
        for (size_t k = c; at < end;) {
            if (k == clean.size() || clean[k].first >= end) {
                copy(at, end, src);
                break;
            }
            uint64_t a0 = std::max(at, clean[k].first), b0 = std::min(end, clean[k].second);
            if (a0 > at) copy(at, a0, src);
            if (b0 > a0) {
                t.keeps.push_back({a0, (b0 - a0) / kPage});
                t.pages_kept += (b0 - a0) / kPage;
            }
            at = std::max(at, b0);
            ++k;
        }
    }
    plan = std::move(out);
    return {};
}

// Step 2: every trackable area registered, every page in it protected (the
// written ones, and all of a newly registered area, whose pages count as
// written).
Status arm_tracking(pid_t pid, int pagemap, int uffd, const std::vector<MapsEntry>& maps) {
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const MapsEntry& e : maps) {
        if (!trackable(e)) continue;
        // Refused (a kind the kernel cannot protect): not tracked, so copied
        // in full by every delta.
        if (!register_area(uffd, e)) continue;
        lo = std::min(lo, e.start);
        hi = std::max(hi, e.end);
    }
    if (lo >= hi) return {};
    PmScanArg a{};
    a.flags = kPmScanWpMatching;
    a.category_mask = kPageIsWritten;
    a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    a.return_mask = kPageIsWritten;
    return scan(pagemap, pid, lo, hi, a, [](const PmPageRegion&) {});
}

}  // namespace

void check_tracking_uffd(const std::vector<MapsEntry>& maps, Tracking& t) {
    if (!t.uffd) return;
    for (const MapsEntry& e : maps)
        if (trackable(e)) {
            // Registered again with the same userfaultfd: nothing changes.
            // Refused: it belongs to memory the task no longer has (exec).
            if (!register_area(t.uffd.get(), e)) t.uffd.reset();
            return;
        }
}

Result<MemoryDump> dump_memory_tracked(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer,
                                       Tracking& t) {
    MemoryDump d;
    d.maps = std::move(maps);
    auto pagemap = open_fd(proc_path(pid, "pagemap"), O_RDONLY);
    if (!pagemap) return std::unexpected(pagemap.error());
    auto plan = plan_pages(pid, d.maps);
    if (!plan) return std::unexpected(plan.error());
    if (t.delta)
        if (auto s = leave_unwritten(pid, pagemap->get(), *plan, t); !s)
            return std::unexpected(s.error());
    if (auto r = copy_pages(pid, *plan, buffer); !r) return std::unexpected(r.error());
    if (auto s = arm_tracking(pid, pagemap->get(), t.uffd.get(), d.maps); !s)
        return std::unexpected(s.error());
    d.pages_scanned = plan->pages_scanned;
    d.pages_copied = plan->pages;
    d.runs = std::move(plan->runs);
    d.buffer = std::move(buffer);
    return d;
}

}  // namespace crfs
