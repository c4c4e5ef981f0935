#include "checkpoint/live_snapshot.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/freeze.h"
#include "checkpoint/parasite.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/log.h"
#include "common/pagemap_scan.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/memory.h"

namespace crfs {

namespace {

constexpr uint64_t kPage = image::kPageSize;
// Pages a write fault copies and un-protects at once (aligned, inside its
// run): a task writing a buffer front to back faults once per 64 KiB, not per page.
constexpr uint64_t kFaultPages = 16;
// Pages streamed per step: one read of the task's memory, one un-protect.
constexpr uint64_t kChunkPages = 256;

static_assert(kLiveUffdFeatures == (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_REMOVE |
                                    UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP));

Status wp_ioctl(int uffd, uint64_t start, uint64_t end, bool protect) {
    uffdio_writeprotect wp{};
    wp.range.start = start;
    wp.range.len = end - start;
    wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
        return errno_error(strfmt("{}write-protect {:x}-{:x}", protect ? "" : "un-", start, end));
    return {};
}

bool register_wp(int uffd, uint64_t start, uint64_t end) {
    uffdio_register reg{};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    return ioctl(uffd, UFFDIO_REGISTER, &reg) == 0 && (reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT));
}

// The memory the uffd and the pagemap fd stand for is gone (ESRCH: the task
// exited or ran a new program): whatever was read by pid since may be another
// program's.
std::unexpected<Error> task_gone(pid_t pid) {
    return make_error(ESRCH, strfmt("task {} exited or ran a new program (exec) while its "
                                    "image was read; open the image again for a new one",
                                    pid));
}

Error lost_memory(pid_t pid, uint64_t vaddr) {
    bool gone = kill(pid, 0) != 0 && errno == ESRCH;
    return Error{gone ? ESRCH : EAGAIN,
                 strfmt("task {} {} memory at {:x} that was not yet in the image; "
                        "open the image again for a new one",
                        pid, gone ? "exited, taking" : "unmapped", vaddr)};
}

// A page of the task that lost its content as of the freeze, unsent, with no
// userfaultfd event (check_held, check_kept).
Error taken_away(pid_t pid, uint64_t page) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return task_gone(pid).error();
    return Error{EAGAIN, strfmt("task {} took memory at {:x} away before it was in the image, "
                                "with no userfaultfd event (UFFDIO_MOVE, a guard region); open "
                                "the image again for a new one",
                                pid, page)};
}

// The task's memory, as it is now; the error says whether the task is gone.
// process_vm_readv: one copy, pages pinned in batches (perf: a pread of
// /proc/PID/mem goes page by page through a bounce page, two copies, and was
// a third of the stream's CPU time). It names the task by pid, not by mm as
// the `mem` fd does: a task that ran a new program (exec) or exited meanwhile
// is caught by the un-protect that follows every read (the uffd's mm is gone:
// ESRCH, see unprotect). Where it stops (an area without PROT_READ, which
// the `mem` fd reads with FOLL_FORCE; the task changed its credentials since
// the freeze: EPERM), the rest comes from the `mem` fd opened while frozen.
// Not `readv`: all of it from the `mem` fd (pages others map too: a pin
// would give the task a copy of its own, readv_can_read).
Status read_task(int mem, pid_t pid, uint64_t vaddr, char* dst, size_t len, bool readv) {
    size_t done = 0;
    bool by_pid = readv;
    while (done < len) {
        ssize_t n;
        if (by_pid) {
            iovec local{dst + done, len - done};
            iovec remote{reinterpret_cast<void*>(vaddr + done), len - done};
            n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
            if (n < 0 && errno != EINTR) {
                by_pid = false;  // the rest as the mem fd reads it (also: FOLL_FORCE)
                continue;
            }
        } else {
            n = pread(mem, dst + done, len - done, off_t(vaddr + done));
        }
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::unexpected(lost_memory(pid, vaddr + done));
        done += size_t(n);
    }
    return {};
}

using Spans = std::vector<std::pair<uint64_t, uint64_t>>;

// One PAGEMAP_SCAN of [start, end): fills `vec` with the ranges of the
// asked categories (`a`'s category fields); returns how many, and in
// `walk_end` where the kernel stopped (it stops when `vec` is full).
Result<size_t> scan_pages(int pagemap, pid_t pid, uint64_t start, uint64_t end, PmScanArg a,
                          PmPageRegion* vec, size_t vec_len, uint64_t& walk_end, const char* what) {
    a.size = sizeof a;
    a.start = start;
    a.end = end;
    a.vec = reinterpret_cast<uint64_t>(vec);
    a.vec_len = vec_len;
    int n = ioctl(pagemap, kPagemapScan, &a);
    if (n < 0 && errno == ESRCH) return task_gone(pid);
    if (n < 0) return errno_error(strfmt("PAGEMAP_SCAN ({}) of task {}", what, pid));
    if (a.walk_end <= start) return make_error(EIO, "PAGEMAP_SCAN made no progress");
    walk_end = a.walk_end;
    return size_t(n);
}

// The scan that finds pages holding their content as of the freeze: present
// or swapped and still write-protected (not PAGE_IS_WRITTEN).
Result<size_t> protected_ranges(int pagemap, pid_t pid, uint64_t start, uint64_t end,
                                PmPageRegion* vec, size_t vec_len, uint64_t& walk_end) {
    PmScanArg a{};
    a.category_inverted = kPageIsWritten;
    a.category_mask = kPageIsWritten;
    a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    a.return_mask = kPageIsPresent | kPageIsSwapped;
    return scan_pages(pagemap, pid, start, end, a, vec, vec_len, walk_end, "write-protected pages");
}

// Appends [start, end) to `out`, joined to its last range if they touch.
void add_span(Spans& out, uint64_t start, uint64_t end) {
    if (!out.empty() && out.back().second == start)
        out.back().second = end;
    else
        out.emplace_back(start, end);
}

