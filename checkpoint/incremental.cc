#include "checkpoint/incremental.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <optional>

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

// Areas the previous checkpoint armed: registered for write-protect ("uw";
// only an asynchronous registration passes the memory kind's detect, and only
// the tracking makes one), so every page written since shows PAGE_IS_WRITTEN.
bool tracked(const MapsEntry& e) {
    return trackable(e) && (e.vm_flags >> 30 & 1);  // kVmFlagNames[30] == "uw"
}

// Step 1 for the tracked areas, in one walk of their page tables that also
// protects every populated page again (PM_SCAN_WP_MATCHING reports a page's
// categories from before): written pages into `plan`, the others into keep
// records.
Status scan_tracked(pid_t pid, int pagemap, const std::vector<MapsEntry>& maps, PagePlan& plan,
                    Tracking& t) {
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const MapsEntry& e : maps)
        if (tracked(e)) lo = std::min(lo, e.start), hi = std::max(hi, e.end);
    if (lo >= hi) return {};
    PmScanArg a{};
    a.flags = kPmScanWpMatching;
    a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    a.return_mask = kPageIsWritten;
    size_t v = 0;
    return scan(pagemap, pid, lo, hi, a, [&](const PmPageRegion& r) {
        // Cut at the areas' ends; what lies in no tracked area is not ours
        // (an area registered just now: plan_pages has it whole).
        for (uint64_t at = r.start; at < r.end;) {
            while (v < maps.size() && maps[v].end <= at) ++v;
            if (v == maps.size()) return;
            uint64_t from = std::max(at, maps[v].start), to = std::min(r.end, maps[v].end);
            if (from < to && tracked(maps[v])) {
                uint64_t n = (to - from) / kPage;
                if (r.categories & kPageIsWritten) {
                    plan.new_vma = plan.runs.empty() || plan.runs.back().vaddr < maps[v].start;
                    plan.add(from, n, PageSource{-1, 0, maps[v].perms[0] == 'r', true});
                } else {
                    t.keeps.push_back({from, n});
                    t.pages_kept += n;
                }
            }
            at = std::max(to, at + kPage);
        }
    });
}

// The plan of a delta: plan_pages for the areas not tracked, scan_tracked for
// the others, in address order.
Result<PagePlan> plan_delta(pid_t pid, int pagemap, const std::vector<MapsEntry>& maps,
                            Tracking& t) {
    // plan_pages per run of neighbouring untracked areas (it scans from the
    // first one's start to the last one's end).
    auto plan = std::optional<PagePlan>(PagePlan{});
    for (size_t i = 0; i < maps.size();) {
        if (tracked(maps[i])) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < maps.size() && !tracked(maps[j])) ++j;
        auto part = plan_pages(pid, {maps.begin() + ptrdiff_t(i), maps.begin() + ptrdiff_t(j)});
        if (!part) return std::unexpected(part.error());
        for (size_t k = 0; k < part->runs.size(); ++k) {
            plan->runs.push_back(part->runs[k]);
            plan->sources.push_back(part->sources[k]);
        }
        for (auto& fd : part->fds) plan->fds.push_back(std::move(fd));
        plan->pages += part->pages;
        plan->pages_scanned += part->pages_scanned;
        i = j;
    }
    PagePlan written;
    if (auto s = scan_tracked(pid, pagemap, maps, written, t); !s)
        return std::unexpected(s.error());
    PagePlan out;
    out.fds = std::move(plan->fds);
    out.pages = plan->pages + written.pages;
    out.pages_scanned = plan->pages_scanned;
    for (const MapsEntry& e : maps)
        if (tracked(e)) out.pages_scanned += (e.end - e.start) / kPage;
    for (size_t i = 0, j = 0; i < plan->runs.size() || j < written.runs.size();) {
        bool mine = j < written.runs.size() &&
                    (i == plan->runs.size() || written.runs[j].vaddr < plan->runs[i].vaddr);
        PagePlan& from = mine ? written : *plan;
        size_t& k = mine ? j : i;
        out.runs.push_back(from.runs[k]);
        out.sources.push_back(from.sources[k]);
        ++k;
    }
    return out;
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

bool same_members(const std::vector<TrackedMember>& tracked,
                  const std::vector<std::pair<pid_t, uint64_t>>& members) {
    if (tracked.size() != members.size()) return false;
    for (const auto& [pid, starttime] : members)
        if (std::none_of(tracked.begin(), tracked.end(), [&](const TrackedMember& m) {
                return m.pid == pid && m.starttime == starttime;
            }))
            return false;
    return true;
}

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
    MemoryTrace trace;
    auto pagemap = open_fd(proc_path(pid, "pagemap"), O_RDONLY);
    if (!pagemap) return std::unexpected(pagemap.error());
    auto plan = t.delta ? plan_delta(pid, pagemap->get(), maps, t) : plan_pages(pid, maps);
    if (!plan) return std::unexpected(plan.error());
    trace.mark("pagemap scan");
    if (auto r = copy_pages(pid, *plan, buffer); !r) return std::unexpected(r.error());
    trace.mark("copy");
    if (auto s = arm_tracking(pid, pagemap->get(), t.uffd.get(), maps); !s)
        return std::unexpected(s.error());
    trace.mark("write-protect again");
    return copied_dump(std::move(maps), *plan, std::move(buffer));
}

}  // namespace crfs
