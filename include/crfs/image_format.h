// The crfs image format (kFormatVersion below): the on-disk structs and the one table of
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
inline constexpr uint32_t kFormatVersion = 17;      // what this crfs writes
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
#define CRFS_RECORD_TYPES(X)                                                                     \
    X(kTask, 1, "task", sizeof(TaskRecord), 4096)                                                \
    X(kCreds, 2, "creds", sizeof(CredsRecord), 65536 * 4 + sizeof(CredsRecord))                  \
    X(kFs, 3, "fs", sizeof(FsRecord), 2 * 4096 + sizeof(FsRecord))                               \
    X(kMm, 4, "mm", sizeof(MmRecord), sizeof(MmRecord) + 4096 + 4096)                            \
    X(kVma, 5, "vma", sizeof(VmaRecord), sizeof(VmaRecord) + 4096)                               \
    X(kPages, 6, "pages", sizeof(PagesRecord) + kPageSize,                                       \
      sizeof(PagesRecord) + kMaxPagesPerRecord * kPageSize)                                      \
    X(kRegs, 7, "regs", sizeof(RegsRecord), sizeof(RegsRecord))                                  \
    X(kXstate, 8, "xstate", 512 + 64, 65536)                                                     \
    X(kSigactions, 9, "sigactions", sizeof(SigactionsRecord), sizeof(SigactionsRecord))          \
    X(kSigstate, 10, "sigstate", sizeof(SigstateRecord), sizeof(SigstateRecord))                 \
    X(kSiginfo, 11, "siginfo", sizeof(SiginfoRecord), sizeof(SiginfoRecord))                     \
    X(kRlimits, 12, "rlimits", sizeof(RlimitsRecord), sizeof(RlimitsRecord))                     \
    X(kItimers, 13, "itimers", sizeof(ItimersRecord), sizeof(ItimersRecord))                     \
    X(kFd, 14, "fd", kFdRecordV1Size, sizeof(FdRecord) + 4096)                                   \
    X(kFdData, 15, "fd-data", sizeof(FdDataRecord), sizeof(FdDataRecord) + kMaxFdDataPerRecord)  \
    X(kStats, 16, "stats", sizeof(StatsRecord), 4096)                                            \
    X(kThread, 17, "thread", sizeof(ThreadRecord), sizeof(ThreadRecord))                         \
    X(kEventfd, 24, "eventfd", sizeof(EventfdRecord), sizeof(EventfdRecord))                     \
    X(kTimerfd, 25, "timerfd", sizeof(TimerfdRecord), sizeof(TimerfdRecord))                     \
    X(kSignalfd, 26, "signalfd", sizeof(SignalfdRecord), sizeof(SignalfdRecord))                 \
    X(kEpollWatch, 27, "epoll-watch", sizeof(EpollWatchRecord), sizeof(EpollWatchRecord))        \
    X(kInotifyWatch, 28, "inotify-watch", sizeof(InotifyWatchRecord),                            \
      sizeof(InotifyWatchRecord) + 4096)                                                         \
    X(kPipe, 32, "pipe", sizeof(PipeRecord),                                                     \
      sizeof(PipeRecord) + kMaxPipeSegments * 4 + kMaxPipeBytes)                                 \
    X(kUnixSocket, 33, "unix-socket", sizeof(UnixSocketRecord),                                  \
      sizeof(UnixSocketRecord) + kMaxUnixMessages * 4 + kMaxUnixQueueBytes)                      \
    X(kInetSocket, 40, "inet-socket", sizeof(InetSocketRecord), sizeof(InetSocketRecord))        \
    X(kInetOption, 41, "inet-option", sizeof(InetOptionRecord), sizeof(InetOptionRecord))        \
    X(kTcpRepair, 42, "tcp-repair", sizeof(TcpRepairRecord), sizeof(TcpRepairRecord))            \
    X(kTcpQueue, 43, "tcp-queue", sizeof(TcpQueueRecord), sizeof(TcpQueueRecord) + kMaxTcpQueue) \
    /* fidelity (56-63): content fingerprints of files, docs/files.md */                         \
    X(kFdContent, 56, "fd-content", sizeof(FdContentRecord), sizeof(FdContentRecord))            \
    X(kVmaContent, 57, "vma-content", sizeof(VmaContentRecord), sizeof(VmaContentRecord))        \
    X(kSettings, 58, "settings", sizeof(SettingsRecord),                                         \
      sizeof(SettingsRecord) + kMaxCpuMaskBytes)                                                 \
    /* trees (64-71): one process of a tree, docs/trees.md */                                    \
    X(kProcess, 64, "process", sizeof(ProcessRecord), sizeof(ProcessRecord))                     \
    X(kMemberPages, 65, "member-pages", sizeof(MemberPagesRecord),                               \
      sizeof(MemberPagesRecord))                                                                 \
    X(kMemberStats, 66, "member-stats", sizeof(MemberStatsRecord), sizeof(MemberStatsRecord))    \
    /* kobj (72-79): memfd objects, docs/image-format.md */                                      \
    X(kMemfd, 72, "memfd", sizeof(MemfdRecord), sizeof(MemfdRecord) + kMaxMemfdName)             \
    X(kMemfdData, 73, "memfd-data", sizeof(MemfdDataRecord),                                     \
      sizeof(MemfdDataRecord) + kMaxFdDataPerRecord)                                             \
    /* unix (74-79), version 5: named and listening unix sockets, state/unix_bound.cc */         \
    X(kUnixBound, 74, "unix-bound", sizeof(UnixBoundRecord),                                     \
      sizeof(UnixBoundRecord) + kMaxUnixMessages * 4 + kMaxUnixQueueBytes)                       \
    X(kUnixSender, 75, "unix-sender", sizeof(UnixSenderRecord), sizeof(UnixSenderRecord))        \
    /* unix (76-79), version 8: a POSIX message queue, state/mqueue.cc */                         \
    X(kMqueue, 76, "mqueue", sizeof(MqueueRecord),                                               \
      sizeof(MqueueRecord) + kMaxMqName + kMaxMqMessages * 8 + kMaxMqBytes)                      \
    /* sysv (77-79, 100), version 10: System V IPC, state/sysv_shm.cc */                         \
    X(kSysvShm, 77, "sysv-shm", sizeof(SysvShmRecord), sizeof(SysvShmRecord))                    \
    /* sem (78-79, 100), version 11: a System V message queue, state/sysv_msg.cc */           \
    X(kSysvMsg, 78, "sysv-msg", sizeof(SysvMsgRecord),                                           \
      sizeof(SysvMsgRecord) + kMaxSysvMsgMessages * 16 + kMaxSysvMsgBytes)                       \
    /* sem (79), version 11: a System V semaphore set, state/sysv_sem.cc */                     \
    X(kSysvSem, 79, "sysv-sem", sizeof(SysvSemRecord) + 2,                                       \
      sizeof(SysvSemRecord) + kMaxSysvSemNsems * 2)                                              \
    /* fid-exact (96-103), version 4: state restored exactly (docs/state.md) */                  \
    X(kSeccompFilter, 96, "seccomp-filter", sizeof(SeccompFilterRecord) + 8,                     \
      sizeof(SeccompFilterRecord) + kMaxSeccompInsns * 8)                                        \
    X(kPosixTimer, 97, "posix-timer", sizeof(PosixTimerRecord), sizeof(PosixTimerRecord))        \
    X(kFileLock, 98, "file-lock", sizeof(FileLockRecord), sizeof(FileLockRecord))                \
    /* tty (99-103), version 7: a shell job's terminal, state/tty.cc */                          \
    X(kTty, 99, "tty", sizeof(TtyRecord), sizeof(TtyRecord))                                     \
    /* sock (101, 103), version 10: a socketpair another member made, state/unix_socket.cc */    \
    X(kUnixMaker, 101, "unix-maker", sizeof(UnixMakerRecord), sizeof(UnixMakerRecord))           \
    X(kUnixOptions, 103, "unix-options", sizeof(UnixOptionsRecord), sizeof(UnixOptionsRecord))   \
    /* share (102-103, 105), version 9: fd table / fs shared by clones, docs/trees.md */         \
    X(kShareTask, 102, "share-task", sizeof(ShareTaskRecord), sizeof(ShareTaskRecord))           \
    /* timer (104-106), version 7: a POSIX timer signalling another thread, state/timers.cc */   \
    X(kPosixTimerThread, 104, "posix-timer-thread", sizeof(PosixTimerThreadRecord),              \
      sizeof(PosixTimerThreadRecord))                                                            \
    /* mq2 (105-106), version 11: another description of a queue, state/mqueue_second.cc */     \
    X(kMqueueSecond, 105, "mqueue-second", sizeof(MqueueSecondRecord),                           \
      sizeof(MqueueSecondRecord))                                                                \
    /* share (108-111), version 5: what a tree's processes share, docs/trees.md */               \
    X(kShareFd, 108, "share-fd", sizeof(ShareFdRecord), sizeof(ShareFdRecord))                   \
    /* pidfd (111), version 12: a pidfd of another process of the tree, state/pidfd.cc */        \
    X(kPidfdTarget, 111, "pidfd-target", sizeof(PidfdTargetRecord),                              \
      sizeof(PidfdTargetRecord))                                                                 \
    /* life (112-115), version 5: a tree's zombies, docs/trees.md */                             \
    X(kZombie, 112, "zombie", sizeof(ZombieRecord), sizeof(ZombieRecord))                        \
    /* incr (120-127), version 5: chains of images, docs/incremental.md */                       \
    X(kChain, 120, "chain", sizeof(ChainRecord), sizeof(ChainRecord))                            \
    X(kKeep, 121, "keep", sizeof(KeepRecord), sizeof(KeepRecord))                                \
    /* fid (128-131), version 5 */                                                               \
    X(kSyscallRestart, 128, "syscall-restart", sizeof(SyscallRestartRecord),                     \
      sizeof(SyscallRestartRecord))                                                              \
    X(kMlockall, 129, "mlockall", sizeof(MlockallRecord), sizeof(MlockallRecord))                \
    /* fid (130-133), version 6 */                                                               \
    X(kThreadAttrs, 130, "thread-attrs", sizeof(ThreadAttrsRecord), sizeof(ThreadAttrsRecord))   \
    /* delcwd (131), version 14: a removed cwd, state/fs.cc */                                   \
    X(kDeletedCwd, 131, "deleted-cwd", sizeof(DeletedCwdRecord), sizeof(DeletedCwdRecord))       \
    /* cwdtree (132), version 15: an earlier member's removed cwd, state/fs_tree.cc */           \
    X(kDeletedCwdFrom, 132, "deleted-cwd-from", sizeof(DeletedCwdFromRecord),                    \
      sizeof(DeletedCwdFromRecord))                                                              \
    X(kTrailer, 0xffffffffu, "trailer", sizeof(Trailer), sizeof(Trailer))