// The pages of [start, end) in the page tables now (present or swapped),
// appended to `held` as ranges; those of them not write-protected
// (PAGE_IS_WRITTEN) to `unprotected` too.
Status held_ranges(int pagemap, pid_t pid, uint64_t start, uint64_t end, Spans& held,
                   Spans& unprotected) {
    PmScanArg a{};
    a.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    a.return_mask = kPageIsPresent | kPageIsSwapped | kPageIsWritten;
    PmPageRegion vec[512];
    for (uint64_t at = start; at < end;) {
        uint64_t walk_end = 0;
        auto n = scan_pages(pagemap, pid, at, end, a, vec, std::size(vec), walk_end, "held pages");
        if (!n) return std::unexpected(n.error());
        for (size_t k = 0; k < *n; ++k) {
            add_span(held, vec[k].start, vec[k].end);
            if (vec[k].categories & kPageIsWritten) add_span(unprotected, vec[k].start, vec[k].end);
        }
        at = walk_end;
    }
    return {};
}

// Whether this kernel has PAGEMAP_SCAN (Linux 6.7): without it, every page
// is planned while frozen, as before.
bool pagemap_scan_works(int pagemap) {
    PmPageRegion vec[1];
    uint64_t walk_end = 0;
    return bool(protected_ranges(pagemap, 0, 0, kPage, vec, 1, walk_end));
}

// How many threads write-protect (CRFS_LIVE_WP_THREADS, 1-4, for the bench;
// default 2): UFFDIO_WRITEPROTECT takes the mmap lock for reading, so walks of
// different ranges run at once.
size_t protect_threads() {
    static const size_t n = [] {
        const char* v = getenv("CRFS_LIVE_WP_THREADS");
        int k = v ? atoi(v) : 2;
        return size_t(std::clamp(k, 1, 4));
    }();
    return n;
}

// `spans` (sorted) as `parts` lists of ranges holding about as many pages
// each, touching spans joined (one ioctl each).
std::vector<Spans> split_spans(const Spans& spans, size_t parts) {
    Spans joined;
    uint64_t total = 0;
    for (const auto& s : spans) {
        if (!joined.empty() && joined.back().second == s.first)
            joined.back().second = s.second;
        else
            joined.push_back(s);
        total += s.second - s.first;
    }
    std::vector<Spans> out(parts);
    uint64_t share = (total / kPage + parts - 1) / parts * kPage, taken = 0;
    size_t p = 0;
    for (auto [start, end] : joined) {
        while (start < end) {
            if (p + 1 < parts && taken >= share) p++, taken = 0;
            uint64_t n = p + 1 < parts ? std::min(end - start, share - taken) : end - start;
            out[p].emplace_back(start, start + n);
            start += n;
            taken += n;
        }
    }
    return out;
}

// A fault thread's wait: for the uffd's messages, or a 1 ms bound while
// un-protects wait to be retried. False once `stop` is written, or on an
// error (logged).
bool wait_messages(pid_t pid, int uffd, int stop, bool retrying) {
    pollfd p[2] = {{uffd, POLLIN, 0}, {stop, POLLIN, 0}};
    int n = poll(p, 2, retrying ? 1 : -1);
    if (n < 0 && errno != EINTR) {
        log_error("checkpoint %d: poll userfaultfd: %s", pid, std::strerror(errno));
        return false;
    }
    return !p[1].revents;
}

// The messages of one read of the uffd (none if it has none now), or -1 on an
// error (logged).
constexpr size_t kMessages = 64;
ssize_t read_messages(pid_t pid, int uffd, uffd_msg (&msgs)[kMessages]) {
    ssize_t got = read(uffd, msgs, sizeof msgs);
    if (got < 0 && errno != EAGAIN && errno != EINTR) {
        log_error("checkpoint %d: read userfaultfd: %s", pid, std::strerror(errno));
        return -1;
    }
    return got < 0 ? 0 : got / ssize_t(sizeof(uffd_msg));
}

Status protect_all(int uffd, const Spans& part) {
    for (auto [start, end] : part)
        if (auto r = wp_ioctl(uffd, start, end, true); !r) return r;
    return {};
}

// Write-protects `spans` (sorted) through `uffd`: UFFDIO_WRITEPROTECT takes the
// mmap lock for reading, so protect_threads() parts at once. The first
// failure, if any (the other parts are still done).
Status protect_spans(int uffd, const Spans& spans) {
    auto parts = split_spans(spans, protect_threads());
    std::vector<Status> results(parts.size());
    {
        std::vector<std::jthread> others;
        for (size_t i = 1; i < parts.size(); ++i)
            others.emplace_back([&, i] { results[i] = protect_all(uffd, parts[i]); });
        results[0] = protect_all(uffd, parts[0]);
    }
    for (Status& r : results)
        if (!r) return r;
    return {};
}

// A call in the task: in the parasite's area where it is mapped (perf: one
// stop per call where a remote syscall's path through entry and exit takes two).
Result<int64_t> call_in_task(RemoteSyscall& rs, const ParasiteArea* area, long nr, uint64_t a1) {
    if (!area || !area->mapped()) return rs.call(nr, a1);
    ParasiteOutput::Call c{nr, {a1}, 0};
    if (auto r = run_batch(rs, area->base(), {&c, 1}); !r) return std::unexpected(r.error());
    return c.ret;
}

}  // namespace

uint64_t task_uffd_flags(int flags) {
    return uint64_t(O_CLOEXEC | O_NONBLOCK | flags);
}

Result<UniqueFd> take_task_uffd(pid_t pid, RemoteSyscall& rs, uint64_t features, int flags,
                                const ParasiteArea* area) {
    auto fd = call_in_task(rs, area, SYS_userfaultfd, task_uffd_flags(flags));
    if (!fd) return std::unexpected(fd.error());
    return adopt_task_uffd(pid, rs, *fd, features, area);
}

