// The crfs image format, version 3: the on-disk structs and the one table of
// record types. docs/image-format.md explains it in prose; this header is what
// the writer, the reader and (later) the restorer share. Every field is
// fixed-width and little-endian (crfs only runs on x86-64, so the structs are
// written as they lie in memory); sizes are pinned with static_asserts so a
// change of layout breaks the build, not old images.
#pragma once

#include <cstddef>
#include <cstdint>

namespace crfs::image {

inline constexpr char kMagic[8] = {'C', 'R', 'F', 'S', 'I', 'M', 'G', '\n'};
inline constexpr char kTrailerMagic[8] = {'C', 'R', 'F', 'S', 'E', 'N', 'D', '\n'};
inline constexpr uint32_t kFormatVersion = 3;       // what this crfs writes
inline constexpr uint32_t kMinReadableVersion = 1;  // oldest version this crfs reads
inline constexpr uint32_t kArchX86_64 = 62;         // ELF e_machine EM_X86_64
inline constexpr uint32_t kPageSize = 4096;

// Header flags.
inline constexpr uint32_t kHeaderTaskWasStopped = 1u << 0;  // task was in group-stop

struct Header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;  // sizeof(Header) of the writer; readers skip extra bytes
    uint32_t arch;
    uint32_t page_size;
    uint64_t xsave_features;  // XCR0 of the checkpointing CPU
    uint32_t xsave_size;      // bytes of the XSTATE record the CPU produces
    uint32_t flags;
    char kernel_release[64];  // uname -r, NUL-padded
};
static_assert(sizeof(Header) == 104);

// Every record: this frame, then `length` payload bytes.
struct RecordHeader {
    uint32_t type;
    uint32_t reserved;  // 0
    uint64_t length;
};
static_assert(sizeof(RecordHeader) == 16);

// The stream ends with a RecordHeader{kTrailer, sizeof(Trailer)} and this payload.
// `checksum` is XXH3-64 of every byte before the trailer's RecordHeader;
// `record_count` counts the records before the trailer.
struct Trailer {
    uint64_t record_count;
    uint64_t checksum;
    char magic[8];
};
static_assert(sizeof(Trailer) == 24);

// The one table of record types: number, name, smallest and largest payload.
// The reader bounds every length against it before reading a byte of payload.
#define CRFS_RECORD_TYPES(X)                                                                    \
    X(kTask, 1, "task", sizeof(TaskRecord), 4096)                                               \
    X(kCreds, 2, "creds", sizeof(CredsRecord), 65536 * 4 + sizeof(CredsRecord))                 \
    X(kFs, 3, "fs", sizeof(FsRecord), 2 * 4096 + sizeof(FsRecord))                              \
    X(kMm, 4, "mm", sizeof(MmRecord), sizeof(MmRecord) + 4096 + 4096)                           \
    X(kVma, 5, "vma", sizeof(VmaRecord), sizeof(VmaRecord) + 4096)                              \
    X(kPages, 6, "pages", sizeof(PagesRecord) + kPageSize,                                      \
      sizeof(PagesRecord) + kMaxPagesPerRecord * kPageSize)                                     \
    X(kRegs, 7, "regs", sizeof(RegsRecord), sizeof(RegsRecord))                                 \
    X(kXstate, 8, "xstate", 512 + 64, 65536)                                                    \
    X(kSigactions, 9, "sigactions", sizeof(SigactionsRecord), sizeof(SigactionsRecord))         \
    X(kSigstate, 10, "sigstate", sizeof(SigstateRecord), sizeof(SigstateRecord))                \
    X(kSiginfo, 11, "siginfo", sizeof(SiginfoRecord), sizeof(SiginfoRecord))                    \
    X(kRlimits, 12, "rlimits", sizeof(RlimitsRecord), sizeof(RlimitsRecord))                    \
    X(kItimers, 13, "itimers", sizeof(ItimersRecord), sizeof(ItimersRecord))                    \
    X(kFd, 14, "fd", kFdRecordV1Size, sizeof(FdRecord) + 4096)                                  \
    X(kFdData, 15, "fd-data", sizeof(FdDataRecord), sizeof(FdDataRecord) + kMaxFdDataPerRecord) \
    X(kStats, 16, "stats", sizeof(StatsRecord), 4096)                                           \
    X(kThread, 17, "thread", sizeof(ThreadRecord), sizeof(ThreadRecord))                        \
    X(kTrailer, 0xffffffffu, "trailer", sizeof(Trailer), sizeof(Trailer))

inline constexpr uint32_t kMaxPagesPerRecord = 4096;        // 16 MiB of page data
inline constexpr uint32_t kMaxFdDataPerRecord = 16u << 20;  // 16 MiB of file data

// Task identity and scheduling. Strings are NUL-padded.
struct TaskRecord {
    int32_t pid, ppid, pgid, sid;
    uint64_t starttime;  // /proc/<pid>/stat field 22
    uint32_t personality;
    int32_t nice;
    char comm[16];
    uint32_t flags;  // kHeader* flags repeated for the task
    uint32_t reserved;
};
static_assert(sizeof(TaskRecord) == 56);