inline constexpr uint32_t kMaxPagesPerRecord = 4096;        // 16 MiB of page data
inline constexpr uint32_t kMaxFdDataPerRecord = 16u << 20;  // 16 MiB of file data
inline constexpr uint32_t kMaxPipeBytes = 16u << 20;        // the largest pipe size saved
inline constexpr uint32_t kMaxPipeSegments = kMaxPipeBytes / kPageSize;  // one per pipe buffer
inline constexpr uint32_t kMaxUnixQueueBytes = 16u << 20;  // the largest receive queue saved
inline constexpr uint32_t kMaxUnixMessages = 1u << 16;     // datagrams in one receive queue

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
    // Version 4 (kobj): a mapping of a memfd whose memfd record has `ino`.
    kMemfdShared = 8,   // MAP_SHARED: mapped from the restored memfd, no pages
    kMemfdPrivate = 9,  // MAP_PRIVATE: mapped from it, pages differing from it stored
    // Version 6 (shm, trees): shared anonymous memory mapped by several
    // processes of the image, one object named by `ino` (docs/trees.md).
    kAnonSharedOwner = 14,  // in its first holder: content stored as its pages
    kAnonSharedTaken = 15,  // in a later process: mapped from the owner's object, no pages
    // Version 10 (sysv): an attach (shmat) of the System V segment whose
    // sysv-shm record has shmid `ino`; content stored as its pages.
    kSysvShm = 16,
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
    // Kernel objects (state/kobj.h): made anew at restore from their records.
    kEventfd = 4,    // one eventfd record follows
    kTimerfd = 5,    // one timerfd record follows
    kSignalfd = 6,   // one signalfd record follows
    kEpoll = 7,      // one epoll-watch record per watch follows
    kOpath = 8,      // O_PATH descriptor: reopened by path, dev/ino checked
    kDirectory = 9,  // directory: reopened by path, dev/ino checked, seeked to pos
    kPidfd = 10,     // pidfd of the task itself: pidfd_open(self)
    kInotify = 11,   // one inotify-watch record per watch follows
    // Version 3, each followed (after all fd records) by a record of `ino`:
    kPipe = 12,        // an end of an anonymous pipe: a pipe record
    kUnixSocket = 13,  // an end of a unix socketpair: a unix-socket record
    kFifo = 14,        // a FIFO, reopened by its path: a pipe record
    // 20-27: inet sockets (docs/network.md); an inet-socket record follows.
    kTcp = 20,  // TCP: unconnected, listening, or established (tcp-repair record)
    kUdp = 21,  // UDP: unbound, bound or connected
    // Version 4 (kobj, 36-43).
    kMemfd = 36,  // a memfd: reopened from the memfd record of `ino`, seeked to pos
    // Version 5 (unix, 37-39).
    kUnixBound = 37,  // a unix socket with a name, listening, or connected by a name: unix-bound
    // Version 8 (unix, 38-40).
    kMqueue = 38,  // a POSIX message queue: an mqueue record follows
    // Version 5 (share, 52-55).
    kShared = 52,  // given by an earlier process of the tree: a share-fd record follows
    // Version 7 (tty, 41-43): the controlling terminal of a shell job (state/tty.cc).
    kTty = 41,     // the session's terminal (a pty slave): the restore's new terminal, reopened
    kDevTty = 42,  // /dev/tty of the session's terminal: /dev/tty reopened
    // Version 11 (mq2, 45-46): another description of an unlinked queue (state/mqueue_second.cc).
    kMqueueSecond = 45,  // of an earlier fd's unlinked POSIX message queue: mqueue-second
    // Version 12 (fifo, 46): a FIFO an earlier process of the tree also opened (its
    // first holder's pipe record has the bytes): reopened by its path, no record.
    kFifoJoin = 46,
    // Version 13 (deldir, 39): a removed directory still open (state/dir_deleted.cc): made
    // again, empty, in its parent (the fd record's path) and removed; no record.
    kDeletedDir = 39,
    // Version 14 (deltwice, 40): another open file description, in the same process, of
    // the deleted file (2), removed directory (39) or memfd (36) at an earlier fd, whose
    // number `rdev` holds (reopened_first); dev, ino, mode the object's, path its name; no
    // record. Stage 1 opens that fd again through /proc/self/fd with this record's
    // open_flags and seeks to its pos (state/file_reopen.cc).
    kReopened = 40,
    // Version 15 (cwdtree, 43): a description of its own of the removed directory that
    // an earlier process of the tree, of index `rdev`, holds as its cwd (its deleted-cwd
    // record; that process holds no fd of it); path the directory's name, no record.
    // Opened by the daemon, as the writer, through that process's directory made again,
    // with this record's open_flags (state/fs_tree.cc).
    kTreeCwdDir = 43,
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
// deltwice: the earlier fd whose object a kReopened record opens again (its rdev: no device).
inline constexpr uint64_t reopened_first(const FdRecord& r) {
    return r.rdev;
}
// Version 1 had no same_as: its FdRecord is the first 80 bytes (read as same_as -1).
inline constexpr uint32_t kFdRecordV1Size = offsetof(FdRecord, same_as);
static_assert(kFdRecordV1Size == 80);