Result<UniqueFd> adopt_task_uffd(pid_t pid, RemoteSyscall& rs, int64_t made, uint64_t features,
                                 const ParasiteArea* area) {
    if (made < 0) {
        log_info("checkpoint %d: memory copied while frozen: userfaultfd in the task: %s", pid,
                 std::strerror(int(-made)));
        return UniqueFd();
    }
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    UniqueFd ours(pidfd ? int(syscall(SYS_pidfd_getfd, pidfd.get(), int(made), 0)) : -1);
    int err = errno;
    auto closed = call_in_task(rs, area, SYS_close, uint64_t(made));
    if (!closed || *closed != 0)
        return closed ? sys_error(int(-*closed), strfmt("close the userfaultfd of task {}", pid))
                      : std::unexpected(closed.error());
    if (!ours) {
        log_info("checkpoint %d: memory copied while frozen: pidfd_getfd: %s", pid,
                 std::strerror(err));
        return UniqueFd();
    }
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = features;
    if (ioctl(ours.get(), UFFDIO_API, &api) != 0) {
        log_info("checkpoint %d: memory copied while frozen: UFFDIO_API: %s", pid,
                 std::strerror(errno));
        return UniqueFd();
    }
    return ours;
}

// Private anonymous areas are protected whole, without planning their pages
// while frozen (that walk of every page table entry, per page, happens after
// the thaw): a page that is still write-protected, or that the fault thread
// saved, holds its content as of the freeze; one that is neither was not in
// the page tables at the freeze (anonymous memory populated later is not
// write-protected) and so was zero then, unless it is in the ranges of pages
// held at the freeze (one PAGEMAP_SCAN for ranges while frozen): then it lost
// its content with no event (UFFDIO_MOVE, a guard region) and the image
// fails. Other kinds are planned while frozen, as before.
// Only areas holding at least kWholeKb (smaps Rss + Swap): a part of such an
// area unmapped or discarded before it was sent fails the stream even where
// it held nothing at the freeze (the fault thread cannot tell any more), and
// small areas are where tasks do that (a thread's stack freed as it exits),
// while their scan costs next to nothing.
constexpr uint64_t kWholeKb = 2048;

bool protected_whole(const MapsEntry& e) {
    return classify_vma(e) == image::VmaKind::kAnonPrivate && !map_files_use(e) &&
           e.resident_kb >= kWholeKb;
}

Result<MemoryDump> protect_memory(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer,
                                  UniqueFd uffd) {
    MemoryDump d;
    d.maps = std::move(maps);
    const auto& areas = d.maps;
    MemoryTrace trace;
    auto mark = [&](const char* what) { trace.mark(what); };
    auto pagemap = open_fd(proc_path(pid, "pagemap"), O_RDONLY);
    if (!pagemap) return std::unexpected(pagemap.error());

    // Registers areas[c] for c in `candidates` (ascending), a span of
    // neighbours per ioctl where the kernel takes it, else one by one (a kind
    // the kernel cannot protect, such as a private mapping of a regular file,
    // stays unregistered).
    std::vector<char> registered(areas.size(), 0);
    Spans spans;  // registered
    auto register_areas = [&](const std::vector<size_t>& candidates) {
        for (size_t i = 0; i < candidates.size();) {
            size_t j = i;
            while (j + 1 < candidates.size() && candidates[j + 1] == candidates[j] + 1 &&
                   areas[candidates[j]].end == areas[candidates[j + 1]].start)
                ++j;
            if (register_wp(uffd.get(), areas[candidates[i]].start, areas[candidates[j]].end)) {
                for (size_t k = i; k <= j; ++k) registered[candidates[k]] = 1;
                spans.emplace_back(areas[candidates[i]].start, areas[candidates[j]].end);
            } else {
                for (size_t k = i; k <= j; ++k) {
                    const MapsEntry& e = areas[candidates[k]];
                    if (register_wp(uffd.get(), e.start, e.end)) {
                        registered[candidates[k]] = 1;
                        spans.emplace_back(e.start, e.end);
                    }
                }
            }
            i = j + 1;
        }
    };
    if (!pagemap_scan_works(pagemap->get())) {
        log_info("checkpoint %d: memory copied while frozen: no PAGEMAP_SCAN (Linux 6.7)", pid);
        return dump_memory(pid, std::move(d.maps), std::move(buffer));
    }
    std::vector<size_t> whole;
    for (size_t i = 0; i < areas.size(); ++i)
        if (protected_whole(areas[i])) whole.push_back(i);
    register_areas(whole);
    mark("register private anonymous areas");
    std::vector<char> skip = registered;  // their pages are asked after the thaw
    spans.clear();  // the whole areas are protected where their pages are (below)

    auto plan = plan_pages(pid, areas, &skip);
    if (!plan) return std::unexpected(plan.error());
    d.pages_scanned = plan->pages_scanned;
    // The other areas holding pages that were in the page tables.
    std::vector<size_t> vma_of(plan->runs.size(), SIZE_MAX);
    std::vector<size_t> candidates;
    for (size_t r = 0, v = 0; r < plan->runs.size(); ++r) {
        const PageSource& src = plan->sources[r];
        if (src.fd >= 0 || !src.ptes) continue;
        while (v < areas.size() && areas[v].end <= plan->runs[r].vaddr) ++v;
        if (v == areas.size()) break;
        // A private mapping of a file the kernel can write-protect (a memfd, a
        // tmpfs file) is copied while frozen: a truncation of the file, by the
        // task after the thaw or by anyone holding it, drops the mapping's
        // copied-on-write pages with no userfaultfd event, and the stream
        // would read the file's new content as the freeze's.
        auto kind = classify_vma(areas[v]);
        if (kind == image::VmaKind::kFilePrivate || kind == image::VmaKind::kMemfdPrivate) continue;
        vma_of[r] = v;
        if (candidates.empty() || candidates.back() != v) candidates.push_back(v);
    }
    register_areas(candidates);
    mark("pagemap scan of the other areas, register");
    // The pages of whole areas in the page tables at the freeze: one that is
    // neither write-protected nor saved when the stream asks lost its content
    // with no event (LiveMemory::check_held). A walk of their page tables
    // while frozen, ranges only (~1.5 ms at 1 GiB of 4 KiB pages), which also
    // tells which of them are not write-protected: all of them, unless the
    // uffd is ProtectAhead's, which protected them before the freeze (then
    // the pages written since and any an area got since). Those are protected
    // now: a range each when they are few, else the whole area (an ioctl per
    // range of a sparse area would cost more than the walk of its unpopulated
    // part; protecting a page that is not there does nothing).
    constexpr size_t kFewRanges = 64;
    Spans held;
    std::vector<LiveRun> live;
    for (size_t i = 0; i < areas.size(); ++i) {
        if (!skip[i]) continue;
        live.push_back({areas[i].start, (areas[i].end - areas[i].start) / kPage, true,
                        readv_can_read(areas[i])});
        d.pages_scanned += live.back().nr_pages;
        Spans unprotected;
        if (auto r =
                held_ranges(pagemap->get(), pid, areas[i].start, areas[i].end, held, unprotected);
            !r)
            return std::unexpected(r.error());
        if (unprotected.size() <= kFewRanges)
            spans.insert(spans.end(), unprotected.begin(), unprotected.end());
        else
            spans.emplace_back(areas[i].start, areas[i].end);
    }
    mark("held pages of the whole areas");
    std::sort(spans.begin(), spans.end());
    auto protected_all = protect_spans(uffd.get(), spans);
    if (!protected_all)
        log_info("checkpoint %d: memory copied while frozen: %s", pid,
                 protected_all.error().what.c_str());
    mark("write-protect");
    auto mem = open_fd(proc_path(pid, "mem"), O_RDONLY);
    if (!mem) return std::unexpected(mem.error());
    if (!protected_all) {
        uffd.reset();  // drops every registration; plan the skipped areas now
        auto rest = plan_pages(pid, areas);
        if (!rest) return std::unexpected(rest.error());
        if (auto r = copy_pages(pid, *rest, buffer); !r) return std::unexpected(r.error());
        mark("copy what is not protected");
        return copied_dump(std::move(d.maps), *rest, std::move(buffer));
    }

    PagePlan now;
    now.fds = std::move(plan->fds);
    for (size_t r = 0; r < plan->runs.size(); ++r) {
        if (vma_of[r] != SIZE_MAX && registered[vma_of[r]]) {
            live.push_back(
                {plan->runs[r].vaddr, plan->runs[r].nr_pages, false, plan->sources[r].readable});
            continue;
        }
        now.runs.push_back(plan->runs[r]);
        now.sources.push_back(plan->sources[r]);
        now.pages += plan->runs[r].nr_pages;
    }
    std::sort(live.begin(), live.end(),
              [](const LiveRun& a, const LiveRun& b) { return a.vaddr < b.vaddr; });
    if (auto r = copy_pages(pid, now, buffer); !r) return std::unexpected(r.error());
    mark("copy what is not protected");
    d.runs = std::move(now.runs);
    d.pages_copied = now.pages;
    d.buffer = std::move(buffer);
    if (!live.empty())
        d.live =
            std::make_shared<LiveMemory>(pid, std::move(uffd), std::move(*mem), std::move(*pagemap),
                                         std::move(live), std::move(held));
    return d;
}

