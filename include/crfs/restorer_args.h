/* The one argument of the restorer blob (restorer/blob/): a flat, trivially
 * copyable struct of values and pointer + count pairs, built by the C++ driver
 * (restorer/) inside the blob's own area and read by the freestanding blob.
 * The blob never sees the image format: every address, length, file offset
 * and flag here is already decoded, checked and in the form a syscall takes.
 * Shared by C (the blob) and C++ (the driver): plain C, fixed-width fields,
 * pointers as uint64_t so both sides agree on the layout byte for byte. */
#ifndef CRFS_RESTORER_ARGS_H
#define CRFS_RESTORER_ARGS_H

#include <stdint.h>

#define CRFS_RA_MAGIC 0x4352465352535431ull /* "CRFSRST1" */

/* How the blob maps one image VMA. */
enum crfs_ra_map_kind {
    CRFS_RA_ANON = 1, /* anonymous, private or shared (mmap_flags say) */
    CRFS_RA_FILE = 2, /* file mapping: open path with open_flags, map at pgoff */
    /* sysv: shmat(file_off = shmid, start, open_flags = SHM_RDONLY/SHM_EXEC),
     * then shmctl(IPC_RMID) when mmap_flags holds CRFS_RA_SYSV_RMID
     * (state/sysv_shm.h) */
    CRFS_RA_SYSV = 3,
};

struct crfs_ra_vma {
    uint64_t start, end;
    uint64_t file_off;   /* bytes, for CRFS_RA_FILE */
    uint64_t path;       /* const char*, NUL-terminated, for CRFS_RA_FILE */
    uint32_t kind;       /* crfs_ra_map_kind */
    uint32_t prot;       /* final PROT_* */
    uint32_t mmap_flags; /* MAP_PRIVATE/MAP_SHARED/MAP_ANONYMOUS/MAP_GROWSDOWN (MAP_FIXED added) */
    uint32_t open_flags; /* O_RDONLY or O_RDWR */
    uint64_t madv;       /* fidelity: CRFS_RA_MADV_* applied after the protections */
    uint64_t name;       /* names: const char*, PR_SET_VMA_ANON_NAME set last, or 0 */
};

#define CRFS_RA_SYSV_RMID 0x1u /* sysv: the segment was removed (IPC_RMID) while attached */

/* crfs_ra_vma.madv (fidelity): the VmFlags a restore applies again with
 * madvise(2) / mlock2(2), in this order, after every mapping is filled and
 * protected (restorer/blob/blob.c advise_vmas). */
#define CRFS_RA_MADV_DONTFORK 0x1u     /* "dc" MADV_DONTFORK */
#define CRFS_RA_MADV_WIPEONFORK 0x2u   /* "wf" MADV_WIPEONFORK */
#define CRFS_RA_MADV_HUGEPAGE 0x4u     /* "hg" MADV_HUGEPAGE */
#define CRFS_RA_MADV_NOHUGEPAGE 0x8u   /* "nh" MADV_NOHUGEPAGE */
#define CRFS_RA_MADV_DONTDUMP 0x10u    /* "dd" MADV_DONTDUMP */
#define CRFS_RA_MADV_LOCK 0x20u        /* "lo" mlock2(0) */
#define CRFS_RA_MADV_LOCKONFAULT 0x40u /* "lo" + "lf" mlock2(MLOCK_ONFAULT) */

/* Stored pages: nr_pages * 4096 bytes at image file offset file_off go to vaddr. */
struct crfs_ra_pages {
    uint64_t vaddr;
    uint64_t nr_pages;
    uint64_t file_off;
};

/* An address range [start, end). */
struct crfs_ra_range {
    uint64_t start, end;
};

/* A kernel mapping of this kernel (vdso, vvar, vvar_vclock) moved from cur to
 * dst via tmp (two mremaps, so moves cannot collide with each other). */
struct crfs_ra_move {
    uint64_t cur, len, tmp, dst;
};

/* One pending signal: re-queued to the task itself with rt_(tg)sigqueueinfo. */
struct crfs_ra_siginfo {
    uint32_t shared; /* 1: process queue, 0: thread queue */
    int32_t signo;
    uint8_t info[128];
};