// share, version 5 (docs/trees.md "Sharing between members"): the open file
// description of fd `fd` (an fd record of kind kShared, its own description)
// is restored by process `owner` of the tree (an earlier one, by image order)
// and handed over: `end` kShareSame, the very description of the owner's fd
// `owner_fd` (any kind; not itself kShared); kShareReadEnd/kShareWriteEnd, an
// end of the pipe (kPipe) the owner's fd `owner_fd` is an end of, which the
// owner holds no description of; kSharePeer, the peer of the unix socketpair
// end (kUnixSocket) at the owner's `owner_fd`, whose unix-socket record the
// owner's records hold and which no fd of the owner holds; version 6 (unix),
// when `owner_fd` is a named unix socket (kUnixBound): the client socket with
// the taker fd record's `ino`, whose unix-bound record the owner holds and no
// fd of the owner holds, connected to the accepted socket at `owner_fd` or
// waiting in the listener there (state/unix_tree.h).
inline constexpr uint32_t kShareSame = 0;
inline constexpr uint32_t kShareReadEnd = 1;
inline constexpr uint32_t kShareWriteEnd = 2;
inline constexpr uint32_t kSharePeer = 3;  // the other end of the socketpair (kind 13) at owner_fd
// mqtree, version 12: a description of its own of the object at owner_fd (an
// unlinked queue, kind 38; a deleted file, kind 2; a memfd, kind 36) that the
// owner opens again through /proc/self/fd/owner_fd with this fd record's
// open_flags and seeks to its pos (two members that each opened one object
// that has no name). A taker's description made so may be given on (kShareSame).
inline constexpr uint32_t kShareReopen = 4;
struct ShareFdRecord {
    int32_t fd;
    uint32_t owner;  // process index in the image
    int32_t owner_fd;
    uint32_t end;  // kShare*
};
static_assert(sizeof(ShareFdRecord) == 16);

// Content of a deleted file: `length - sizeof(FdDataRecord)` bytes at `offset`.
struct FdDataRecord {
    int32_t fd;
    uint32_t reserved;
    uint64_t offset;
};
static_assert(sizeof(FdDataRecord) == 16);

// Records a reader accepts for one fd (an epoll fd's watches).
inline constexpr uint32_t kMaxKobjRecordsPerFd = 1u << 20;

// Kernel-object records (version 3): each follows the fd record of the lowest
// fd of its open file description and names it by `fd`.