// Credentials. Followed by `ngroups` uint32 supplementary groups.
struct CredsRecord {
    uint32_t uid[4];  // real, effective, saved, fs
    uint32_t gid[4];
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t no_new_privs;
    uint32_t ngroups;
};
static_assert(sizeof(CredsRecord) == 80);

// Filesystem context. Followed by cwd (cwd_len bytes) then root (root_len bytes), no NULs.
struct FsRecord {
    uint32_t umask;
    uint32_t cwd_len;
    uint32_t root_len;
    uint32_t reserved;
};
static_assert(sizeof(FsRecord) == 16);

// The PR_SET_MM_MAP fields. Followed by auxv (auxv_len bytes of uint64 pairs),
// then the exe path (exe_len bytes).
struct MmRecord {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint32_t auxv_len;
    uint32_t exe_len;
};
static_assert(sizeof(MmRecord) == 96);

enum class VmaKind : uint32_t {
    kAnonPrivate = 1,  // heap, stack, anonymous mmap: pages stored
    kFilePrivate = 2,  // private file mapping: only pages that differ from the file stored
    kFileShared = 3,   // shared file mapping: re-mapped from the file, no pages
    kAnonShared = 4,   // shared anonymous / SysV shm: content stored
    kVdso = 5,         // [vdso]: address only
    kVvar = 6,         // [vvar], [vvar_vclock]: address only
    kVsyscall = 7,     // [vsyscall]: address only
};

// VmaRecord.flags
inline constexpr uint32_t kVmaRead = 1u << 0;
inline constexpr uint32_t kVmaWrite = 1u << 1;
inline constexpr uint32_t kVmaExec = 1u << 2;
inline constexpr uint32_t kVmaShared = 1u << 3;
inline constexpr uint32_t kVmaHeap = 1u << 4;       // [heap]
inline constexpr uint32_t kVmaStack = 1u << 5;      // [stack]
inline constexpr uint32_t kVmaDeleted = 1u << 6;    // file was unlinked
inline constexpr uint32_t kVmaGrowsDown = 1u << 7;  // VmFlags "gd"

// One VMA, in /proc/<pid>/maps order. Followed by the path or [name] (path_len bytes).
struct VmaRecord {
    uint64_t start, end, pgoff;
    uint64_t dev;  // makedev(major, minor) from maps
    uint64_t ino;
    uint32_t kind;  // VmaKind
    uint32_t flags;
    uint64_t vm_flags;  // VmFlags of smaps as a bit per two-letter name, see docs
    uint32_t path_len;
    uint32_t reserved;
};
static_assert(sizeof(VmaRecord) == 64);

// A run of `nr_pages` consecutive stored pages at `vaddr`; nr_pages*4096 bytes follow.
struct PagesRecord {
    uint64_t vaddr;
    uint32_t nr_pages;
    uint32_t reserved;
};
static_assert(sizeof(PagesRecord) == 16);

// NT_PRSTATUS: struct user_regs_struct of x86-64 (27 words, includes fs/gs base).
struct RegsRecord {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip,
        cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};
static_assert(sizeof(RegsRecord) == 27 * 8);

// The XSTATE record is the raw NT_X86_XSTATE area (xsave layout, standard format).

// Kernel struct sigaction of x86-64 (what rt_sigaction copies in and out).
struct KernelSigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};
static_assert(sizeof(KernelSigaction) == 32);

// Dispositions of signals 1..64; entry i is signal i+1. SIGKILL/SIGSTOP are SIG_DFL.
struct SigactionsRecord {
    KernelSigaction action[64];
};
static_assert(sizeof(SigactionsRecord) == 2048);

struct SigstateRecord {
    uint64_t blocked;
    uint64_t altstack_sp;
    uint64_t altstack_size;
    int32_t altstack_flags;
    uint32_t reserved;
};
static_assert(sizeof(SigstateRecord) == 32);

inline constexpr uint32_t kSigqueuePrivate = 0;
inline constexpr uint32_t kSigqueueShared = 1;

// One pending signal, in queue order; `info` is the kernel siginfo (128 bytes).
struct SiginfoRecord {
    uint32_t queue;  // kSigqueue*
    uint32_t reserved;
    uint8_t info[128];
};
static_assert(sizeof(SiginfoRecord) == 136);

struct RlimitsRecord {
    uint64_t cur[16];  // RLIMIT_CPU .. RLIMIT_RTTIME, RLIM_INFINITY = ~0
    uint64_t max[16];
};
static_assert(sizeof(RlimitsRecord) == 256);

// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF: interval then value, as sec/usec.
struct ItimersRecord {
    int64_t v[3][4];  // interval_sec, interval_usec, value_sec, value_usec
};
static_assert(sizeof(ItimersRecord) == 96);