// --- ProtectAhead ----------------------------------------------------------------

namespace {

// The ProtectAhead of this process's checkpoint, for detect's "uw" question
// (state::set_ours_registered); the mutex keeps it alive while asked.
std::mutex g_ahead_mu;
std::vector<const ProtectAhead*> g_aheads;  // a tree's: one per process
std::atomic<uint64_t> g_ahead_started{0};

bool ahead_owns(pid_t pid, uint64_t start, uint64_t end) {
    std::lock_guard l(g_ahead_mu);
    return std::any_of(g_aheads.begin(), g_aheads.end(),
                       [&](const ProtectAhead* a) { return a->owns(pid, start, end); });
}

// The task's voluntary context switches (/proc/<pid>/status), or none.
std::optional<uint64_t> voluntary_switches(pid_t pid) {
    auto text = read_file(proc_path(pid, "status"));
    if (!text) return std::nullopt;
    constexpr std::string_view key = "\nvoluntary_ctxt_switches:";
    size_t at = text->find(key);
    if (at == std::string::npos) return std::nullopt;
    return std::strtoull(text->c_str() + at + key.size(), nullptr, 10);
}

// How long ProtectAhead waits for a nudged task to sleep again: the stall
// grows with the memory protected (~12 ms per GiB here); a task that runs on
// instead (woken meanwhile) is not waited for past this.
uint64_t nudge_wait_ns(uint64_t protected_bytes) {
    return 100'000'000 + protected_bytes / (1 << 30) * 25'000'000;
}

}  // namespace

ProtectAhead::ProtectAhead(pid_t pid, uint64_t starttime, UniqueFd uffd, uint64_t stopped_ns)
    : pid_(pid),
      starttime_(starttime),
      uffd_(std::move(uffd)),
      stop_(eventfd(0, EFD_CLOEXEC)),
      stopped_ns_(stopped_ns),
      thread_([this] { serve_faults(); }) {}

ProtectAhead::~ProtectAhead() {
    {
        std::lock_guard l(g_ahead_mu);
        std::erase(g_aheads, this);
    }
    (void)take();  // the uffd closed: the kernel drops every protection, wakes any waiter
}