// An eventfd: its counter and EFD_SEMAPHORE (its O_NONBLOCK is in open_flags).
struct EventfdRecord {
    int32_t fd;
    uint32_t flags;  // EFD_SEMAPHORE (1) or 0
    uint64_t count;  // at most 0xfffffffffffffffe
};
static_assert(sizeof(EventfdRecord) == 16);

// A timerfd, as its fdinfo showed it at `captured_ns` on its clock: expiries
// not yet read (ticks), time to the next expiry (value_ns, 0: disarmed) and
// the period. `boot_id` (/proc/sys/kernel/random/boot_id) tells whether a
// monotonic or boot-time deadline still means the same instant at restore.
struct TimerfdRecord {
    int32_t fd;
    int32_t clockid;  // CLOCK_REALTIME, _MONOTONIC, _BOOTTIME, _REALTIME_ALARM, _BOOTTIME_ALARM
    uint32_t settime_flags;  // TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
    uint32_t reserved;
    uint64_t ticks;
    uint64_t value_ns;
    uint64_t interval_ns;
    uint64_t captured_ns;
    uint8_t boot_id[16];
};
static_assert(sizeof(TimerfdRecord) == 64);

// A signalfd: the signals it reads.
struct SignalfdRecord {
    int32_t fd;
    uint32_t reserved;
    uint64_t mask;  // bit n-1: signal n
};
static_assert(sizeof(SignalfdRecord) == 16);

// One watch of an epoll fd: the fd number it watches, events and data as
// epoll_ctl took them (fdinfo "tfd:" line).
struct EpollWatchRecord {
    int32_t fd;   // the epoll fd
    int32_t tfd;  // the watched fd
    uint32_t events;
    uint32_t reserved;
    uint64_t data;
};
static_assert(sizeof(EpollWatchRecord) == 24);

// One watch of an inotify fd, in wd order: its watch descriptor, mask (with
// IN_ONESHOT, IN_EXCL_UNLINK, ...) and the path it was found at (path_len
// bytes follow, no NUL): a path the checkpointing user reaches that names the
// watched inode.
struct InotifyWatchRecord {
    int32_t fd;
    int32_t wd;
    uint32_t mask;
    uint32_t path_len;
    uint64_t dev, ino;  // the watched inode (st_dev, st_ino)
};
static_assert(sizeof(InotifyWatchRecord) == 32);
// An anonymous pipe whose ends are all fds of the task (version 3), after the
// fd records of its ends (FdKind::kPipe, `ino` this pipe's). Followed by
// `nsegs` uint32 lengths, one per pipe buffer in queue order (in packet mode,
// O_DIRECT, each is one packet), then the `data_len` buffered bytes.
inline constexpr uint32_t kPipePacket = 1u << 0;  // some end had O_DIRECT: keep the buffers apart
struct PipeRecord {
    uint64_t ino;        // the pipe's inode number (pipe:[ino]) at checkpoint
    uint32_t pipe_size;  // F_GETPIPE_SZ
    uint32_t flags;      // kPipe*
    uint32_t nsegs;
    uint32_t reserved;
    uint64_t data_len;
};
static_assert(sizeof(PipeRecord) == 32);

// One end of a connected pair of unix sockets (socketpair) whose ends are
// both fds of the task (version 3), after the fd records. `ino` is this end's
// inode, `peer` the other end's (which has a record of its own). Followed by
// `nmsgs` uint32 lengths (stream: one chunk; datagram and seqpacket: one per
// message), then `data_len` bytes: this end's receive queue in order.
struct UnixSocketRecord {
    uint64_t ino, peer;
    uint32_t type;            // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    uint32_t shutdown;        // the kernel's sk_shutdown: 1 receive, 2 send
    uint32_t passcred;        // SO_PASSCRED
    uint32_t sndbuf, rcvbuf;  // SO_SNDBUF, SO_RCVBUF as getsockopt reads them
    uint32_t nmsgs;
    int64_t rcvtimeo_usec, sndtimeo_usec;  // SO_RCVTIMEO, SO_SNDTIMEO; 0: none
    uint64_t data_len;
};
static_assert(sizeof(UnixSocketRecord) == 64);

// A unix socket that has a name, listens, or is connected through a name
// (version 5, state/unix_bound.cc), after the fd records: `sock` as for a
// socketpair end (peer 0: none), then what makes it. Followed by `sock.nmsgs`
// uint32 lengths and `sock.data_len` bytes: its receive queue, as unix-socket.
enum class UnixRole : uint32_t {
    kPlain = 0,     // bound or not, not listening; a datagram one may be connected to sock.peer
    kListen = 1,    // listening with `backlog`
    kAccepted = 2,  // the server end of a connection accepted from `listener`; peer: the client
    kWaiting = 3,   // a client whose connection waits in `listener`'s queue at `order`
    kClient = 4,    // a client connected to sock.peer, the accepted end
};
inline constexpr uint32_t kMaxUnixName = 108;  // sizeof sockaddr_un::sun_path
struct UnixBoundRecord {
    UnixSocketRecord sock;
    uint32_t role;      // UnixRole
    uint32_t backlog;   // kListen: the kernel's sk_max_ack_backlog
    uint64_t listener;  // kAccepted, kWaiting: the listening socket's ino
    uint32_t order;     // kWaiting: place in the listener's queue, 0 first
    uint32_t name_len;  // bytes of `name` (0: unnamed); an abstract name starts with a NUL
    uint64_t path_dev, path_ino;  // a path name: its socket file (st_dev, st_ino) at checkpoint
    char name[kMaxUnixName];      // sun_path as bound (for kAccepted: the listener's)
    uint32_t options;             // version 6: kUnixKeepalive; other bits 0 (before: reserved, 0)
};
inline constexpr uint32_t kUnixKeepalive = 1;  // SO_KEEPALIVE set (redis sets it on every connection)
static_assert(sizeof(UnixBoundRecord) == 216);