/* One thread other than the main one: created by the blob (clone3 with its
 * tid), which sets what a thread holds on its own and rt_sigreturns through
 * its own frame (registers, blocked mask, alternate stack, xstate). */
/* fid: a thread's own attributes (state/thread_attrs.h), set by the thread
 * itself after its credentials; present 0: what it inherited stays. */
struct crfs_ra_thread_attrs {
    uint64_t timer_slack_ns; /* 0: left (a real-time thread has none) */
    int32_t ioprio;
    int32_t pdeathsig; /* 0: none (the image's root: docs/state.md) */
    int32_t present;
    int32_t tid;
    uint32_t securebits; /* PR_SET_SECUREBITS where the thread's differ (needs CAP_SETPCAP) */
    uint32_t reserved;
};

struct crfs_ra_thread {
    int32_t tid;
    uint32_t rseq_len;
    uint64_t stack_top;                  /* its blob stack, 16-byte aligned, in the area */
    uint64_t sigframe;                   /* frame built by the driver, in the area */
    uint64_t sigframe_dst, sigframe_len; /* copied onto its own stack; dst 0: used in place */
    uint64_t fs_base, gs_base;
    uint64_t robust_head, robust_len; /* 0: none */
    uint64_t rseq_area;               /* 0: none */
    uint32_t rseq_sig;
    uint32_t reserved;
    uint64_t clear_child_tid; /* 0: none */
    uint64_t siginfo;         /* struct crfs_ra_siginfo*: its private queue, queued by the main */
    uint64_t nr_siginfo;
    char comm[16];
    struct crfs_ra_thread_attrs attrs; /* fid */
};

/* Where the threads and the main thread meet before returning to the task:
 * a page that stays mapped (after the code pages) since threads read `go`
 * after the rest of the area is gone. */
struct crfs_ra_sync {
    uint32_t ready; /* threads done with their own steps */
    uint32_t go;    /* set by the main thread after 'K': every thread returns */
};

/* kobj: a memfd the restore made (state/memfd.h), held at `fd` until every
 * mapping is made and filled; then F_ADD_SEALS `seals` (0: none) and closed. */
struct crfs_ra_memfd {
    int32_t fd;
    uint32_t seals;
};

/* thpidfd: a pidfd of a thread (PIDFD_THREAD), put at `fd` by the blob once
 * the thread exists (restorer/blob/thread_pidfds.h): stage 1 left a
 * placeholder there. `wait`: the placeholder is the read end of the pipe of
 * another member, which its blob closes once its threads exist (end of file:
 * made, or that member failed). `dup_of` >= 0: a dup of that earlier fd of
 * the list (one description) instead.
 * thpidfd2: `recv` (1): the description another member made, received on the
 * placeholder (the receiving end of that member's channel) instead; `give`
 * >= 0: once made, sent `gives` times on that channel (one for each later
 * member holding the description), then closed. `epfd` >= 0: no pidfd but
 * the watch of epoll `epfd` on `fd` ({events, data}), added once the pidfds
 * are made (stage 1 adds no watch on a placeholder). */
struct crfs_ra_thread_pidfd {
    int32_t fd;
    int32_t tid;
    int32_t flags; /* pidfd_open flags: PIDFD_THREAD, PIDFD_NONBLOCK */
    int32_t cloexec;
    int32_t wait;
    int32_t dup_of;
    int32_t recv;
    int32_t give;
    uint32_t gives;
    int32_t epfd;
    uint32_t events;
    uint32_t reserved;
    uint64_t data;
};

/* fid-exact: one seccomp filter, installed by the blob's last step
 * (restorer/blob/seccomp.h) with seccomp(SECCOMP_SET_MODE_FILTER, flags). */
struct crfs_ra_seccomp {
    uint64_t insns; /* struct sock_filter*, in the area */
    uint32_t len;   /* instructions */
    uint32_t flags; /* SECCOMP_FILTER_FLAG_LOG or 0 */
};

/* timer: a POSIX timer whose signal goes to a thread other than the main one
 * (SIGEV_THREAD_ID; glibc's SIGEV_THREAD helper), made by the blob's main
 * thread once that thread exists (the kernel wants the target in the thread
 * group) with its id (PR_TIMER_CREATE_RESTORE_IDS), then armed with
 * timer_settime(settime_flags, its). */