Result<std::unique_ptr<ProtectAhead>> ProtectAhead::start(pid_t pid, const ProcStatus& status,
                                                          uint64_t min_bytes) {
    if (status.rss_bytes < min_bytes) return nullptr;
    auto skip = [&](std::string_view why) {
        log_info("checkpoint %d: not protected ahead of the freeze: %.*s", pid, int(why.size()),
                 why.data());
        return nullptr;
    };
    if (status.seccomp != 0) return skip("a seccomp filter");
    // Without CAP_SYS_PTRACE a task gets no userfaultfd that handles kernel
    // faults (take_task_uffd; unless vm.unprivileged_userfaultfd is set):
    // its memory is copied while frozen, and the stop would be for nothing.
    if (!(status.cap_eff >> 19 & 1)) return nullptr;
    // A zombie main thread (its other threads run on) or one in D state would
    // hold this stop to its bound; the freeze proper says what it is.
    auto stat = read_stat(pid);
    if (!stat || stat->state == 'Z' || stat->state == 'D') return skip("its state");
    auto maps = read_maps(proc_path(pid, "maps"), 64 << 20);
    if (!maps) return skip(maps.error().what);
    uint64_t vdso_start = 0, vdso_end = 0;
    Spans areas;  // what protect_memory is likely to protect whole (protected_whole), by size
    for (const MapsEntry& e : *maps) {
        if (e.path == "[vdso]") vdso_start = e.start, vdso_end = e.end;
        if (classify_vma(e) == image::VmaKind::kAnonPrivate && !map_files_use(e) &&
            e.end - e.start >= kWholeKb * 1024)
            areas.emplace_back(e.start, e.end);
    }
    if (areas.empty()) return nullptr;
    // Without a vdso the remote syscalls patch the text at the task's rip,
    // which may be memory protected here (a JIT's): /proc/<pid>/mem cannot
    // write a write-protected page.
    if (vdso_start == 0) return skip("no vdso");
    auto task = FrozenTask::freeze(pid);
    if (!task) return skip(task.error().what);
    UniqueFd uffd;
    {
        auto rs = RemoteSyscall::prepare(**task, vdso_start, vdso_end);
        if (!rs) return skip(rs.error().what);
        auto fd = take_task_uffd(pid, **rs);
        // The task not put back as it was, or left holding a uffd: the checkpoint fails.
        if (auto r = (*rs)->finish(); !r) return std::unexpected(r.error());
        if (!fd) return std::unexpected(fd.error());
        if (!*fd) return nullptr;  // take_task_uffd said why
        uffd = std::move(*fd);
    }
    if (auto r = (*task)->release(); !r) return skip(r.error().what);
    std::unique_ptr<ProtectAhead> a(
        new ProtectAhead(pid, stat->starttime, std::move(uffd), (*task)->frozen_ns()));
    Spans spans;
    for (auto [start, end] : areas)
        if (register_wp(a->uffd_.get(), start, end)) add_span(spans, start, end);
    if (spans.empty()) return skip("no area could be registered");
    // The freeze protects what this did not (see the header).
    if (auto r = protect_spans(a->uffd_.get(), spans); !r)
        log_info("checkpoint %d: protect ahead: %s", pid, r.error().what.c_str());
    // On this VM (a PVM guest: the host shadows the page tables) a task's
    // first run in user mode after its page tables changed stalls while the
    // host catches up (docs/performance.md "Frozen time: protected ahead":
    // ~10-15 ms per GiB write-protected). A sleeping task's first run would
    // be the freeze's first injected syscall, inside the frozen window. A
    // stop and release with nothing injected takes it through user mode now
    // (its sleep restarted), outside any stop; it is waited for (bounded)
    // until it sleeps again. The stop itself is counted with the first one.
    if (stat->state == 'S')
        if (auto nudge = FrozenTask::freeze(pid); nudge) {
            auto slept = voluntary_switches(pid);
            auto r = (*nudge)->release();
            a->stopped_ns_ += (*nudge)->frozen_ns();
            if (!r) log_info("checkpoint %d: %s", pid, r.error().what.c_str());
            uint64_t bytes = 0;
            for (auto [start, end] : spans) bytes += end - start;
            for (uint64_t until = monotonic_ns() + nudge_wait_ns(bytes);
                 r && slept && monotonic_ns() < until && voluntary_switches(pid) == slept;)
                usleep(200);
        }
    std::lock_guard l(g_ahead_mu);
    g_aheads.push_back(a.get());
    state::set_ours_registered(ahead_owns);
    ++g_ahead_started;
    return a;
}

uint64_t ProtectAhead::started() {
    return g_ahead_started;
}

UniqueFd ProtectAhead::take() {
    uint64_t one = 1;
    if (thread_.joinable()) {
        (void)!write(stop_.get(), &one, sizeof one);
        thread_.join();
    }
    return std::move(uffd_);
}

bool ProtectAhead::owns(pid_t pid, uint64_t start, uint64_t end) const {
    return pid == pid_ && uffd_ && register_wp(uffd_.get(), start, end);
}

// Answers each write fault by un-protecting its page (with those around it,
// as LiveMemory does; where the area changed meanwhile, the page alone, or
// only a wake-up), and reads every event, which lets the task's munmap,
// mremap, madvise go on: before the freeze nothing is kept.
void ProtectAhead::serve_faults() {
    uffd_msg msgs[kMessages];
    std::vector<uint64_t> retry;  // pages refused while an event was pending
    auto answer = [&](uint64_t page) {
        uint64_t g = kFaultPages * kPage, lo = page & ~(g - 1), hi = lo + g;
        auto r = wp_ioctl(uffd_.get(), lo, hi, false);
        if (!r && r.error().code == EAGAIN) return false;
        if (!r && (lo != page || hi != page + kPage))
            r = wp_ioctl(uffd_.get(), page, page + kPage, false);
        if (!r) {
            uffdio_range wake{page, kPage};
            (void)ioctl(uffd_.get(), UFFDIO_WAKE, &wake);
        }
        return true;
    };
    while (wait_messages(pid_, uffd_.get(), stop_.get(), !retry.empty())) {
        ssize_t got = read_messages(pid_, uffd_.get(), msgs);
        if (got < 0) return;
        for (ssize_t i = 0; i < got; ++i) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
            uint64_t page = msgs[i].arg.pagefault.address & ~(kPage - 1);
            if (!answer(page)) retry.push_back(page);
        }
        std::erase_if(retry, answer);
    }
}

// --- LiveMemory ------------------------------------------------------------------