// Who sent messages `first`..`first + count - 1` of the datagram queue of the
// unix-bound socket `ino` (version 5): the unix-bound socket `sender`, or an
// unnamed socket when 0. Messages no record covers came from unnamed sockets.
struct UnixSenderRecord {
    uint64_t ino;
    uint32_t first, count;
    uint64_t sender;
};
static_assert(sizeof(UnixSenderRecord) == 24);
// sock, version 10 (docs/trees.md "Sharing between members"): the socketpair
// whose end `ino` has a unix-socket record in this image was made by process
// `maker` of the tree (an earlier one, holding neither end: its SO_PEERCRED
// names it), which makes it again at restore and hands both ends over.
struct UnixMakerRecord {
    uint64_t ino;
    uint32_t maker;  // process index in the image
    uint32_t reserved;
};
static_assert(sizeof(UnixMakerRecord) == 16);
// sock, version 10: the options of socketpair end `ino` (a unix-socket record
// of this image) that its unix-socket record has no room for: kUnixKeepalive
// (SO_KEEPALIVE set); other bits 0. At most one per end.
struct UnixOptionsRecord {
    uint64_t ino;
    uint32_t options;
    uint32_t reserved;
};
static_assert(sizeof(UnixOptionsRecord) == 16);
// A POSIX message queue (version 8, unix; state/mqueue.cc), after the fd
// record of the lowest fd of its description: its name, attributes, owner and
// queued messages. Followed by the name (name_len bytes, the leading '/'
// included, no NUL), then nmsgs {priority, length} pairs (uint32 each) in the
// order mq_receive gives them, then their bytes (data_len, the sum of the
// lengths), concatenated.
inline constexpr uint32_t kMaxMqName = 256;                // '/' and NAME_MAX bytes
inline constexpr uint32_t kMaxMqMessages = 1u << 16;       // the kernel's HARD_MSGMAX
inline constexpr uint32_t kMaxMqBytes = 16u << 20;         // mq_maxmsg * mq_msgsize saved
// A System V shared memory segment (version 10, sysv) the task attaches
// (VmaKind::kSysvShm, whose `ino` is shmid): made once at restore with the
// same key and id, as /proc/sysvipc/shm showed it while the task was frozen.
// Its content is the pages of its attaches.
inline constexpr uint32_t kMaxSysvShm = 4096;     // the kernel's SHMMNI default
inline constexpr uint32_t kSysvShmDest = 01000;  // SHM_DEST: removed (IPC_RMID) while attached
struct SysvShmRecord {
    int32_t key;    // 0: IPC_PRIVATE (also what IPC_RMID leaves)
    int32_t shmid;
    uint64_t size;  // shm_segsz, bytes
    uint32_t mode;  // shm_perm.mode & 0777, | kSysvShmDest
    uint32_t uid, gid, cuid, cgid;
    uint32_t reserved;  // 0
};
static_assert(sizeof(SysvShmRecord) == 40);

// A System V message queue the task used last (sem, version 11): its last
// msgsnd or msgrcv was the task's. Followed by nmsgs {int64 mtype, uint64
// length} pairs in queue order, then their texts (cbytes bytes in all).
inline constexpr uint32_t kMaxSysvMsg = 32000;             // queues: IPCMNI's ceiling
inline constexpr uint32_t kMaxSysvMsgMessages = 65536;     // messages in one queue
inline constexpr uint64_t kMaxSysvMsgBytes = 16ull << 20;  // texts of one queue
struct SysvMsgRecord {
    int32_t key;  // 0: IPC_PRIVATE
    int32_t msqid;
    uint32_t mode;  // msg_perm.mode & 0777
    uint32_t uid, gid, cuid, cgid;
    uint32_t nmsgs;   // msg_qnum
    uint64_t qbytes;  // msg_qbytes
    uint64_t cbytes;  // the texts' bytes
};
static_assert(sizeof(SysvMsgRecord) == 48);

// A System V semaphore set the task operated on last (sem, version 11): some
// semaphore's sempid (semctl GETPID) was the task's. Followed by nsems u16
// values (GETALL). Its SEM_UNDO adjustments are not seen (docs/state.md).
inline constexpr uint32_t kMaxSysvSem = 32000;       // sets: IPCMNI's ceiling
inline constexpr uint32_t kMaxSysvSemNsems = 32000;  // SEMMSL's ceiling
inline constexpr uint32_t kMaxSysvSemValue = 32767;  // SEMVMX
struct SysvSemRecord {
    int32_t key;  // 0: IPC_PRIVATE
    int32_t semid;
    uint32_t mode;  // sem_perm.mode & 0777
    uint32_t uid, gid, cuid, cgid;
    uint32_t nsems;
};
static_assert(sizeof(SysvSemRecord) == 32);

struct MqueueRecord {
    int32_t fd;
    uint32_t mode;  // st_mode & 07777
    uint32_t uid, gid;
    uint64_t maxmsg, msgsize;  // mq_getattr
    uint32_t nmsgs;
    uint32_t name_len;
    uint32_t deleted;  // 1: unlinked (its name is free again; restore unlinks it)
    uint32_t reserved;  // 0
    uint64_t data_len;
};
static_assert(sizeof(MqueueRecord) == 56);

// Another open file description (version 11, mq2) of the unlinked queue of an
// earlier fd of the task (FdKind::kMqueueSecond; two mq_opens of one name
// before its mq_unlink): `first` is the lowest fd holding the queue, of kind
// kMqueue (unlinked), which holds its attributes and messages. Restore opens
// the queue again through /proc/self/fd/FIRST with this fd's own open flags.
struct MqueueSecondRecord {
    int32_t fd;
    int32_t first;
    uint32_t reserved[2];  // 0
};
static_assert(sizeof(MqueueSecondRecord) == 16);

// pidfd (version 12): the process a pidfd (FdKind::kPidfd) names when it is
// not the task itself: `pid`, another process of the tree's image, an
// ancestor of the task or a child it makes before its fds (state/pidfd.cc).
// No record: the task itself.
struct PidfdTargetRecord {
    int32_t fd;
    int32_t pid;
};
static_assert(sizeof(PidfdTargetRecord) == 8);

// A memfd (version 4, kobj) the task holds by an fd (FdKind::kMemfd) or maps
// (VmaKind::kMemfdShared/kMemfdPrivate), each of which names it by `ino`: made
// once at restore, its contents written once. Followed by its name
// (memfd_create's, name_len bytes, no NUL); its allocated extents follow in
// memfd-data records (holes are not stored).
inline constexpr uint32_t kMaxMemfdName = 249;          // memfd_create's limit
inline constexpr uint64_t kMaxMemfdBytes = 1ull << 30;  // the largest memfd saved
struct MemfdRecord {
    uint64_t ino;    // st_ino at checkpoint: the fds and mappings of this memfd name it
    uint64_t size;   // st_size
    uint32_t seals;  // F_GET_SEALS (F_SEAL_SEAL alone: made without MFD_ALLOW_SEALING)
    uint32_t mode;   // st_mode & 07777
    uint32_t name_len;
    uint32_t reserved;  // 0
};
static_assert(sizeof(MemfdRecord) == 32);