enum class FdKind : uint32_t {
    kRegular = 1,  // path reopened at restore; fingerprint checked
    kDeleted = 2,  // unlinked regular file; content follows in fd-data records
    kCharDev = 3,  // reopened by path (/dev/null, ttys, ...)
};

// FdRecord.fd_flags
inline constexpr uint32_t kFdCloexec = 1u << 0;

// One open descriptor. Followed by the path (path_len bytes, " (deleted)" removed).
// Fds that share one open file description (dup, `>log 2>&1`) are one group:
// the lowest fd of the group has same_as -1, every other one names it, and
// repeats its kind, path and description fields (flags, pos, fingerprint);
// fd_flags (close-on-exec) is the fd's own. A deleted file's content follows
// for the lowest fd only.
struct FdRecord {
    int32_t fd;
    uint32_t kind;        // FdKind
    uint32_t open_flags;  // O_* from fdinfo flags, O_CLOEXEC removed
    uint32_t fd_flags;    // kFd*
    uint64_t pos;
    uint32_t mode;  // st_mode
    uint32_t path_len;
    uint64_t dev, ino, size, rdev;
    int64_t mtime_sec, mtime_nsec;
    int32_t same_as = -1;  // version 2: the lowest fd sharing its description, or -1
    uint32_t reserved;
};
static_assert(sizeof(FdRecord) == 88);
// Version 1 had no same_as: its FdRecord is the first 80 bytes (read as same_as -1).
inline constexpr uint32_t kFdRecordV1Size = offsetof(FdRecord, same_as);
static_assert(kFdRecordV1Size == 80);

// Content of a deleted file: `length - sizeof(FdDataRecord)` bytes at `offset`.
struct FdDataRecord {
    int32_t fd;
    uint32_t reserved;
    uint64_t offset;
};
static_assert(sizeof(FdDataRecord) == 16);

// How the checkpoint went; informative only, restore ignores it.
struct StatsRecord {
    uint64_t frozen_ns;       // PTRACE_INTERRUPT .. detach
    uint64_t total_ns;        // checkpoint_task entry .. image ready
    uint64_t pages_scanned;   // pages examined in pagemap
    uint64_t pages_copied;    // pages copied out while frozen
    uint64_t pages_zero;      // copied pages found all-zero and not stored
    uint64_t pages_stored;    // pages in pages records
    uint64_t captured_at_ns;  // CLOCK_REALTIME at freeze
    uint64_t reserved;
};
static_assert(sizeof(StatsRecord) == 64);

// Version 3: one per thread. The main thread's comes first, right before its
// regs; every other thread's follows the process-wide records. The regs,
// xstate and sigstate records after a thread record, and the siginfo records
// of the private queue, belong to that thread (each of the three exactly
// once). Version 1 and 2 images have none: their single thread is the task.
struct ThreadRecord {
    int32_t tid;  // in the task's pid namespace; the main thread's is TaskRecord.pid
    uint32_t reserved;
    uint64_t robust_head;  // get_robust_list: head address and length, 0/0: none
    uint64_t robust_len;
    uint64_t rseq_addr;  // PTRACE_GET_RSEQ_CONFIGURATION: area, 0: none
    uint32_t rseq_len;
    uint32_t rseq_sig;
    uint64_t clear_child_tid;  // PR_GET_TID_ADDRESS: set_tid_address, 0: none
    char comm[16];             // NUL-padded
};
static_assert(sizeof(ThreadRecord) == 64);

// The most threads an image may hold (each one costs a clone and a stack at restore).
inline constexpr uint32_t kMaxThreads = 1024;

enum class RecordType : uint32_t {
#define CRFS_X_ENUM(name, num, str, min, max) name = num,
    CRFS_RECORD_TYPES(CRFS_X_ENUM)
#undef CRFS_X_ENUM
};

struct RecordTypeInfo {
    RecordType type;
    const char* name;
    uint64_t min_length;
    uint64_t max_length;
};

inline constexpr RecordTypeInfo kRecordTypes[] = {
#define CRFS_X_INFO(name, num, str, min, max) {RecordType::name, str, min, max},
    CRFS_RECORD_TYPES(CRFS_X_INFO)
#undef CRFS_X_INFO
};

// The table entry of `type`, or nullptr for a type this crfs does not know.
constexpr const RecordTypeInfo* record_type_info(uint32_t type) {
    for (const auto& t : kRecordTypes)
        if (static_cast<uint32_t>(t.type) == type) return &t;
    return nullptr;
}

// Names of the smaps VmFlags bits stored in VmaRecord.vm_flags: bit i is kVmFlagNames[i].
inline constexpr const char* kVmFlagNames[] = {
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io", "sr",
    "rr", "dc", "de", "ac", "nr", "ht", "sf", "nl", "ar", "wf", "dd", "sd", "mm",
    "hg", "nh", "mg", "um", "uw", "ss", "sl", "bt", "mt", "ui", "lf", "gu", "pc"};

}  // namespace crfs::image