LiveMemory::LiveMemory(pid_t pid, UniqueFd uffd, UniqueFd mem, UniqueFd pagemap,
                       std::vector<LiveRun> runs, std::vector<std::pair<uint64_t, uint64_t>> held)
    : pid_(pid),
      uffd_(std::move(uffd)),
      mem_(std::move(mem)),
      pagemap_(std::move(pagemap)),
      stop_(eventfd(0, EFD_CLOEXEC)),
      runs_(std::move(runs)),
      held_(std::move(held)) {
    for (const LiveRun& r : runs_) pages_ += r.nr_pages;
    // Faults are answered from now on, the task thawed or not.
    thread_ = std::thread([this] { serve_faults(); });
}

LiveMemory::~LiveMemory() {
    uint64_t one = 1;
    if (stop_) (void)!write(stop_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    uffd_.reset();  // the kernel drops the registrations and wakes any waiter
}

size_t LiveMemory::saved_pages() const {
    std::lock_guard l(mu_);
    return saved_.size();
}

bool LiveMemory::in_runs(uint64_t page) const {
    auto it = std::upper_bound(runs_.begin(), runs_.end(), page,
                               [](uint64_t p, const LiveRun& r) { return p < r.vaddr; });
    if (it == runs_.begin()) return false;
    --it;
    return page < it->vaddr + it->nr_pages * kPage;
}

bool LiveMemory::readv_in(uint64_t va, uint64_t end) const {
    auto it = std::upper_bound(runs_.begin(), runs_.end(), va,
                               [](uint64_t p, const LiveRun& r) { return p < r.vaddr; });
    if (it != runs_.begin()) --it;
    for (; it != runs_.end() && it->vaddr < end; ++it)
        if (va < it->vaddr + it->nr_pages * kPage && !it->readv) return false;
    return true;
}

bool LiveMemory::unsent(uint64_t page) const {
    return page >= frontier_ && in_runs(page) && !saved_.contains(page);
}

// Copies the unsent pages of [start, end) (one run, at most kFaultPages)
// that still hold their freeze-instant content (write-protected) before the
// task writes them. A page of the run that is not write-protected was not in
// the page tables at the freeze, or was sent or saved already.
void LiveMemory::save(uint64_t start, uint64_t end) {
    PmPageRegion vec[kFaultPages];
    uint64_t walk_end = 0;
    auto n = protected_ranges(pagemap_.get(), pid_, start, end, vec, std::size(vec), walk_end);
    if (!n) {
        if (!abort_) abort_ = n.error();
        return;
    }
    char tmp[kFaultPages * kPage];
    for (size_t i = 0; i < *n; ++i) {
        // The unsent pages of this range, read at once (no hole in between:
        // reading one would map the zero page into the task).
        uint64_t lo = vec[i].end, hi = vec[i].start;
        for (uint64_t p = vec[i].start; p < vec[i].end; p += kPage)
            if (unsent(p)) {
                lo = std::min(lo, p);
                hi = p + kPage;
            }
        if (lo >= hi) continue;
        if (auto r = read_task(mem_.get(), pid_, lo, tmp, hi - lo, readv_in(lo, hi)); !r) {
            if (!abort_) abort_ = r.error();
            return;
        }
        for (uint64_t p = lo; p < hi; p += kPage) {
            if (!unsent(p)) continue;
            auto page = std::make_unique<char[]>(kPage);
            std::memcpy(page.get(), tmp + (p - lo), kPage);
            saved_.emplace(p, std::move(page));
        }
    }
}

// An event that took pages away (munmap, mremap's source, MADV_DONTNEED):
// fine if every one of them was sent or saved; else the image cannot be made.
void LiveMemory::check_gone(uint64_t start, uint64_t end, const char* what) {
    if (abort_) return;
    start &= ~(kPage - 1);
    auto it = std::upper_bound(runs_.begin(), runs_.end(), start,
                               [](uint64_t p, const LiveRun& r) { return p < r.vaddr; });
    if (it != runs_.begin()) --it;
    for (; it != runs_.end() && it->vaddr < end; ++it) {
        uint64_t lo = std::max({start, it->vaddr, frontier_});
        uint64_t hi = std::min(end, it->vaddr + it->nr_pages * kPage);
        for (uint64_t p = lo; p < hi; p += kPage)
            if (!saved_.contains(p)) {
                abort_ = Error{EAGAIN, strfmt("task {} {} memory at {:x} that was not yet in the "
                                              "image; open the image again for a new one",
                                              pid_, what, p)};
                return;
            }
    }
}

// Every page of [at, end) that was in the page tables at the freeze (held_)
// must be in `ranges` (sorted): still write-protected, or saved. One that is
// not lost its content with no userfaultfd event (moved out by UFFDIO_MOVE,
// zapped by a guard region) and would read as "not in the page tables at the
// freeze": zero. (Unmaps and discards come as events: check_gone.)
Status LiveMemory::check_held(uint64_t at, uint64_t end, const Spans& ranges) {
    auto h = std::upper_bound(held_.begin(), held_.end(), at,
                              [](uint64_t p, const auto& r) { return p < r.second; });
    size_t k = 0;
    uint64_t covered = 0;  // ranges[0, k) cover [p, covered) for the page p asked
    for (; h != held_.end() && h->first < end; ++h) {
        const uint64_t hi = std::min(h->second, end);
        for (uint64_t p = std::max(h->first, at); p < hi;) {
            while (covered <= p && k < ranges.size() && ranges[k].first <= p) {
                covered = std::max(covered, ranges[k].second);
                ++k;
            }
            if (covered > p) {
                p = covered;
                continue;
            }
            std::lock_guard l(mu_);
            abort_ = taken_away(pid_, p);
            return std::unexpected(*abort_);
        }
    }
    return {};
}

// After take()'s read of [va, end) (mu_ held: nothing is saved meanwhile, a
// write to a protected page waits): every page of it not saved must still be
// write-protected, so what was read is its content as of the freeze. One that
// is not lost that content with no userfaultfd event: moved out by another
// userfaultfd's UFFDIO_MOVE (Linux 6.8), or zapped by a guard region. (A
// munmap or mremap of these pages between the read and this check fails the
// image too, though what was read was right: their events come after the
// pages are gone. A window of microseconds, and never a wrong image.)
Status LiveMemory::check_kept(uint64_t va, uint64_t end) {
    PmPageRegion vec[64];
    uint64_t p = va;  // the pages before it are checked
    for (uint64_t at = va; at < end;) {
        uint64_t walk_end = 0;
        auto n = protected_ranges(pagemap_.get(), pid_, at, end, vec, std::size(vec), walk_end);
        if (!n) return std::unexpected(n.error());
        for (size_t k = 0; k <= *n; ++k) {
            uint64_t upto = k < *n ? vec[k].start : walk_end;
            for (; p < upto; p += kPage)
                if (!saved_.contains(p)) return std::unexpected(taken_away(pid_, p));
            if (k < *n) p = std::max(p, vec[k].end);
        }
        at = walk_end;
    }
    return {};
}

Status LiveMemory::unprotect(uint64_t start, uint64_t end) {
    auto r = wp_ioctl(uffd_.get(), start, end, false);
    // ENOENT: unmapped meanwhile (check_gone said whether that matters).
    if (!r && r.error().code == ENOENT) return {};
    if (!r && r.error().code == ESRCH) return task_gone(pid_);  // exited or exec'd
    return r;
}

void LiveMemory::answer(uint64_t addr, std::vector<std::pair<uint64_t, uint64_t>>& retry) {
    addr &= ~(kPage - 1);
    uint64_t lo = addr, hi = addr + kPage;
    auto it = std::upper_bound(runs_.begin(), runs_.end(), addr,
                               [](uint64_t a, const LiveRun& r) { return a < r.vaddr; });
    if (it != runs_.begin() && addr < (it - 1)->vaddr + (it - 1)->nr_pages * kPage) {
        --it;
        uint64_t g = kFaultPages * kPage;
        lo = std::max(it->vaddr, addr & ~(g - 1));
        hi = std::min(it->vaddr + it->nr_pages * kPage, (addr & ~(g - 1)) + g);
        save(lo, hi);
    }
    // Even when the copy failed (the stream then fails): the task must not
    // wait for us.
    if (auto r = unprotect(lo, hi); !r) {
        if (r.error().code == EAGAIN)
            retry.emplace_back(lo, hi);
        else if (r.error().code == ESRCH && !abort_)
            abort_ = r.error();  // what save() read may be another mm's
        else
            log_error("checkpoint %d: %s", pid_, r.error().what.c_str());
    }
}

void LiveMemory::save_ahead(std::span<const uint64_t> addrs) {
    std::lock_guard l(mu_);
    // Refused only while an event is pending, and the task, frozen, makes
    // none: a page left protected is answered by serve_faults, as before.
    std::vector<std::pair<uint64_t, uint64_t>> refused;
    for (uint64_t a : addrs)
        if (a) answer(a, refused);
}

void LiveMemory::serve_faults() {
    uffd_msg msgs[kMessages];
    std::vector<std::pair<uint64_t, uint64_t>>
        retry;  // un-protects refused while an event was pending
    while (wait_messages(pid_, uffd_.get(), stop_.get(), !retry.empty())) {
        // Reading an event lets the task go on with its munmap/madvise; under
        // mu_, so the stream never reads a page between that and check_gone.
        std::lock_guard l(mu_);
        ssize_t got = read_messages(pid_, uffd_.get(), msgs);
        if (got < 0) return;
        for (ssize_t i = 0; i < got; ++i) {
            const uffd_msg& m = msgs[i];
            switch (m.event) {
                case UFFD_EVENT_PAGEFAULT:
                    ++faults_;
                    answer(m.arg.pagefault.address, retry);
                    break;
                case UFFD_EVENT_REMOVE:
                case UFFD_EVENT_UNMAP:
                    check_gone(m.arg.remove.start, m.arg.remove.end,
                               m.event == UFFD_EVENT_UNMAP ? "unmapped" : "discarded");
                    break;
                case UFFD_EVENT_REMAP:
                    check_gone(m.arg.remap.from, m.arg.remap.from + m.arg.remap.len, "moved");
                    break;
                default:
                    break;
            }
        }
        for (size_t i = 0; i < retry.size();) {
            auto r = unprotect(retry[i].first, retry[i].second);
            if (!r && r.error().code == EAGAIN) {
                ++i;
                continue;
            }
            retry.erase(retry.begin() + ptrdiff_t(i));
        }
    }
}

// Reads pages [va, end) of one run into `buf` as of the freeze and marks them
// sent (mu_ held). Each of them was write-protected when stream() looked, or
// saved: one not saved since is still protected (the fault thread saves what
// it un-protects), so the task's memory holds it as at the freeze. They count as sent only once
// un-protecting them succeeded with no mapping change pending: every munmap/mremap/madvise that
// happened before was then seen by check_gone while they were still unsent. Returns false when an
// event is pending: try again once it was read.
Result<bool> LiveMemory::take(uint64_t va, uint64_t end, char* buf) {
    if (abort_) return std::unexpected(*abort_);
    uint64_t n = (end - va) / kPage;
    // Pages saved before a write come from the copy; the rest are still
    // protected, so the task's memory holds them as at the freeze.
    for (uint64_t i = 0; i < n;) {
        auto it = saved_.find(va + i * kPage);
        if (it != saved_.end()) {
            std::memcpy(buf + i * kPage, it->second.get(), kPage);
            ++i;
            continue;
        }
        uint64_t j = i + 1;
        while (j < n && !saved_.contains(va + j * kPage)) ++j;
        const uint64_t from = va + i * kPage, to = va + j * kPage;
        if (auto r =
                read_task(mem_.get(), pid_, from, buf + i * kPage, to - from, readv_in(from, to));
            !r) {
            abort_ = r.error();
            return std::unexpected(r.error());
        }
        i = j;
    }
    if (auto r = check_kept(va, end); !r) {
        abort_ = r.error();
        return std::unexpected(r.error());
    }
    if (auto r = unprotect(va, end); !r) {
        if (r.error().code == EAGAIN) return false;
        abort_ = r.error();
        return std::unexpected(r.error());
    }
    for (uint64_t p = va; p < end; p += kPage) saved_.erase(p);
    frontier_ = end;
    return true;
}

Status LiveMemory::stream(ImageSink& sink, image::StatsRecord& stats) {
    static_assert(kChunkPages * kPage <= ImageSink::kChunk);
    // Pieces of one run each (at most kChunkPages); pieces side by side (the
    // runs of neighbouring areas) are read and un-protected together, up to
    // kChunkPages: 30,000 one-page areas are ~120 reads and ioctls, not
    // 30,000 of each. Records are still cut at every piece (one area each).
    struct Piece {
        uint64_t va, n;
    };
    std::vector<Piece> span;
    uint64_t span_pages = 0;
    std::vector<ImageSink::Pages> recs;
    auto flush = [&]() -> Status {
        if (span.empty()) return {};
        uint64_t va = span.front().va, end = span.back().va + span.back().n * kPage;
        // The sink's: it may hand these pages to the pipe without a copy.
        char* buf = sink.chunk_buffer();
        for (int tries = 0;; ++tries) {
            std::unique_lock l(mu_);
            auto took = take(va, end, buf);
            if (!took) return std::unexpected(took.error());
            if (*took) break;
            l.unlock();
            // The fault thread reads the pending event within microseconds;
            // bounded all the same.
            if (tries == 100000)
                return make_error(EAGAIN, strfmt("task {} kept changing its mappings during "
                                                 "the read; open the image again",
                                                 pid_));
            usleep(50);
        }
        recs.clear();
        for (const Piece& piece : span) {
            const char* data = buf + (piece.va - va);
            // Runs of non-zero pages become records.
            for (uint64_t i = 0; i < piece.n;) {
                if (is_zero_page(data + i * kPage)) {
                    ++stats.pages_zero;
                    ++i;
                    continue;
                }
                uint64_t j = i + 1;
                while (j < piece.n && !is_zero_page(data + j * kPage)) ++j;
                recs.push_back({piece.va + i * kPage, uint32_t(j - i), data + i * kPage});
                stats.pages_stored += j - i;
                i = j;
            }
        }
        // The span's records written together (one vmsplice, not two syscalls each).
        if (auto r = sink.pages(recs); !r) return r;
        span.clear();
        span_pages = 0;
        return {};
    };
    auto add = [&](uint64_t va, uint64_t n) -> Status {
        bool joins = !span.empty() && span.back().va + span.back().n * kPage == va &&
                     span_pages + n <= kChunkPages;
        if (!joins)
            if (auto r = flush(); !r) return r;
        span.push_back({va, n});
        span_pages += n;
        return {};
    };
    auto run_end = [&](size_t r) { return runs_[r].vaddr + runs_[r].nr_pages * kPage; };
    // Adds [lo, end) cut at the runs from `run` on (a record lies in one
    // area), kChunkPages at most per piece.
    auto add_range = [&](uint64_t lo, uint64_t end, size_t& run, size_t last) -> Status {
        while (lo < end) {
            while (run < last && run_end(run) <= lo) ++run;
            if (run == last) break;
            lo = std::max(lo, runs_[run].vaddr);
            if (lo >= end) break;
            uint64_t to = std::min({end, run_end(run), lo + kChunkPages * kPage});
            if (auto r = add(lo, (to - lo) / kPage); !r) return r;
            lo = to;
        }
        return {};
    };
    PmPageRegion vec[512];
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (size_t first = 0, last = 0; first < runs_.size(); first = last) {
        // Neighbouring runs of one kind (LiveRun::ask) together.
        for (last = first + 1; last < runs_.size() && runs_[last].ask == runs_[first].ask; ++last) {
        }
        size_t run = first;
        if (!runs_[first].ask) {
            // Every page of these runs was in the page tables at the freeze:
            // take() reads each as of the freeze (saved, or still protected),
            // no page table walk again.
            for (size_t r = first; r < last; ++r)
                if (auto s = add_range(runs_[r].vaddr, run_end(r), run, last); !s) return s;
            continue;
        }
        // Whole areas: the pages to send are those that are write-protected
        // now, or saved. That is a superset of what the image needs when
        // their turn comes: a page gains no protection after the freeze, and
        // one saved later was protected until then. A page of a run that is
        // neither was not in the page tables at the freeze (zero) or is gone
        // (its event fails the stream). take() reads them as of the freeze.
        const uint64_t hi = run_end(last - 1);
        for (uint64_t at = runs_[first].vaddr; at < hi;) {
            uint64_t walk_end = 0;
            auto n = protected_ranges(pagemap_.get(), pid_, at, hi, vec, std::size(vec), walk_end);
            if (!n) return std::unexpected(n.error());
            ranges.clear();
            for (size_t k = 0; k < *n; ++k) ranges.emplace_back(vec[k].start, vec[k].end);
            {
                std::lock_guard l(mu_);  // after the scan: a page saved before it is here
                for (auto it = saved_.lower_bound(at); it != saved_.end() && it->first < walk_end;
                     ++it)
                    ranges.emplace_back(it->first, it->first + kPage);
            }
            std::sort(ranges.begin(), ranges.end());
            // A page taken away after the scan is caught by take() (check_kept).
            if (auto s = check_held(at, walk_end, ranges); !s) return s;
            for (size_t k = 0; k < ranges.size();) {
                auto [lo, end] = ranges[k];
                for (++k; k < ranges.size() && ranges[k].first <= end; ++k)
                    end = std::max(end, ranges[k].second);
                if (auto s = add_range(lo, end, run, last); !s) return s;
            }
            at = walk_end;
        }
    }
    return flush();
}

}  // namespace crfs