// Bytes of memfd `ino` at `offset` (length - sizeof(MemfdDataRecord) of them),
// after its memfd record, in increasing offset order, not overlapping.
struct MemfdDataRecord {
    uint64_t ino;
    uint64_t offset;
};
static_assert(sizeof(MemfdDataRecord) == 16);

// --- inet sockets (format version 3; docs/network.md) -------------------------

// An fd of kind kTcp or kUdp (its FdRecord has no path). Addresses are in
// network byte order, an IPv4 address in the first 4 bytes; ports in host order.
inline constexpr uint32_t kInetBound = 1u << 0;      // bind()ed to local_addr:local_port
inline constexpr uint32_t kInetConnected = 1u << 1;  // peer_addr:peer_port is the peer
inline constexpr uint32_t kInetListening = 1u << 2;  // TCP listen(backlog)
inline constexpr uint32_t kInetRepair = 1u << 3;     // established TCP: tcp-repair record follows
struct InetSocketRecord {
    int32_t fd;
    uint32_t family;  // AF_INET or AF_INET6
    uint32_t type;    // SOCK_STREAM or SOCK_DGRAM
    uint32_t flags;   // kInet*
    uint8_t local_addr[16];
    uint8_t peer_addr[16];
    uint16_t local_port, peer_port;
    int32_t backlog;  // kInetListening: listen()'s argument (sk_max_ack_backlog)
};
static_assert(sizeof(InetSocketRecord) == 56);

// One socket option whose value differs from a new socket's, applied with
// setsockopt(level, name, value, len). Only the options of the table in
// state/inet_options.cc are written and accepted.
struct InetOptionRecord {
    int32_t fd;
    uint32_t level;
    uint32_t name;
    uint32_t len;  // bytes of value used
    uint8_t value[16];
};
static_assert(sizeof(InetOptionRecord) == 32);

// TCP repair state of an established connection (TCP_REPAIR and friends).
inline constexpr uint32_t kTcpOptSack = 1u << 0;
inline constexpr uint32_t kTcpOptTimestamps = 1u << 1;
inline constexpr uint32_t kTcpOptWscale = 1u << 2;
struct TcpRepairRecord {
    int32_t fd;
    uint32_t options;  // kTcpOpt*
    uint32_t snd_seq;  // TCP_QUEUE_SEQ of the send queue (write_seq)
    uint32_t rcv_seq;  // TCP_QUEUE_SEQ of the receive queue (rcv_nxt)
    uint32_t mss;      // TCP_MAXSEG
    uint32_t snd_wscale, rcv_wscale;
    uint32_t timestamp;                                       // TCP_TIMESTAMP
    uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;  // struct tcp_repair_window
    uint32_t send_len;    // bytes in the send queue (tcp-queue records, queue 2)
    uint32_t unsent_len;  // of those, not yet sent (SIOCOUTQNSD)
    uint32_t recv_len;    // bytes in the receive queue (tcp-queue records, queue 1)
};
static_assert(sizeof(TcpRepairRecord) == 64);

// Queue bytes of an established connection: `length - sizeof(TcpQueueRecord)`
// bytes at `offset` of queue `queue` (1 receive, 2 send: TCP_RECV_QUEUE, TCP_SEND_QUEUE).
inline constexpr uint32_t kMaxTcpQueue = 16u << 20;
struct TcpQueueRecord {
    int32_t fd;
    uint32_t queue;
    uint64_t offset;
};
static_assert(sizeof(TcpQueueRecord) == 16);

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

// Version 3, fidelity: content fingerprints (docs/files.md). A restore compares
// them instead of the inode, so the same bytes elsewhere restore and other bytes
// under the same inode are refused. XXH3-64, seed 0.
//
// The file a fingerprint was taken of (fstat at checkpoint): a restore that
// finds the same inode with the same size and ctime takes it as unchanged
// without reading it (every write moves ctime, and no user can set it back).
struct FileIdentity {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t ctime_sec = 0, ctime_nsec = 0;
};
static_assert(sizeof(FileIdentity) == 40);

// fd-content: follows the fd record of a regular file the task opened read-only
// (same_as -1): the whole file's size and hash.
struct FdContentRecord {
    int32_t fd;
    uint32_t reserved;  // 0
    uint64_t size;
    uint64_t hash;
    FileIdentity id{};
};
static_assert(sizeof(FdContentRecord) == 64);

// vma-content: follows the vma record (kind file-private or file-shared, not
// deleted) that starts at `start`: the hash of the `bytes` bytes of the file
// under the mapping (from pgoff, at most the mapping's length; fewer when the
// file ends inside the mapping).
struct VmaContentRecord {
    uint64_t start;
    uint64_t bytes;
    uint64_t hash;
    FileIdentity id{};
};
static_assert(sizeof(VmaContentRecord) == 64);

// settings (fidelity): per-task settings a restore applies exactly (stage 1,
// as the writer: the kernel decides, e.g. SCHED_FIFO needs CAP_SYS_NICE or
// RLIMIT_RTPRIO). Followed by `cpus_len` bytes of the CPU affinity mask
// (sched_getaffinity's bytes). At most one; an image without one (versions
// 1, 2) restores the restorer's defaults, which version-2 checkpoints required.
struct SettingsRecord {
    uint32_t policy;       // sched_getscheduler without SCHED_RESET_ON_FORK: 0,1,2,3,5
    uint32_t rt_priority;  // sched_param: 1..99 for FIFO/RR, 0 otherwise
    uint32_t reset_on_fork;
    int32_t oom_score_adj;     // -1000..1000
    uint64_t timer_slack_ns;   // PR_GET_TIMERSLACK: >= 1, 0 for FIFO/RR
    uint32_t thp_disable;      // PR_GET_THP_DISABLE: 0, 1
    uint32_t child_subreaper;  // PR_GET_CHILD_SUBREAPER: 0, 1
    uint32_t dumpable;         // PR_GET_DUMPABLE: 0, 1
    uint32_t membarrier;       // MEMBARRIER_CMD_GET_REGISTRATIONS: the REGISTER_* bits
    uint32_t cpus_len;         // bytes of affinity mask after the struct, 8..kMaxCpuMaskBytes
    uint32_t reserved;         // 0
};
static_assert(sizeof(SettingsRecord) == 48);