struct crfs_ra_posix_timer {
    int32_t id, clockid, signo, tid;
    uint64_t sigval;
    int64_t its[4]; /* struct itimerspec: interval sec/nsec, value sec/nsec */
    int32_t settime_flags;
    int32_t reserved;
};

struct crfs_ra_sigaction {
    uint64_t handler, flags, restorer, mask;
};

/* Same layout as the kernel's struct prctl_mm_map (PR_SET_MM_MAP). */
struct crfs_ra_mm_map {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint64_t auxv;      /* uint64_t* */
    uint32_t auxv_size; /* bytes */
    uint32_t exe_fd;    /* filled in by the blob after opening exe_path */
};

/* Error report the blob writes to status_fd before exiting; success is one
 * byte 'K' written just before rt_sigreturn (the point of no return). */
#define CRFS_RA_REPORT_TAG 0x52524545u /* "EERR": never starts with 'K' */
struct crfs_ra_report {
    uint32_t tag; /* CRFS_RA_REPORT_TAG */
    int32_t err;  /* positive errno */
    int32_t step; /* enum crfs_ra_step */
    int32_t reserved;
    uint64_t arg; /* which VMA index / address / signal the step was on */
};

enum crfs_ra_step {
    CRFS_RA_STEP_UNMAP = 1,
    CRFS_RA_STEP_MOVE_SPECIAL,
    CRFS_RA_STEP_OPEN_VMA_FILE,
    CRFS_RA_STEP_MAP_VMA,
    CRFS_RA_STEP_FILL_PAGES,
    CRFS_RA_STEP_PROTECT,
    CRFS_RA_STEP_OPEN_EXE,
    CRFS_RA_STEP_MM_MAP,
    CRFS_RA_STEP_SIGACTION,
    CRFS_RA_STEP_SIGQUEUE,
    CRFS_RA_STEP_ITIMER,
    CRFS_RA_STEP_CREDS,
    CRFS_RA_STEP_TLS,
    CRFS_RA_STEP_SIGRETURN,
    CRFS_RA_STEP_BAD_ARGS,
    CRFS_RA_STEP_FILE_TYPE,    /* a VMA's file is not a regular file (arg: VMA index) */
    CRFS_RA_STEP_DROP_CAPS,    /* dropping CAP_CHECKPOINT_RESTORE after the exe link */
    CRFS_RA_STEP_THREAD,       /* creating a thread (arg: its tid) */
    CRFS_RA_STEP_THREAD_STATE, /* a thread's own state: robust list, rseq, tid address (arg: tid) */
    /* Stage 1 (the driver's code in the new task, before the blob). */
    CRFS_RA_STEP_SESSION = 100,
    CRFS_RA_STEP_FSCREDS,
    CRFS_RA_STEP_CLOSE_FDS,
    CRFS_RA_STEP_OPEN_FD,
    CRFS_RA_STEP_DUP_FD,
    CRFS_RA_STEP_SEEK_FD,
    CRFS_RA_STEP_CWD,
    CRFS_RA_STEP_RLIMIT,
    CRFS_RA_STEP_NICE,
    CRFS_RA_STEP_PERSONALITY,
    CRFS_RA_STEP_WRITER_CONTEXT, /* loginuid, cgroup, baselines (arg: which) */
    CRFS_RA_STEP_BECOME_WRITER,  /* the switch to the writer's credentials (arg: which) */
    CRFS_RA_STEP_FD_TYPE,        /* an fd's file is not of its recorded type (arg: fd) */
    /* Kernel objects (state/kobj.h), numbered clear of other steps. */
    CRFS_RA_STEP_KOBJ = 140,    /* making an eventfd, timerfd, ... (arg: fd) */
    CRFS_RA_STEP_TIMER,         /* setting a timerfd's ticks and time (arg: fd) */
    CRFS_RA_STEP_EPOLL_WATCH,   /* adding an epoll watch (arg: epoll fd << 32 | watched fd) */
    CRFS_RA_STEP_INOTIFY_WATCH, /* adding an inotify watch (arg: its wd) */
    CRFS_RA_STEP_MEMFD_SEAL,    /* kobj: F_ADD_SEALS of a memfd (arg: its memfd list index) */
    /* fidelity: the settings record (state/settings.h; arg: which setting) */
    CRFS_RA_STEP_SETTINGS = 160,
    CRFS_RA_STEP_ADVISE = 161, /* madvise/mlock of a mapping (arg: VMA index) */
    /* trees: a process creating a child of the tree (arg: the child's pid) */
    CRFS_RA_STEP_CHILD = 170,
    /* share: giving or taking a description shared in a tree (arg: the fd) */
    CRFS_RA_STEP_SHARE_FD = 176,
    /* fid-exact (190-199) */
    CRFS_RA_STEP_SECCOMP = 190, /* installing seccomp filter (arg: its index, oldest first) */
    CRFS_RA_STEP_POSIX_TIMER,   /* stage 1: making POSIX timer (arg: its id) */
    CRFS_RA_STEP_FILE_LOCK,     /* stage 1: taking a file lock again (arg: its index) */
    /* fid (200-209) */
    CRFS_RA_STEP_MLOCKALL = 200, /* mlockall(MCL_FUTURE...) (arg: the flags) */
    /* fid (210-219) */
    CRFS_RA_STEP_THREAD_ATTRS = 210, /* slack, ioprio, pdeathsig, securebits: tid << 8 | which */
    /* tty (220-229): the shell job's terminal, stage 1 (state/tty.h) */
    CRFS_RA_STEP_TTY_CTTY = 220, /* TIOCSCTTY of the writer's terminal */
    CRFS_RA_STEP_TTY_TERMIOS,    /* TCSETS2 */
    CRFS_RA_STEP_TTY_WINSIZE,    /* TIOCSWINSZ */
    CRFS_RA_STEP_TTY_FG,         /* TIOCSPGRP (arg: the group) */
    /* unix (230-239): a client process connecting to its server, another process of the tree
       (arg: the client's fd) */
    CRFS_RA_STEP_UNIX_CONNECT = 230,
    /* unix (231-233): a POSIX message queue, stage 1 (state/mqueue.cc; arg: its fd) */
    CRFS_RA_STEP_MQ_OPEN = 231, /* creating or opening the queue by its name */
    CRFS_RA_STEP_MQ_OTHER,      /* the queue exists with other attributes, owner or messages */
    CRFS_RA_STEP_MQ_FILL,       /* giving a queue made anew its mode and messages */
    /* names (240-241) */
    CRFS_RA_STEP_VMA_NAME = 240, /* PR_SET_VMA_ANON_NAME of a mapping (arg: VMA index) */
    /* sysv (250-254) */
    CRFS_RA_STEP_SYSV_ATTACH = 250, /* shmat of a System V segment (arg: VMA index) */
    CRFS_RA_STEP_SYSV_RMID = 251,   /* IPC_RMID of a segment removed while attached (arg: VMA) */
    /* timer (260-269) */
    CRFS_RA_STEP_THREAD_TIMER = 260, /* making POSIX timer signalling a thread (arg: its id) */
    /* mq2 (270-274): another description of an unlinked queue (state/mqueue_second.cc) */
    CRFS_RA_STEP_MQ_SECOND = 270, /* reopening it through /proc/self/fd of the first (arg: fd) */
    /* deltwice (273-274): another open file description of a deleted file, removed directory
       or memfd of the task, opened again from its first fd (state/file_reopen.cc; arg: fd) */
    CRFS_RA_STEP_REOPEN = 273,       /* open of /proc/self/fd/FIRST with its flags */
    CRFS_RA_STEP_REOPEN_OTHER = 274, /* the file opened is not the first's inode (ESTALE) */
    /* stream (280-284): a restore that streams the pages (restorer/blob/stream.h) */
    CRFS_RA_STEP_STREAM_READY = 280, /* userfaultfd made and registered; the report with err 0
                                        says ready (arg: the userfaultfd's number) */
    CRFS_RA_STEP_STREAM_GO = 281,    /* waiting for the go and unregistering (arg: address) */
    /* mqtree (285): a description made for another process of the tree */
    CRFS_RA_STEP_SHARE_REOPEN = 285, /* reopening it through /proc/self/fd (arg: the giver's fd) */
    /* fifo (271-274): a FIFO an earlier process of the tree restores (docs/trees.md) */
    CRFS_RA_STEP_FIFO_JOIN = 271, /* opening it by its path, as the writer (arg: fd) */
    /* pidfd2 (272-274): a pidfd of a member made for another (state/pidfd.h) */
    CRFS_RA_STEP_PIDFD_GIVE = 272, /* pidfd_open of it by its cloner, handed over (arg: pid) */
    /* thpidfd (275-277): a pidfd of a thread, made by the blob once the thread exists
       (restorer/blob/thread_pidfds.h; arg: the fd) */
    CRFS_RA_STEP_THREAD_PIDFD = 275,      /* pidfd_open(tid, PIDFD_THREAD), dup3 to its fd */
    CRFS_RA_STEP_THREAD_PIDFD_WAIT = 276, /* waiting for another member's threads (its pipe) */
    /* thpidfd2 (286-288): a pidfd of a thread watched by an epoll or held by several members */
    CRFS_RA_STEP_THREAD_PIDFD_WATCH = 286, /* epoll_ctl ADD of the watch on it (arg: the fd) */
    CRFS_RA_STEP_THREAD_PIDFD_RECV = 287,  /* receiving it from the member that made it */
    CRFS_RA_STEP_THREAD_PIDFD_GIVE = 288,  /* handing it to the later members holding it */
    /* delcwd (277-278): a removed cwd made again (state/fs.h) */
    CRFS_RA_STEP_DELETED_CWD = 277, /* fchdir to it */
};

