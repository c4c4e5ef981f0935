// The memory kind's dump half (state/memory.h detects, state/memory_restore.h
// restores): memory of a frozen task: VMAs from /proc/<pid>/smaps, which pages
// to store (from /proc/<pid>/pagemap), and copying them out in large batches.
// The stream machinery that sends them is the checkpointer's
// (checkpoint/live_snapshot.h: `LiveMemory`, image_sink.h, worker.h).
//
// Which pages are stored, by VMA kind (see docs/image-format.md):
//   private anonymous   present or swapped pages
//   private file        swapped pages, and present pages that are anonymous
//                       (pagemap bit 61 clear): those differ from the file.
//                       Clean page-cache pages come back from the file.
//   shared anonymous    allocated content (SEEK_DATA on /proc/<pid>/map_files)
//   shared file, vdso, vvar, vsyscall: none
// Pages that turn out all-zero are dropped after the task is thawed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/memory.h"

namespace crfs {

// MapsEntry and parse_maps: common/procfs.h. classify_vma, map_files_use:
// state/memory.h (the memory kind's detect needs them too).
image::VmaRecord vma_record(const MapsEntry& e);

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
inline constexpr uint64_t kPmPresent = 1ull << 63;
inline constexpr uint64_t kPmSwapped = 1ull << 62;
inline constexpr uint64_t kPmFileOrSharedAnon = 1ull << 61;

// Whether a page with pagemap entry `pme` in a VMA of `kind` goes into the image.
bool page_needed(image::VmaKind kind, uint64_t pme);

// The page buffers of a tree's members (checkpoint.cc capture_tree), one
// arena: each member's copy takes exactly the bytes it copies, one slice after
// another, from chunks of huge-page-aligned MADV_HUGEPAGE memory that are not
// pre-faulted: the tree is frozen whole before any member is captured, so a
// pre-fault saves no frozen time, and the copy's own writes fault in only the
// huge pages it fills (a member's own buffer was its RSS + 128 KiB rounded up
// to 2 MiB, all of it faulted and zeroed: 2 MiB for a 1 MiB member).
// Thread-safe: members are captured on several threads. Slices never overlap
// and stay mapped as long as the arena (PageBuffer keeps it).
// Except where warmed (warm): a tree whose small members' memory was known
// before its freeze has that much faulted in by a thread of the arena's own
// meanwhile (perf: fresh huge pages cost 3-4 ms per 64 MiB to fault in on the
// development VM, 20-135 ms when the VM had handed them back to its host,
// docs/performance.md "Session 43").
class PageArena {
  public:
    // Chunks of `chunk` bytes (a multiple of 2 MiB); a larger slice gets a chunk of its own.
    explicit PageArena(size_t chunk = size_t(64) << 20);
    PageArena(const PageArena&) = delete;
    PageArena& operator=(const PageArena&) = delete;
    ~PageArena();
    // `bytes` (rounded up to whole pages) never handed out before; null if it cannot be mapped.
    char* take(size_t bytes);
    // Before any take(): maps the first chunk now (at least `bytes`, rounded
    // up to huge pages) and faults `bytes` of it in on a thread, at
    // SCHED_IDLE, while the caller goes on. take() hands it out as before; a
    // write there before the thread came to it faults as before (the thread's
    // writes never change what a page holds). The destructor tells the thread
    // to stop and does not wait for it: the thread holds the chunk, which is
    // unmapped when the thread ends (within 2 MiB of work), so that a thread
    // starved at SCHED_IDLE never holds up the checkpoint.
    // False, nothing done, if a chunk is mapped already or the mapping fails;
    // false, the chunk mapped but not warmed, if no thread could be made.
    bool warm(size_t bytes);
    // Tests: the bytes the warming thread faulted in; waits for its end.
    size_t warmed();

  private:
    struct Warming {
        std::atomic<bool> stop{false};
        size_t done = 0;  // by the thread, before it ends
    };
    std::shared_ptr<Warming> warming_;
    std::shared_ptr<char> warm_chunk_;  // unmapped once the arena and its thread let it go
    std::thread warmer_;
    std::mutex mu_;
    std::vector<std::pair<char*, size_t>> chunks_;  // mapped, to unmap
    size_t chunk_;
    char* at_ = nullptr;  // the next free byte of the current chunk
    size_t left_ = 0;     // bytes left in it
};

// A page-aligned anonymous buffer that holds copied pages (one mmap, grown with
// mremap), so a 1 GiB checkpoint is not a million small allocations. Or, drawn
// from a tree's PageArena, a slice of it (a mapping of its own if it must grow).
class PageBuffer {
  public:
    PageBuffer() = default;
    PageBuffer(PageBuffer&& o) noexcept;
    PageBuffer& operator=(PageBuffer&& o) noexcept;
    ~PageBuffer();
    // Its room comes from `arena` (not pre-faulted): call before any reserve or grow.
    void draw_from(std::shared_ptr<PageArena> arena) { arena_ = std::move(arena); }
    // Maps and pre-faults `bytes` (huge pages where possible), before the freeze.
    // Drawn from an arena: a slice of it the first time, not pre-faulted.
    Status reserve(size_t bytes);
    // Makes room for `bytes` more; returns their offset in the buffer.
    Result<size_t> grow(size_t bytes);
    char* data() const { return data_; }
    size_t size() const { return used_; }