// Version 4 (state/seccomp.cc): one seccomp filter of the task, oldest first
// (`index` 0 is the filter installed first, as PTRACE_SECCOMP_GET_FILTER
// numbers them). Followed by `len` classic BPF instructions (struct
// sock_filter, 8 bytes each), as the kernel returned them.
struct SeccompFilterRecord {
    uint32_t index;
    uint32_t flags;  // SECCOMP_FILTER_FLAG_LOG (2), from PTRACE_SECCOMP_GET_METADATA
    uint32_t len;    // 1..kMaxSeccompInsns
    uint32_t reserved;
};
static_assert(sizeof(SeccompFilterRecord) == 16);
inline constexpr uint32_t kMaxSeccompInsns = 4096;       // BPF_MAXINSNS
inline constexpr uint32_t kMaxSeccompPathInsns = 32768;  // MAX_INSNS_PER_PATH (+4 per filter)

// Version 4 (state/timers.cc): one POSIX timer (timer_create), in id order,
// from /proc/<pid>/timers and timer_gettime run in the frozen task. Time as
// for a timerfd: time left (value_ns, 0: disarmed) and period at
// `captured_ns` on its clock, `boot_id` telling whether a monotonic deadline
// still means the same instant.
struct PosixTimerRecord {
    int32_t id;       // the timer id timer_create returned
    int32_t clockid;  // REALTIME, MONOTONIC, BOOTTIME, *_ALARM, PROCESS/THREAD_CPUTIME_ID
    int32_t notify;   // SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID (main thread; 104: another)
    int32_t signo;    // 1..64, 0 for SIGEV_NONE
    uint64_t sigval;  // sigev_value
    uint64_t value_ns, interval_ns, captured_ns;
    uint8_t boot_id[16];
};
static_assert(sizeof(PosixTimerRecord) == 64);
inline constexpr uint32_t kMaxPosixTimers = 1u << 16;

// Version 7 (state/timers.cc): right after the posix-timer record of a timer
// whose SIGEV_THREAD_ID names a thread other than the main one (glibc's
// SIGEV_THREAD helper thread, say): that thread's tid, one of the image's
// thread records. Without it a SIGEV_THREAD_ID timer signals the main thread.
struct PosixTimerThreadRecord {
    int32_t id;   // the posix-timer record's id
    int32_t tid;  // the thread its signal goes to
};
static_assert(sizeof(PosixTimerThreadRecord) == 8);

// Version 4 (state/locks.cc): one file lock the task holds, after every fd
// record, re-acquired at restore without waiting. `fd` is the lowest fd of the
// open file description it is held through (flock, OFD) or of the file (POSIX:
// the process holds it).
enum class FileLockKind : uint32_t { kFlock = 1, kPosix = 2, kOfd = 3 };
struct FileLockRecord {
    int32_t fd;
    uint32_t kind;  // FileLockKind
    uint32_t type;  // F_RDLCK 0, F_WRLCK 1
    uint32_t reserved;
    int64_t start;  // bytes; flock: 0
    int64_t len;    // bytes, 0: to the end of the file (fdinfo "EOF"); flock: 0
};
static_assert(sizeof(FileLockRecord) == 32);
inline constexpr uint32_t kMaxFileLocks = 1u << 16;

// Version 5 (fid, state/restart.cc): the main thread was inside a syscall
// the kernel restarts. Its regs record holds the restart already applied (rip
// on the `syscall` instruction, rax the number to run again); this record
// keeps what the kernel knew: the syscall (orig_rax) and the restart code it
// returned (-ERESTARTSYS -512, -ERESTARTNOINTR -513, -ERESTARTNOHAND -514,
// -ERESTART_RESTARTBLOCK -516), so that a signal handled before the task is
// back inside still ends the syscall with EINTR where the kernel would.
// Since session 31 a thread other than the main one has its own, after its
// thread record (read without a version bump: an older reader refuses it as a
// second record of the main thread, not as something else).
struct SyscallRestartRecord {
    int64_t nr;
    int64_t code;
};
static_assert(sizeof(SyscallRestartRecord) == 16);

// Version 5 (fid, state/mlockall.cc): mlockall(MCL_FUTURE), with MCL_ONFAULT
// (2, 4 as in <sys/mman.h>): the flags of the task's later mappings. None: no record.
struct MlockallRecord {
    uint32_t flags;
    uint32_t reserved;
};
static_assert(sizeof(MlockallRecord) == 8);

// Version 6 (fid, state/thread_attrs.cc): what each thread holds of its own
// and a new thread does not take from its creator (pdeathsig) or takes from
// it (timer slack, I/O priority). One right after each thread record (the
// main thread's too); an image without them (versions 1-5) restores every
// thread with the main thread's slack and I/O priority and no pdeathsig.
// securebits (session 29) was `reserved`, 0: an image that has none set is
// the same bytes as before, and a crfs older than it refuses one that has
// some ("reserved N"), never restores it without them.
struct ThreadAttrsRecord {
    int32_t tid;              // the thread record's
    int32_t pdeathsig;        // PR_GET_PDEATHSIG: 0 none, 1..64
    uint64_t timer_slack_ns;  // PR_GET_TIMERSLACK: >= 1, 0 for FIFO/RR
    uint32_t ioprio;          // ioprio_get(IOPRIO_WHO_PROCESS): class << 13 | hint << 3 | level
    uint32_t securebits;      // PR_GET_SECUREBITS: SECBIT_* and their locks, bits 0..11
};
static_assert(sizeof(ThreadAttrsRecord) == 24);