struct crfs_restorer_args {
    uint64_t magic;    /* CRFS_RA_MAGIC */
    uint64_t size;     /* sizeof(struct crfs_restorer_args) */
    int32_t image_fd;  /* the image, read with pread at crfs_ra_pages.file_off */
    int32_t status_fd; /* pipe to the driver: crfs_ra_report or 'K' */

    uint64_t rseq_area; /* the cloned thread's rseq registration, unregistered first */
    uint32_t rseq_len;
    uint32_t rseq_sig;

    uint64_t unmap; /* struct crfs_ra_range*: everything but the blob area and the moves */
    uint64_t nr_unmap;
    uint64_t moves; /* struct crfs_ra_move* */
    uint64_t nr_moves;
    uint64_t vmas; /* struct crfs_ra_vma*, in address order */
    uint64_t nr_vmas;
    uint64_t pages; /* struct crfs_ra_pages* */
    uint64_t nr_pages;

    struct crfs_ra_mm_map mm;
    uint64_t exe_path; /* const char*, or 0: keep no exe link */

    struct crfs_ra_sigaction sigactions[64]; /* signal i+1; SIGKILL/SIGSTOP skipped */
    uint64_t siginfo;                        /* struct crfs_ra_siginfo*, in queue order */
    uint64_t nr_siginfo;
    int64_t itimers[3][4]; /* ITIMER_REAL/VIRTUAL/PROF: interval sec/usec, value sec/usec */