  private:
    void release();
    char* data_ = nullptr;
    size_t used_ = 0, mapped_ = 0;
    std::shared_ptr<PageArena> arena_;  // set: data_ is a slice of it (not unmapped here)
};

// Pages copied out of the task: run i covers `nr_pages` pages at `vaddr`,
// stored at buffer offset `buf_off`.
struct CopiedRun {
    uint64_t vaddr;
    uint64_t nr_pages;
    size_t buf_off;
};

class LiveMemory;  // checkpoint/live_snapshot.h

struct MemoryDump {
    std::vector<MapsEntry> maps;
    std::vector<CopiedRun> runs;  // copied into `buffer` while frozen
    PageBuffer buffer;
    uint64_t pages_scanned = 0;
    uint64_t pages_copied = 0;
    // Live snapshot: the pages still in the task, write-protected, streamed
    // after the thaw (null: every page is in `runs`).
    std::shared_ptr<LiveMemory> live;
    // shm: VMAs (by start) a tree's sharing recorded as another kind (state/tree_shmem_dump.h).
    std::map<uint64_t, image::VmaKind> tree_kinds;
};

// Where a run's bytes come from.
struct PageSource {
    int fd = -1;  // -1: the task's memory at run.vaddr; else pread(fd, file_off)
    uint64_t file_off = 0;
    // process_vm_readv can read it, and leave it as it is (else
    // /proc/<pid>/mem: readv_can_read below).
    bool readable = true;
    // The pages were present or swapped in the task's page tables at the
    // freeze (PAGEMAP_SCAN): what userfaultfd write-protect can cover.
    bool ptes = false;
};

// Whether process_vm_readv may read the pages of VMA `e` (as smaps showed
// it). It pins them, and the kernel copies a private anonymous page that another process
// maps too (one shared copy-on-write after a fork) before it lets it be
// pinned (gup_must_unshare): the task would get a copy of its own, so a
// checkpoint would undo the sharing of a forked tree (a pre-fork server's
// children: each a copy of all it shares, the tree's memory multiplied). A
// VMA with pages others map too (smaps' Shared_*) is read through
// /proc/<pid>/mem, which takes a reference instead and leaves the page shared;
// and one without PROT_READ is (FOLL_FORCE).
bool readv_can_read(const MapsEntry& e);

// Which pages a frozen task's image needs: runs[i] (buf_off unset) read from
// sources[i]. `fds` keeps the shared-memory files the sources read open.
struct PagePlan {
    std::vector<CopiedRun> runs;
    std::vector<PageSource> sources;
    uint64_t pages = 0;
    uint64_t pages_scanned = 0;
    // Of those, the pages of the VMAs whose page tables were walked: the
    // others' smaps counts said what they hold (tests, traces).
    uint64_t pages_walked = 0;
    std::vector<UniqueFd> fds;
    bool new_vma = true;  // runs never span two VMAs: a pages record lies in one VMA
    void add(uint64_t vaddr, uint64_t n, PageSource src);
};

// The first half of dump_memory: finds the pages to store (while frozen).
// Areas i with (*skip)[i] set are left out (the live snapshot asks for their
// pages after the thaw: checkpoint/live_snapshot.h).
// perf: a private VMA's page tables are walked (PAGEMAP_SCAN, ~55 ns a page
// here) unless its smaps counts say it holds none of the pages to store or
// all of them (MapsEntry::counted, no swap): the libraries' text and data
// nobody wrote, a heap or buffer written whole. `maps` must then have been
// read while the task was frozen, as every caller's are (the view's smaps);
// a walk would give those counts' pages, but for copies of the zero page,
// which it stores and the counts leave out (zero either way).
Result<PagePlan> plan_pages(pid_t pid, const std::vector<MapsEntry>& maps,
                            const std::vector<char>* skip = nullptr);

// The second half: copies every run of `plan` into `buffer` (setting buf_off).
Status copy_pages(pid_t pid, PagePlan& plan, PageBuffer& buffer);

// CRFS_CHECKPOINT_TRACE=1 logs how long each step of a memory dump took.
class MemoryTrace {
  public:
    MemoryTrace();
    void mark(const char* what);

  private:
    bool on_;
    uint64_t t0_;
};

// The dump of `maps` once `plan` was copied into `buffer`.
MemoryDump copied_dump(std::vector<MapsEntry> maps, PagePlan& plan, PageBuffer buffer);

// Copies out every page of a frozen task that must be stored. `maps`: its
// VMAs as /proc/<pid>/smaps showed them while frozen. `buffer` should come
// reserved (PageBuffer::reserve) from before the freeze.
Result<MemoryDump> dump_memory(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer);

bool is_zero_page(const char* page);

}  // namespace crfs