// Version 14 (delcwd, state/fs.cc): the task's cwd is a removed directory
// (the fs record's cwd is where it lived, without " (deleted)"), made again
// empty in its old parent and removed (as fd kind 39). At most one.
struct DeletedCwdRecord {
    uint32_t mode;       // S_IFDIR | permission bits
    int32_t fd;          // the task's fd of this very directory (a kind 39 record), or -1
    int64_t mtime_sec;   // its mtime
    int64_t mtime_nsec;  // 0..999999999
};
static_assert(sizeof(DeletedCwdRecord) == 24);

// Version 15 (cwdtree, state/fs_tree.cc): after a tree member's deleted-cwd
// record (whose fd is then -1): that removed cwd is the directory an earlier
// member of index `member` holds as its cwd (`fd` -1) or as its fd `fd` (a
// kind 39 record of its own): made once, by that member's restore.
struct DeletedCwdFromRecord {
    uint32_t member;
    int32_t fd;
};
static_assert(sizeof(DeletedCwdFromRecord) == 8);
inline constexpr uint32_t kMaxCpuMaskBytes = 1024;  // CONFIG_NR_CPUS up to 8192
// MEMBARRIER_CMD_REGISTER_{GLOBAL_EXPEDITED, PRIVATE_EXPEDITED, .._SYNC_CORE, .._RSEQ}.
inline constexpr uint32_t kMembarrierRegistrations = (1u << 2) | (1u << 4) | (1u << 6) | (1u << 8);
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

// trees (version 4): a process tree's image is a process record before each
// process's own records (the root first, every parent before its children);
// an image without one is one process, as before version 4.
struct ProcessRecord {
    int32_t pid, ppid, pgid, sid;  // as /proc/<pid>/stat showed them, frozen
    uint32_t flags;                // kProcess* flags
    uint32_t reserved;
};
static_assert(sizeof(ProcessRecord) == 24);
inline constexpr uint32_t kProcessWasStopped = 1u << 0;  // in group-stop when frozen
inline constexpr uint32_t kProcessZombie = 1u << 1;  // life (version 5): a zombie record follows

// life (version 5): a zombie of a tree, the one record after its process
// record: how it ended (wait status, as /proc/<pid>/stat field 52 shows it),
// its real uid and gid (waitid's si_uid) and its name.
struct ZombieRecord {
    int32_t exit_code;
    uint32_t uid, gid;
    uint32_t reserved;
    char comm[16];  // NUL-padded
};
static_assert(sizeof(ZombieRecord) == 32);
inline constexpr uint32_t kMaxProcesses = 1024;          // processes in one image

// streamtree (version 16, docs/trees.md "Streaming a tree's restore"): a
// tree's image holds every process's records first (no pages, no stats), the
// zombies' too, and then a page section per live process, in image order,
// each opened by this record: only that process's pages and stats records
// follow it, up to the next section or the trailer. `process` is the
// process's index in the image (its process record's place). So a restore
// can plan every member before any page arrives.
struct MemberPagesRecord {
    uint32_t process;
    uint32_t reserved;  // 0
};
static_assert(sizeof(MemberPagesRecord) == 8);
inline constexpr uint32_t kFirstSectionedVersion = 16;

// overlap (version 17, docs/trees.md "A tree's copy under its stream"): the
// stats of a tree's live process whose page section was sent before the tree
// was thawed (its frozen time was not known yet). After the last section's
// pages, only these follow, in increasing `process` (its index in the image,
// a live process with a section); a process has a stats record in its section
// or a member-stats record, never both. Informative, as stats.
struct MemberStatsRecord {
    uint32_t process;
    uint32_t reserved;  // 0
    StatsRecord stats;
};
static_assert(sizeof(MemberStatsRecord) == 72);
inline constexpr uint32_t kFirstMemberStatsVersion = 17;

// share (version 9, docs/trees.md "Clones sharing their fd table or fs"): a
// process of a tree that shares its fd table (CLONE_FILES) or its cwd, root
// and umask (CLONE_FS) with an earlier process of the image: the one record
// after its process record. files_pid / fs_pid name the FIRST process of the
// image sharing it (0: not shared). A process sharing its fd table has no fd
// records of its own: they are that process's.
struct ShareTaskRecord {
    int32_t files_pid;
    int32_t fs_pid;
    uint32_t flags;  // 0
    uint32_t reserved;
};
static_assert(sizeof(ShareTaskRecord) == 16);

// tty (version 7, docs/trees.md "Shell jobs"): the controlling terminal (a
// pseudo-terminal slave) of the image's session, in the root process's
// records after its fd records, when a process of the image holds an fd of
// kind kTty or kDevTty. The restore makes the writer's new terminal the
// controlling terminal of the root's session with these settings.
struct TtyRecord {
    uint32_t flags;   // 0
    int32_t fg_pgid;  // the terminal's foreground process group (/proc stat tpgid)
    int32_t sid;      // its session as /proc showed it (0: led from outside the pid namespace)
    uint32_t index;   // /dev/pts/<index> at the checkpoint (shown, not restored)
    // struct termios2 (TCGETS2): flags, line discipline, control characters, speeds.
    uint32_t iflag, oflag, cflag, lflag;
    uint8_t line;
    uint8_t cc[19];
    uint32_t ispeed, ospeed;
    uint16_t rows, cols, xpixel, ypixel;  // TIOCGWINSZ
    uint32_t reserved;
};
static_assert(sizeof(TtyRecord) == 72);

// incr (version 5, docs/incremental.md): an image read from /crfs/<pid>/delta
// is one link of a chain. Its chain record comes first (record 0): `id` names
// this image, `base_id` the image it was taken relative to (0: none, this is
// the chain's first image, complete in itself). Restore takes a chain as the
// images concatenated in order, each delta naming the one before it.
struct ChainRecord {
    uint64_t id;       // random, never 0
    uint64_t base_id;  // 0: a complete image
};
static_assert(sizeof(ChainRecord) == 16);

// A delta's pages that did not change since its base: their content is the
// base's (after the chain before it was applied). Inside a preceding VMA,
// sorted, disjoint, never overlapping a pages record of the same image. A
// page of a delta's VMA in neither a pages nor a keep record is unpopulated
// (zero, or the file's for a file mapping), as in a complete image.
struct KeepRecord {
    uint64_t vaddr;
    uint64_t nr_pages;  // 1..(the VMA's pages)
};
static_assert(sizeof(KeepRecord) == 16);

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