    /* Credentials, set last (PR_SET_MM_MAP needs CAP_SYS_ADMIN before). */
    uint32_t set_creds;      /* 0: keep the driver's (already the right ones) */
    uint32_t uid[4], gid[4]; /* real, effective, saved, fs */
    uint64_t groups;         /* uint32_t* */
    uint64_t nr_groups;
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t no_new_privs;
    uint32_t last_cap;

    uint64_t fs_base, gs_base;
    /* A complete x86-64 rt_sigframe built by the driver (ucontext with the saved
     * registers, blocked mask and alternate stack, then the xsave area): the
     * blob points rsp at frame + 8 and calls rt_sigreturn. */
    uint64_t sigframe;
    /* Where the frame goes (below the task's red zone on its own stack, as a
     * signal delivery would put it) and its size; 0: use it where it is. */
    uint64_t sigframe_dst;
    uint64_t sigframe_len;
    /* The blob's data and stack, unmapped in the last instructions before
     * rt_sigreturn (only the blob's code pages stay); 0: keep everything. */
    uint64_t self_unmap;
    uint64_t self_unmap_len;
    /* Fault injection (CRFS_RESTORE_FAULT=<step>, tests only): fail with
     * ECANCELED on reaching that step; 0: off. */
    int32_t fault_step;
    /* The task was stopped when checkpointed: the blob sends itself SIGSTOP
     * in its last instructions, so not one of the task's own instructions
     * runs before it stops. */
    int32_t stop_self;
    /* The task's own rseq area (its glibc's, in the image's TLS), registered
     * again last: the kernel forgot it with the old task. 0: none. */
    uint64_t task_rseq_area;
    uint32_t task_rseq_len;
    uint32_t task_rseq_sig;
    /* A non-root writer's task already holds the writer's credentials (stage
     * 1) plus, when exe_path is set, CAP_CHECKPOINT_RESTORE for PR_SET_MM_MAP's
     * exe_fd: drop_caps clears every capability right after that call. */
    uint32_t drop_caps;
    /* PR_SET_DUMPABLE value set last (a credential change resets it). */
    uint32_t dumpable;
    /* task_rseq_* come from the image (version 3), not from guessing: a
     * failed registration is an error, not skipped. */
    uint32_t task_rseq_strict;
    /* The main thread's robust list and clear_child_tid (0: none); its rseq is task_rseq_*. */
    uint64_t robust_head, robust_len;
    uint64_t clear_child_tid;
    /* The other threads (struct crfs_ra_thread*), and the page they meet in. */
    uint64_t threads;
    uint64_t nr_threads;
    uint64_t sync; /* struct crfs_ra_sync* */
    /* kobj: the memfds to seal and close after advise_vmas (struct crfs_ra_memfd*). */
    uint64_t memfds;
    uint64_t nr_memfds;
    /* trees: after 'K' the blob reads one byte from go_fd (the driver writes
     * one per process once every process of the tree is built) and closes
     * it; end of file (the driver gave up) ends the task. has_go 0: none. */
    int32_t go_fd;
    int32_t has_go;
    /* fid-exact: the task's seccomp filters (struct crfs_ra_seccomp*), oldest
     * first, installed right before the 'K' report and rt_sigreturn. */
    uint64_t seccomp;
    uint64_t nr_seccomp;
    /* fid: mlockall flags (MCL_FUTURE, MCL_ONFAULT) once every mapping is
     * made (state/mlockall.h); 0: none. */
    uint64_t mlockall_flags;
    /* fid: the main thread's own attributes (state/thread_attrs.h). */
    struct crfs_ra_thread_attrs main_attrs;
    /* restore: page data comes from pages_fd at crfs_ra_pages.file_off (a
     * slot's page store, page-aligned, or image_fd itself). Anonymous private
     * memory is filled with UFFDIO_COPY from a read-only mapping of it made
     * at `window` (window_len bytes of the blob area, unmapped again after);
     * window_len 0: pread only. Runs that follow one another in the task
     * and in the store are copied as one (restorer/blob/fill_uffd.h);
     * fill_by_run 1: one run at a time, as before (CRFS_RESTORE_FILL_BY_RUN=1
     * in crfsd's environment: the "before" of docs/performance.md). */
    int32_t pages_fd;
    int32_t fill_by_run;
    uint64_t window;
    uint64_t window_len;
    /* timer: the POSIX timers signalling another thread (struct crfs_ra_posix_timer*),
     * made after the threads (restorer/blob/thread_timers.h). */
    uint64_t thread_timers;
    uint64_t nr_thread_timers;
    /* thpidfd: the pidfds of threads (struct crfs_ra_thread_pidfd*), made once
     * the threads exist; threads_made_fd (has_threads_made): this process's end
     * of the pipe on which holders in other members wait for its threads,
     * closed right after they are made. */
    uint64_t thread_pidfds;
    uint64_t nr_thread_pidfds;
    int32_t threads_made_fd;
    int32_t has_threads_made;
    /* stream: after mapping the VMAs the blob registers every private
     * anonymous one on a userfaultfd of its own, reports ready (step 280,
     * err 0, arg: the fd) and waits for one byte on stream_go_fd; the driver
     * copies the pages in meanwhile (fs/slot_stream.h). 0: not streamed. */
    int32_t stream;
    int32_t stream_go_fd;
};

#endif
