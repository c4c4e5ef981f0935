// The restore driver: decode and validate (nothing created yet), prepare the
// blob's area and argument struct in this process, clone3 the task (with the
// wanted pid), let stage 1 (child side of this file and files/task_attrs) and
// the blob rebuild it, and wait on the status pipe for the point of no return.
//
//   daemon thread                       new task
//   decode, validate
//   plan fds / memory / signals
//   map blob area, fill args, frame
//   block signals, clone3 ----------->  stage 1: session, fds, cwd, rlimits ...
//   unmap area, close copies            jump to blob (its own stack)
//   read status pipe  <---------------  blob: memory, mm, signals, creds
//     'K'  -> pid                       'K', rt_sigreturn: the restored task
//     report / EOF -> SIGKILL, reap, error
#include "restorer/restore.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <utility>
#include "common/log.h"
#include "common/own_children.h"
#include "common/strfmt.h"
#include "common/thread_stacks.h"

#include "common/image_mapping.h"
#include "common/image_reader.h"
#include "common/image_spool.h"
#include "common/io.h"
#include "restorer/child.h"
#include "restorer/files.h"
#include "restorer/netns.h"
#include "restorer/tty.h"
#include "restorer/validate.h"
#include "restorer/writer.h"
#include "state/file_kind.h"
#include "state/file_policy.h"
#include "state/fs.h"
#include "state/itimers.h"
#include "state/locks.h"
#include "state/memory_restore.h"
#include "state/mqueue.h"
#include "state/names_made.h"
#include "state/pidfd.h"
#include "state/regs.h"
#include "state/restart.h"
#include "state/seccomp.h"
#include "state/settings.h"
#include "state/signals.h"
#include "state/sysv_msg.h"
#include "state/sysv_sem.h"
#include "state/sysv_shm.h"
#include "state/task_attrs.h"
#include "state/thread_attrs.h"
#include "state/threads.h"
#include "state/timers.h"
#include "state/tree_restore.h"
#include "state/tree_share_restore.h"
#include "state/tree_share_task.h"

extern "C" const char crfs_restorer_blob[];
extern "C" const char crfs_restorer_blob_end[];

namespace crfs {

namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kBlobStack = 64 << 10;
// restore: address space (no memory) of the blob area onto which the blob
// maps the page store, 16 MiB-aligned pieces of it (a pages record holds at
// most 16 MiB, so one window holds any run that starts in its first half).
constexpr size_t kFillWindow = 32 << 20;
constexpr int kReportTimeoutMs = 300 * 1000;

// The tasks restore_image returned and nobody reaped yet; `held` until
// release_restored_child: reap_restored_children leaves those alone, so a task
// that ends before its caller adopted it stays a zombie under its pid.
struct RestoredChild {
    pid_t pid;
    bool held = true;
};
std::mutex g_children_mu;  // guards g_children
std::vector<RestoredChild> g_children;

uint64_t page_up(uint64_t v) {
    return (v + kPage - 1) & ~(kPage - 1);
}

// Bump allocator over the mapped blob area: every pointer the blob sees is an
// address inside the area, identical in the clone.
class Arena {
  public:
    Arena(uint64_t base, uint64_t cap) : base_(base), cap_(cap) {}
    void* take(size_t bytes, size_t align) {
        used_ = (used_ + align - 1) & ~(align - 1);
        void* p = reinterpret_cast<void*>(base_ + used_);
        used_ += bytes;
        return used_ <= cap_ ? p : nullptr;
    }
    template <class T>
    uint64_t copy(const std::vector<T>& v) {
        if (v.empty()) return 0;
        void* p = take(v.size() * sizeof(T), 16);
        if (!p) return 0;
        std::memcpy(p, v.data(), v.size() * sizeof(T));
        return reinterpret_cast<uint64_t>(p);
    }
    uint64_t str(const std::string& s) {
        auto* p = static_cast<char*>(take(s.size() + 1, 1));
        if (!p) return 0;
        std::memcpy(p, s.c_str(), s.size() + 1);
        return reinterpret_cast<uint64_t>(p);
    }
    uint64_t used() const { return used_; }
    uint64_t cap() const { return cap_; }

  private:
    uint64_t base_, cap_, used_ = 0;
};

struct ChildPlan {
    int status_fd = -1;
    std::vector<int> keep;  // sorted: every fd stage 1 must not close
    const FdPlan* fds = nullptr;
    const AttrPlan* attrs = nullptr;
    const SettingsPlan* settings = nullptr;  // fidelity
    const state::TimersPlan* timers = nullptr;  // fid-exact
    const std::vector<image::FileLockRecord>* locks = nullptr;  // fid-exact
    const WriterPlan* writer = nullptr;
    int netns_fd = -1;      // the writer's network namespace, when not ours (restorer/netns.h)
    bool fs_creds = false;  // root writer: open files as the task's fsuid/fsgid
    uint64_t entry = 0, args = 0, stack_top = 0;
    int fault_step = 0;
    const TreeRestore* tree = nullptr;  // trees: this process's children are made in stage 1
    uint32_t tree_index = 0;
    const state::TtyPlan* tty = nullptr;  // tty: restorer/tty.h
};

void child_fault(const ChildPlan& c, int step) {
    if (c.fault_step == step) child_fail(c.status_fd, step, ECANCELED, 0);
}

[[noreturn]] void child_main(const ChildPlan& c) {
    child_hold_on_fail(c.tree ? c.tree->members[c.tree_index].go : -1);
    tree_wait_gate(c.tree, c.tree_index, c.status_fd);  // share: its maker's fds in place
    child_fault(c, CRFS_RA_STEP_SESSION);
    child_session(*c.attrs, c.status_fd);
    if (auto f = state::child_tty(*c.tty))  // tty: before the children, who inherit it
        child_fail(c.status_fd, f->step, f->err, f->arg);
    if (c.tree) tree_spawn_children(*c.tree, c.tree_index, c.status_fd);
    child_fault(c, CRFS_RA_STEP_CLOSE_FDS);
    bool fds_in_place = tree_files_taker(c.tree, c.tree_index);  // share: its maker's table
    if (!fds_in_place)
        child_close_all_but(c.keep, tree_share_keep(c.tree, c.tree_index), c.status_fd);
    // fidelity: opened as root, written as the writer (state/settings.h).
    int oom_fd = child_open_oom_score_adj(*c.settings, c.keep.back() + 1, c.status_fd);
    // From here on, for a writer that is not root, everything the image names
    // is opened and applied with the writer's credentials.
    child_join_netns(c.netns_fd, c.status_fd);
    child_writer_context(*c.writer, c.status_fd);
    child_become_writer(*c.writer, c.status_fd);
    if (c.fs_creds) child_enter_fs_creds(*c.attrs, c.status_fd);
    if (c.attrs->cwd_fd >= 0) {  // delcwd: a removed cwd, made again (state/fs.h)
        if (fchdir(c.attrs->cwd_fd) < 0)
            child_fail(c.status_fd, CRFS_RA_STEP_DELETED_CWD, errno, 0);
    } else if (chdir(c.attrs->cwd.c_str()) < 0) {
        child_fail(c.status_fd, CRFS_RA_STEP_CWD, errno, 0);
    }
    child_share_connect(c.tree, c.tree_index, c.status_fd);  // unix: before the fds
    child_fault(c, CRFS_RA_STEP_OPEN_FD);
    if (!fds_in_place) child_open_fds(*c.fds, c.status_fd);
    if (auto f = state::child_locks(*c.locks); f.err)  // fid-exact: the descriptions are in place
        child_fail(c.status_fd, CRFS_RA_STEP_FILE_LOCK, f.err, f.index);
    if (c.fs_creds) child_leave_fs_creds(c.status_fd);
    for (const auto& copy : c.fds->copies) ::close(copy.get());
    tree_open_gates(c.tree, c.tree_index, c.status_fd);  // share: its fds are in place
    child_fault(c, CRFS_RA_STEP_RLIMIT);
    child_attrs(*c.attrs, c.status_fd);
    child_settings(*c.settings, oom_fd, c.status_fd);  // fidelity: after rlimits (RLIMIT_RTPRIO)
    if (auto f = state::child_posix_timers(*c.timers); f.err)  // fid-exact
        child_fail(c.status_fd, CRFS_RA_STEP_POSIX_TIMER, f.err, uint64_t(f.id));
    __asm__ volatile(
        "mov %0, %%rsp\n"
        "xor %%ebp, %%ebp\n"
        "call *%1\n"
        "ud2\n"
        :
        : "r"(c.stack_top), "r"(c.entry), "D"(c.args)
        : "memory");
    __builtin_unreachable();
}

std::string step_text(const crfs_ra_report& r, const DecodedImage& img, const MemoryPlan& mem,
                      const FdPlan& fds) {
    auto vma = [&](uint64_t i) {
        if (i >= mem.vmas.size()) return strfmt("VMA #{}", i);
        const auto& v = mem.vmas[i];
        return strfmt("{:x}-{:x}{}{}", v.start, v.end, mem.paths[i].empty() ? "" : " ",
                      mem.paths[i]);
    };
    auto fd = [&](uint64_t n) {
        for (const auto& a : fds.actions)
            if (uint64_t(a.target) == n) return strfmt("fd {} ({})", n, a.path);
        return strfmt("fd {}", n);
    };
    switch (r.step) {
        case CRFS_RA_STEP_UNMAP:
            return strfmt("unmapping the daemon's memory at {:x}", r.arg);
        case CRFS_RA_STEP_MOVE_SPECIAL:
            return strfmt("moving vdso/vvar at {:x}", r.arg);
        case CRFS_RA_STEP_OPEN_VMA_FILE:
            return "opening the file of mapping " + vma(r.arg);
        case CRFS_RA_STEP_MAP_VMA:
            return "mapping " + vma(r.arg);
        case CRFS_RA_STEP_FILL_PAGES:
            return strfmt("reading pages at {:x}", r.arg);
        case CRFS_RA_STEP_STREAM_READY:  // stream
            return strfmt("registering the memory at {:x} for the pages to come", r.arg);
        case CRFS_RA_STEP_STREAM_GO:
            return strfmt("unregistering the memory at {:x} after the pages", r.arg);
        case CRFS_RA_STEP_PROTECT:
            return "mprotect of " + vma(r.arg);
        case CRFS_RA_STEP_OPEN_EXE:
            return "opening exe " + img.exe;
        case CRFS_RA_STEP_MM_MAP:
            return "PR_SET_MM_MAP (mm layout, auxv, exe)";
        case CRFS_RA_STEP_SIGACTION:
            return strfmt("sigaction of signal {}", r.arg);
        case CRFS_RA_STEP_SIGQUEUE:
            return strfmt("re-queueing pending signal {}", r.arg);
        case CRFS_RA_STEP_ITIMER:
            return strfmt("setitimer {}", r.arg);
        case CRFS_RA_STEP_CREDS:
            return strfmt("setting credentials (step {})", r.arg);
        case CRFS_RA_STEP_TLS:
            return "setting fs/gs base";
        case CRFS_RA_STEP_BAD_ARGS:
            return "restorer argument check";
        case CRFS_RA_STEP_SIGRETURN:
            return "the last step before rt_sigreturn";
        case CRFS_RA_STEP_SESSION:
            return "restoring session/process group";
        case CRFS_RA_STEP_FSCREDS:
            return "switching to the task's file-system credentials";
        case CRFS_RA_STEP_CLOSE_FDS:
            return "closing the daemon's descriptors";
        case CRFS_RA_STEP_OPEN_FD:
            return "opening " + fd(r.arg);
        case CRFS_RA_STEP_DUP_FD:
            return "placing " + fd(r.arg);
        case CRFS_RA_STEP_SEEK_FD:
            return "seeking " + fd(r.arg);
        case CRFS_RA_STEP_CWD:
            return "chdir to " + img.cwd;
        case CRFS_RA_STEP_DELETED_CWD:  // delcwd
            return "fchdir to the removed directory made again for cwd " + img.cwd;
        case CRFS_RA_STEP_RLIMIT:
            return strfmt("setting rlimit {}", r.arg);
        case CRFS_RA_STEP_NICE:
            return strfmt("setting nice {}", int64_t(r.arg));
        case CRFS_RA_STEP_PERSONALITY:
            return strfmt("setting personality 0x{:x}", r.arg);
        case CRFS_RA_STEP_FILE_TYPE:
            return "the file of mapping " + vma(r.arg) + " is not a regular file";
        case CRFS_RA_STEP_THREAD:
            return strfmt("creating thread {}", r.arg);
        case CRFS_RA_STEP_THREAD_STATE:
            return strfmt("registering robust list, rseq or tid address of thread {}", r.arg);
        case CRFS_RA_STEP_DROP_CAPS:
            return strfmt("dropping the capability kept for the exe link (step {})", r.arg);
        case CRFS_RA_STEP_WRITER_CONTEXT:
            return strfmt("joining the writer's {}", r.arg == 1   ? "login uid"
                                                     : r.arg == 2 ? "cgroup"
                                                     : r.arg == 5 ? "capability bounding set"
                                                     : r.arg == 6 ? "network namespace"
                                                                  : "rlimits and nice value");
        case CRFS_RA_STEP_BECOME_WRITER:
            return strfmt("taking the writer's credentials (step {})", r.arg);
        case CRFS_RA_STEP_KOBJ:
            return "making " + fd(r.arg);
        case CRFS_RA_STEP_TIMER:
            return "setting the ticks and time of timerfd " + fd(r.arg);
        case CRFS_RA_STEP_EPOLL_WATCH:
            return strfmt("adding the watch of fd {} to epoll fd {}", r.arg & 0xffffffffu,
                          r.arg >> 32);
        case CRFS_RA_STEP_INOTIFY_WATCH:
            return strfmt("adding inotify watch {} (it must get the same watch descriptor)", r.arg);
        case CRFS_RA_STEP_FD_TYPE:
            return fd(r.arg) + " is not the kind of file it was (a FIFO, socket or another file?)";
        case CRFS_RA_STEP_SETTINGS:
            return settings_step_text(r.arg, img);
        case CRFS_RA_STEP_ADVISE:
            return "madvise/mlock of " + vma(r.arg);
        case CRFS_RA_STEP_TTY_CTTY:  // tty
        case CRFS_RA_STEP_TTY_TERMIOS:
        case CRFS_RA_STEP_TTY_WINSIZE:
        case CRFS_RA_STEP_TTY_FG:
            return state::tty_step_text(r.step, r.arg);
        case CRFS_RA_STEP_VMA_NAME:
            return strfmt("naming {} \"{}\" (PR_SET_VMA_ANON_NAME)", vma(r.arg),
                          r.arg < mem.names.size() ? mem.names[r.arg] : "");
        case CRFS_RA_STEP_SYSV_ATTACH:  // sysv: state/sysv_shm.h
            return "attaching System V shared memory at " + vma(r.arg);
        case CRFS_RA_STEP_SYSV_RMID:
            return "removing (IPC_RMID) the System V shared memory attached at " + vma(r.arg);
        case CRFS_RA_STEP_MEMFD_SEAL:
            return strfmt("sealing memfd {} of the image (F_ADD_SEALS)", r.arg);
        case CRFS_RA_STEP_CHILD:  // trees
            return strfmt("creating child process {}", r.arg);
        case CRFS_RA_STEP_SHARE_FD:  // share (state/tree_share_restore.h)
            return "handing over " + fd(r.arg) + " shared with another process of the tree";
        case CRFS_RA_STEP_SHARE_REOPEN:  // mqtree (state/tree_share_restore.h)
            return "opening " + fd(r.arg) +
                   " again (/proc/self/fd) for another process of the tree that opened it itself";
        case CRFS_RA_STEP_REOPEN:  // deltwice (state/file_reopen.cc)
        case CRFS_RA_STEP_REOPEN_OTHER:
            return state::reopen_step_text(img, r.step, int(r.arg));
        case CRFS_RA_STEP_FIFO_JOIN:  // fifo (state/tree_share_restore.h)
            return "opening " + fd(r.arg) +
                   ", a FIFO another process of the tree restores, by its path (is it still "
                   "that FIFO?)";
        case CRFS_RA_STEP_PIDFD_GIVE:  // pidfd2 (state/pidfd.h)
            return strfmt("opening a pidfd of process {} for another process of the tree", r.arg);
        case CRFS_RA_STEP_THREAD_PIDFD:  // thpidfd (state/pidfd.h)
            return "making the pidfd of a thread at " + fd(r.arg);
        case CRFS_RA_STEP_THREAD_PIDFD_WAIT:
            return "waiting for the thread of another process of the tree that " + fd(r.arg) +
                   " is a pidfd of";
        case CRFS_RA_STEP_THREAD_PIDFD_WATCH:  // thpidfd2
            return "adding the epoll watch of " + fd(r.arg) + ", a pidfd of a thread";
        case CRFS_RA_STEP_THREAD_PIDFD_RECV:
            return "receiving " + fd(r.arg) +
                   ", a pidfd of a thread, from the process of the tree that made it";
        case CRFS_RA_STEP_THREAD_PIDFD_GIVE:
            return "handing " + fd(r.arg) +
                   ", a pidfd of a thread, to the later processes of the tree holding it";
        case CRFS_RA_STEP_UNIX_CONNECT:  // unix (state/unix_tree.h)
            return "connecting " + fd(r.arg) + " to its server, another process of the tree";
        case CRFS_RA_STEP_MQ_OPEN:  // unix (state/mqueue.h)
        case CRFS_RA_STEP_MQ_OTHER:
        case CRFS_RA_STEP_MQ_FILL:
        case CRFS_RA_STEP_MQ_SECOND:  // mq2 (state/mqueue_second.cc)
            return *state::mqueue_step_text(img, int(r.step), int(r.arg));
        case CRFS_RA_STEP_FILE_LOCK:
            return state::lock_text(img, uint32_t(r.arg));
        case CRFS_RA_STEP_POSIX_TIMER:
            return strfmt("making POSIX timer {} with its id and time", r.arg);
        case CRFS_RA_STEP_THREAD_TIMER:  // timer
            return strfmt("making POSIX timer {} (signalling a thread) with its id and time",
                          r.arg);
        case CRFS_RA_STEP_MLOCKALL:  // fid
            return strfmt("mlockall(0x{:x}) for the task's later mappings (RLIMIT_MEMLOCK 0 "
                          "without CAP_IPC_LOCK?)",
                          r.arg);
        case CRFS_RA_STEP_THREAD_ATTRS:  // fid
            return state::thread_attrs_step_text(r.arg, img);
        case CRFS_RA_STEP_SECCOMP:
            return strfmt(
                "installing seccomp filter {} of {} (oldest first; the kernel wants "
                "no_new_privs or CAP_SYS_ADMIN)",
                r.arg, img.seccomp.size());
    }
    return strfmt("step {}", r.step);
}

// CRFS_RESTORE_TRACE=1: phase times of each restore on stderr.
class PhaseTrace {
  public:
    PhaseTrace() : on_(getenv("CRFS_RESTORE_TRACE") != nullptr), last_(now()) {}
    void mark(const char* name) {
        if (!on_) return;
        uint64_t t = now();
        out_ += strfmt(" {} {}", name, (t - last_) / 1000);
        last_ = t;
    }
    void print(pid_t pid) const {
        if (on_) log_info("restore %d (us):%s", pid, out_.c_str());
    }

  private:
    static uint64_t now() {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
    }
    bool on_;
    uint64_t last_;
    std::string out_;
};

// Whether the image maps the libc this process runs (same inode), so that its
// TLS layout, and with it the rseq area's offset, is ours.
bool maps_our_libc(const DecodedImage& img) {
    auto maps = read_file("/proc/self/maps");
    if (!maps) return false;
    size_t pos = maps->find("/libc.so");
    if (pos == std::string::npos) return false;
    size_t bol = maps->rfind('\n', pos) + 1;
    size_t eol = maps->find('\n', pos);
    std::string line = maps->substr(bol, eol - bol);
    unsigned long long ino = 0;
    if (std::sscanf(line.c_str(), "%*s %*s %*s %*s %llu", &ino) != 1 || ino == 0) return false;
    for (const auto& v : img.vmas)
        if (v.rec.ino == ino && v.path.find("/libc.so") != std::string::npos) return true;
    return false;
}

// Reads `fd` to its end (the writer closed it), bounded by the report timeout.
Status wait_for_eof(int fd) {
    char junk[64];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int pr = poll(&p, 1, kReportTimeoutMs);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) return make_error(ETIMEDOUT, "restore: the new task did not finish in time");
        ssize_t n = ::read(fd, junk, sizeof junk);
        if (n == 0) return {};
        if (n < 0 && errno != EINTR) return errno_error("restore: status pipe");
    }
}

// A single process is killed and reaped here (its wait status returned); a
// tree's processes are left to restore_tree, which kills and reaps them all
// at once, holding their orphans (state/tree_restore.cc kill_tree).
int kill_and_reap(const RestoreRequest& req, pid_t pid) {
    int st = 0;
    if (req.tree) return st;
    ::kill(pid, SIGKILL);
    own_children::waitpid(pid, &st, __WALL);
    return st;
}

// Decoded in place from a mapping of the spool: one copy of the whole image
// fewer than read() into a buffer. The spool does not change while it is
// restored (the slot's lock); anything unmappable is read. The mapping ends
// here, before the task is cloned.
Result<DecodedImage> decode_spool(int fd, uint32_t process, const std::optional<StreamHash>& hashed,
                                  ImageSpool* spool, bool* used_hash, const DecodedImage* tree) {
    struct stat st {};
    // Hashed as it was written: only the records' fixed parts are read,
    // through an unpopulated mapping (faults bring in what is touched). Any
    // error: decoded again the usual way, which gives the usual message.
    // CRFS_RESTORE_FULL_DECODE=1 (benches: the old path) always decodes in full.
    if (hashed && !getenv("CRFS_RESTORE_FULL_DECODE") && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        ImageMapping lazy(fd, size_t(st.st_size), false);
        if (lazy.data()) {
            // A split spool: pages records apart (common/image_spool.h).
            std::optional<ImageSpool::Source> split;
            MemorySource plain(lazy.data(), lazy.size());
            ByteSource& src = spool && spool->split()
                                  ? static_cast<ByteSource&>(split.emplace(*spool, lazy.data(), lazy.size()))
                                  : plain;
            auto img = decode_image(src, {.process = process, .hashed = &*hashed, .tree = tree});
            if ((*used_hash = img.has_value())) return img;
            log_debug("image hashed as written: %s; decoding it again",
                      img.error().what.c_str());
        }
    }
    // The full decode reads the page data too: put it back where it was written.
    if (spool)
        if (auto ok = spool->materialize(); !ok) return std::unexpected(ok.error());
    ImageMapping mapped;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        mapped = ImageMapping(fd, size_t(st.st_size), !tree);  // treeperf: a member's framing
    if (!mapped.data()) {
        FdSource src(fd);
        return decode_image(src,
                            {.process = process, .checksum_verified = process > 0, .tree = tree});
    }
    MemorySource src(mapped.data(), mapped.size());
    // trees: process 0's decode checked these bytes, which do not change (life).
    return decode_image(src, {.process = process, .checksum_verified = process > 0, .tree = tree});
}

// stream: the records before the image's first pages record (all but the
// pages, stats and trailer of an image crfs wrote), read in place; a tree's
// process `process` from the root's walk of them (`tree`).
Result<DecodedImage> decode_prefix(int fd, uint64_t len, uint32_t process,
                                   const DecodedImage* tree) {
    ImageMapping mapped(fd, size_t(len), false);
    if (!mapped.data()) return errno_error("image: mapping the records before the pages");
    MemorySource src(mapped.data(), mapped.size());
    return decode_image(src, {.process = process, .tree = tree, .prefix = true});
}

// stream: what the records before the pages must not need from the pages:
// the content of System V segments is read from the page data before the
// task is made, and so is shared memory a tree's process owns and others map
// (state/tree_shmem_restore.h). A chain is planned from the whole image; so
// is a tree written before version 16 (its records and pages interleave). A
// tree whose processes share an fd table is not streamed: each blob's
// userfaultfd would take a number in the table that another's fds may need.
// The code before a thread's rip in restart_syscall (state/regs.h
// fix_restart_block) is read from its file, as the full restore does unless
// a page run holds it: where each such read was is kept, for the slot to
// check at close. Called for the image (req.tree null) and for each process
// of a tree.
Status streamable(const DecodedImage& img, const RestoreRequest& req) {
    RestoreStream& rs = *req.stream;
    auto no = [](const char* why) { return make_error(ENOTSUP, strfmt("not streamed: {}", why)); };
    bool tree = !img.processes.empty();
    if (tree && img.header.version < image::kFirstSectionedVersion)
        return no("a tree written before version 16");
    if (img.chain) return no("a chain");
    for (const auto& [process, st] : img.share_tasks)
        if (st.files_pid != 0) return no("processes of a tree share an fd table");
    if (!req.tree) rs.restart_code.clear();
    constexpr uint64_t kRestartSyscall = 219;
    if (!req.tree && tree) return {};  // the processes' own runs look at their threads
    if (img.regs.rax == kRestartSyscall && img.regs.rip >= 5)
        rs.restart_code.emplace_back(req.tree_index, img.regs.rip - 5);
    for (const auto& t : img.threads)
        if (t.regs.rax == kRestartSyscall && t.regs.rip >= 5)
            rs.restart_code.emplace_back(req.tree_index, t.regs.rip - 5);
    for (const auto& v : img.vmas) {
        if (v.rec.kind == uint32_t(image::VmaKind::kSysvShm)) return no("a System V segment");
        if (v.rec.kind == uint32_t(image::VmaKind::kAnonSharedOwner))
            return no("shared memory of a tree's processes");
    }
    return {};
}

// stream: where page runs may go, from the blob's VMAs (joined as map_from).
std::vector<StreamVma> stream_vmas(const std::vector<crfs_ra_vma>& vmas) {
    std::vector<StreamVma> out;
    for (const auto& v : vmas) {
        bool anon_private =
            v.kind == CRFS_RA_ANON && !(v.mmap_flags & (MAP_SHARED | MAP_GROWSDOWN));
        bool writable =
            v.kind == CRFS_RA_ANON || (v.kind == CRFS_RA_FILE && !(v.mmap_flags & MAP_SHARED));
        if (!anon_private && !writable) continue;
        out.push_back({v.start, v.end, anon_private});
    }
    return out;
}

}  // namespace

Result<DecodedImage> decode_tree_member(const TreeRestore& tree, uint32_t process) {
    const RestoreRequest& req = tree.root_req;
    if (req.stream)  // streamtree: the records arrived, the pages not yet
        return decode_prefix(req.image_fd, req.stream->prefix_len, process, tree.root_img);
    bool used_hash = false;
    return decode_spool(req.image_fd, process, req.image_hash, req.spool, &used_hash,
                        tree.root_img);
}

namespace {
int g_hold_go = -1;  // only ever set in a clone (child_hold_on_fail)
}  // namespace

void child_hold_on_fail(int go) {
    g_hold_go = go;
}

[[noreturn]] void child_fail(int status_fd, int step, int err, uint64_t arg) {
    crfs_ra_report r{CRFS_RA_REPORT_TAG, err, step, 0, arg};
    (void)!::write(status_fd, &r, sizeof r);
    if (g_hold_go >= 0) {
        if (g_hold_go > 0) syscall(SYS_close_range, 0u, unsigned(g_hold_go - 1), 0u);
        syscall(SYS_close_range, unsigned(g_hold_go + 1), ~0u, 0u);
        for (;;) pause();  // every signal is blocked in stage 1: until SIGKILL
    }
    syscall(SYS_exit_group, 1);
    __builtin_unreachable();
}

namespace {

// stream: waits for the blob's ready report (restorer/blob/stream.h) and
// takes the task's userfaultfd (into `uffd`): where the page runs of image
// process `process` may go.
// A report of a failure is also kept in `failed` (a tree's run then takes it
// as its process's own: first cause, tree_first_failure). `task_mem`: its
// memory's fd (StreamReady::mem). `ours` (a tree's process, no child of the
// daemon's: its pid may be another's by now): whether the process under the
// pid is still the one made, checked once the pidfd is open.
Result<StreamReady> stream_take(pid_t pid, uint32_t process, int status_fd, const DecodedImage& img,
                                const MemoryPlan& mem, const FdPlan& fds, UniqueFd& uffd,
                                UniqueFd& task_mem, std::optional<crfs_ra_report>* failed = nullptr,
                                const std::function<bool()>& ours = {}) {
    crfs_ra_report rep{};
    size_t got = 0;
    while (got < sizeof rep) {
        pollfd p{status_fd, POLLIN, 0};
        int pr = poll(&p, 1, kReportTimeoutMs);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) return make_error(ETIMEDOUT, "restore: the new task did not finish in time");
        ssize_t n = ::read(status_fd, reinterpret_cast<char*>(&rep) + got, sizeof rep - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += size_t(n);
    }
    if (got != sizeof rep || rep.tag != CRFS_RA_REPORT_TAG)
        return make_error(EIO, "restore: the new task died before it was restored");
    if (rep.step != CRFS_RA_STEP_STREAM_READY || rep.err != 0) {
        if (failed) *failed = rep;
        return sys_error(rep.err, "restore: " + step_text(rep, img, mem, fds));
    }
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return errno_error("stream: pidfd_open of the new task");
    if (ours && !ours())
        return make_error(ESRCH, strfmt("stream: pid {} is no process of this restore", pid));
    uffd.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), int(rep.arg), 0)));
    if (!uffd) return errno_error("stream: taking the new task's userfaultfd");
    task_mem.reset(::open(strfmt("/proc/{}/mem", pid).c_str(), O_RDWR | O_CLOEXEC));
    if (!task_mem) return errno_error("stream: opening the new task's memory");
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) != 0)
        return errno_error("stream: the new task ended");  // its pid may be another's
    return StreamReady{process, pid, uffd.get(), task_mem.get(), stream_vmas(mem.vmas)};
}

// stream: hands a single task's userfaultfd to the slot and, once it says
// go, sends the go.
Status stream_pages(const RestoreRequest& req, pid_t pid, int status_fd, int go_fd,
                    const DecodedImage& img, const MemoryPlan& mem, const FdPlan& fds,
                    PhaseTrace& trace) {
    UniqueFd uffd, task_mem;
    auto ready = stream_take(pid, 0, status_fd, img, mem, fds, uffd, task_mem);
    if (!ready) return std::unexpected(ready.error());
    trace.mark("ready");
    if (auto s = req.stream->ready({*ready}); !s) return s;
    trace.mark("pages");
    uffd.reset();  // the blob unregisters its ranges after the go
    task_mem.reset();
    return send_stream_go(go_fd);
}

// The single process's clone: a copy of the daemon's memory that its blob
// unmaps at once. The daemon's other threads' stacks and their FUSE request
// buffers are no part of it (common/thread_stacks.h, as a tree's root does
// in its own copy): marked MADV_DONTFORK for the clone only, under the hold
// that every clone of the daemon's memory takes, so that no clone made
// meanwhile lacks its own thread's stack. They are then neither copied
// with their page tables nor write-protected in the daemon (whose next FUSE
// request would fault every page of its buffer back in).
// CRFS_RESTORE_CLONE_ALL=1 in crfsd's environment: copied as before.
long clone_task(clone_args& ca, const ChildPlan& cp) {
    static const bool all = getenv("CRFS_RESTORE_CLONE_ALL") != nullptr;
    std::optional<ThreadStacksHold> hold;
    std::vector<StackRange> others;
    if (!all) {
        hold.emplace();
        others = hold->others(true);
    }
    auto advise = [&](int how) {
        for (const auto& r : others)
            (void)madvise(reinterpret_cast<void*>(r.start), r.end - r.start, how);
    };
    advise(MADV_DONTFORK);
    long pid;
    int err;
    {
        own_children::Making making;  // crfsd's own child (common/own_children.h)
        pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) child_main(cp);
        err = errno;
        making.made(pid);
    }
    advise(MADV_DOFORK);
    errno = err;
    return pid;
}

}  // namespace

Result<pid_t> restore_image(const RestoreRequest& req) {
    PhaseTrace trace;
    // --- decode and validate: nothing exists yet ------------------------------
    if (lseek(req.image_fd, 0, SEEK_SET) < 0) return errno_error("image: seek to 0");
    bool used_hash = false;
    // stream: every return before the task exists lets the slot spool instead.
    struct BeforeTask {
        RestoreStream* s;
        ~BeforeTask() {
            if (s && !s->task_made) s->before_task = true;
        }
    } before_task{req.stream};
    auto img =
        req.stream && req.tree && req.tree_index > 0 ? tree_decoded(req)  // treeperf: decoded ahead
        : req.stream
            ? decode_prefix(req.image_fd, req.stream->prefix_len, req.tree_index,
                            req.tree ? req.tree->root_img : nullptr)
            : decode_spool(req.image_fd, req.tree_index, req.image_hash, req.spool, &used_hash,
                           req.tree ? req.tree->root_img : nullptr);  // treeperf
    if (!img) return std::unexpected(img.error().context("bad image"));
    if (req.stream)
        if (auto s = streamable(*img, req); !s) return std::unexpected(s.error());
    // Page data: from the spool's page store where the slot put it aligned.
    auto pages_fd = req.spool ? req.spool->place(*img) : Result<int>(req.image_fd);
    if (!pages_fd) return std::unexpected(pages_fd.error());
    if (img->chain && img->chain->base_id)  // incr: restorer/image_chain.h composes deltas
        return make_error(EINVAL, "bad image: a delta, restored only after its base");
    trace.mark(req.stream ? "decode-prefix" : used_hash ? "decode-hashed" : "decode");
    UniqueFd terminal;  // tty: the writer's, for a shell job (restorer/tty.h)
    auto with_tty = tty_request(req, *img, terminal);
    if (!with_tty) return std::unexpected(with_tty.error());
    if (!img->processes.empty() && !req.tree) return restore_tree(*with_tty, *img);  // trees
    if (req.tree)
        if (auto s = check_tree_member(*img, req); !s) return std::unexpected(s.error());
    if (req.want_pid < 0) return make_error(EINVAL, strfmt("bad pid {}", req.want_pid));
    if (auto s = validate_image(*img, req); !s) return std::unexpected(s.error());
    for (auto& e : img->inet) e.close = req.tcp_close;
    auto netns = writer_netns(req.writer_pid, req.tree ? &req.tree->writer_netns : nullptr);
    if (!netns) return std::unexpected(netns.error());
    auto netlock = RestoreNetlock::take(*img, *netns, req.writer_is_root);
    if (!netlock) return std::unexpected(netlock.error());
    if (req.want_pid > 0 && (::kill(req.want_pid, 0) == 0 || errno == EPERM))
        return make_error(EBUSY, strfmt("pid {} is in use", req.want_pid));
    auto writer = plan_writer(*img, req, req.tree ? &req.tree->writer : nullptr);
    if (!writer) return std::unexpected(writer.error());
    auto cur = current_specials();
    if (!cur) return std::unexpected(cur.error());
    auto sp = plan_specials(*img, *cur);
    if (!sp) return std::unexpected(sp.error());

    // --- descriptors the new task keeps until the blob is done ----------------
    int max_fd = 2;
    for (const auto& f : img->fds) max_fd = std::max(max_fd, f.rec.fd);
    if (auto s = tree_task_share_check(req, *img, max_fd); !s)  // share: tree_share_task.h
        return std::unexpected(s.error());
    int min_fd = max_fd + 1;
    UniqueFd image_fd(fcntl(req.image_fd, F_DUPFD_CLOEXEC, min_fd));
    if (!image_fd) return errno_error("dup of the image fd");
    UniqueFd page_store;  // the spool's page store, when page data is there
    if (*pages_fd != req.image_fd) {
        page_store.reset(fcntl(*pages_fd, F_DUPFD_CLOEXEC, min_fd));
        if (!page_store) return errno_error("dup of the page store fd");
    }
    int task_pages_fd = page_store ? page_store.get() : image_fd.get();
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) return errno_error("status pipe");
    UniqueFd status_r(pfd[0]);
    UniqueFd status_w(fcntl(pfd[1], F_DUPFD_CLOEXEC, min_fd));
    ::close(pfd[1]);
    if (!status_w) return errno_error("dup of the status pipe");
    // Every look-up of a path the image names, as the writer: the files'
    // fingerprints, the code before rip, the deleted files' copies, the exe.
    struct stat self_st {};
    bool self_known = ::stat("/proc/self/exe", &self_st) == 0;
    bool set_exe = false;
    Result<FdPlan> fds = FdPlan{};
    Result<int> cwd_fd = -1;  // delcwd: state/fs.h
    // Sockets are made in the writer's network namespace (restorer/netns.h).
    if (auto s = in_netns(*netns,
                          [&] {
                              return as_writer(*writer, [&]() -> Status {
                                  if (auto c = check_files(*img); !c) return c;
                                  fix_restart_block(*img, *pages_fd);
                                  fds = plan_fds(*img, image_fd.get(), min_fd, !writer->as_writer,
                                                 req.tree, req.tree_index);
                                  if (fds)  // delcwd, cwdtree: state/fs.h
                                      cwd_fd = state::plan_deleted_cwd(*img, *fds, req.tree,
                                                                       req.tree_index);
                                  struct stat exe_st;
                                  set_exe = !img->exe.empty() &&
                                            ::stat(img->exe.c_str(), &exe_st) == 0 &&
                                            !(self_known && self_st.st_dev == exe_st.st_dev &&
                                              self_st.st_ino == exe_st.st_ino);
                                  return {};
                              });
                          });
        !s)
        return std::unexpected(s.error());
    if (!fds) return std::unexpected(fds.error());
    if (!cwd_fd) return std::unexpected(cwd_fd.error());
    if (req.tree) req.tree->members[req.tree_index].removed_cwd = *cwd_fd;            // cwdtree
    auto thread_pidfds = state::plan_thread_pidfds(*img, *fds, req.tree, req.tree_index);
    if (!thread_pidfds) return std::unexpected(thread_pidfds.error());
    // failclean: the socket files stage 1 binds and the queues it creates,
    // removed again as the writer unless the task runs; a tree's by
    // restore_tree, once all its processes are gone.
    state::NamesMade names_made;
    (req.tree ? req.tree->names_made : names_made)
        .add(std::move(fds->unix_bound.files), std::move(fds->mqueues),
             [w = *writer](const std::function<Status()>& fn) { return as_writer(w, fn); });
    if (auto s = tree_share_plan(req, *img, *fds, min_fd); !s) return std::unexpected(s.error());
    if (auto s = tree_shmem_plan(req, *img, task_pages_fd, *fds, min_fd); !s)  // shm
        return std::unexpected(s.error());
    state::SysvMade sysv_made;  // sysv: removed again unless the task runs
    // sysvtree: a tree's are its own, kept by restore_tree (state/sysv_ids.h).
    state::SysvTree* sysv_tree = req.tree ? &req.tree->sysv : nullptr;
    state::SysvMade& made = sysv_tree ? sysv_tree->made : sysv_made;
    if (auto s = state::sysv_shm_restore(*img, task_pages_fd, *writer, sysv_tree, made); !s)
        return std::unexpected(s.error());
    if (auto s = state::sysv_msg_restore(*img, *writer, sysv_tree, made); !s)  // sem
        return std::unexpected(s.error());
    if (auto s = state::sysv_sem_restore(*img, *writer, sysv_tree, made); !s)  // sem
        return std::unexpected(s.error());
    trace.mark("validate");
    AttrPlan attrs = plan_attrs(*img);
    attrs.cwd_fd = *cwd_fd;
    auto tty = plan_tty(*with_tty, *img, *fds, min_fd);
    if (!tty) return std::unexpected(tty.error());
    if (tty->take) attrs.image_sid = attrs.image_pid;  // a shell job leads its session
    SettingsPlan settings = plan_settings(*img);
    auto timers = state::plan_posix_timers(*img);  // fid-exact
    if (!timers) return std::unexpected(timers.error());

    // --- the blob's area: code, args, arrays, frame, stack --------------------
    size_t blob_len = size_t(crfs_restorer_blob_end - crfs_restorer_blob);
    uint64_t paths_len = 0;
    for (const auto& v : img->vmas) paths_len += v.path.size() + 16;
    auto pending = pending_signals(*img);
    uint64_t need = page_up(blob_len) + sizeof(crfs_restorer_args) + 4096 +
                    (img->vmas.size() + 8) * (sizeof(crfs_ra_vma) + 16) + paths_len +
                    (sp->moves.size() + 8) * 3 * sizeof(crfs_ra_range) +
                    img->pages.size() * (sizeof(crfs_ra_pages) + 16) +
                    pending.size() * sizeof(crfs_ra_siginfo) + img->groups.size() * 4 +
                    img->auxv.size() * 8 + img->exe.size() + sigframe_size(*img) + 256 +
                    kBlobStack + kPage + threads_area_bytes(*img) +
                    fds->memfds.size() * sizeof(crfs_ra_memfd) +
                    state::seccomp_area_bytes(*img) + (page_store ? kFillWindow + kPage : 0) +
                    timers->blob.size() * sizeof(crfs_ra_posix_timer) +  // timer
                    (img->fds.size() * 2 + thread_pidfds->size()) *
                        sizeof(crfs_ra_thread_pidfd);  // thpidfd; thpidfd2: the watches
    need = page_up(need);
    std::vector<std::pair<uint64_t, uint64_t>> taken;  // treeperf: earlier processes' areas
    if (req.tree)
        for (uint32_t j = 0; j < req.tree_index; ++j)
            if (const auto& m = req.tree->members[j]; m.area_len)
                taken.push_back({m.area, m.area + m.area_len});
    auto area = map_blob_area(*img, *cur, need, page_up(sp->tmp_len), taken);
    if (!area) return std::unexpected(area.error());
    struct AreaGuard {
        BlobArea a;
        ~AreaGuard() { munmap(reinterpret_cast<void*>(a.start), a.len); }
    } area_guard{*area};
    if (req.tree) tree_note_area(req, area->start, area->len);  // treeclone
    for (auto& m : sp->moves) m.tmp += area->tmp;
    MemoryPlan mem = plan_memory(*img, *area, *cur, *sp, fds->memfds);

    Arena arena(area->start, area->len - kBlobStack);
    std::memcpy(arena.take(blob_len, kPage), crfs_restorer_blob, blob_len);
    arena.take(0, kPage);
    // Threads meet on a page that stays mapped with the code (state/threads.h).
    uint64_t kept = page_up(blob_len);
    auto* sync = img->threads.empty() ? nullptr : arena.take(kPage, kPage);
    if (sync) kept += kPage;
    auto* a = static_cast<crfs_restorer_args*>(arena.take(sizeof(crfs_restorer_args), 64));
    std::memset(a, 0, sizeof *a);
    a->magic = CRFS_RA_MAGIC;
    a->size = sizeof *a;
    a->image_fd = image_fd.get();
    a->pages_fd = task_pages_fd;
    if (page_store) {  // aligned: the blob copies from a window onto it
        a->window_len = kFillWindow;
        a->window = reinterpret_cast<uint64_t>(arena.take(kFillWindow, kPage));
        a->fill_by_run = getenv("CRFS_RESTORE_FILL_BY_RUN") != nullptr;
    }
    a->status_fd = status_w.get();
    UniqueFd stream_go, stream_go_task;  // stream: the go, the daemon's end and the task's
    if (req.stream) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            return errno_error("stream: go socket");
        stream_go.reset(sv[0]);
        stream_go_task.reset(fcntl(sv[1], F_DUPFD_CLOEXEC, min_fd));
        ::close(sv[1]);
        if (!stream_go_task) return errno_error("dup of the stream's go socket");
        a->stream = 1;
        a->stream_go_fd = stream_go_task.get();
    }
    if (__rseq_size > 0) {
        a->rseq_area = reinterpret_cast<uint64_t>(__builtin_thread_pointer()) + __rseq_offset;
        a->rseq_len = __rseq_size < 32 ? 32 : __rseq_size;
        a->rseq_sig = RSEQ_SIG;
    }
    // The task's glibc registered rseq in its TLS at fs_base + __rseq_offset.
    // When it maps the very libc we run (same inode), that offset is ours.
    if (img->main_thread) {
        a->task_rseq_area = img->main_thread->rseq_addr;
        a->task_rseq_len = img->main_thread->rseq_len;
        a->task_rseq_sig = img->main_thread->rseq_sig;
        a->task_rseq_strict = 1;
    } else if (__rseq_size > 0 && img->regs.fs_base && maps_our_libc(*img)) {
        a->task_rseq_area = img->regs.fs_base + uint64_t(__rseq_offset);
        a->task_rseq_len = a->rseq_len;
        a->task_rseq_sig = RSEQ_SIG;
    }
    a->unmap = arena.copy(mem.unmap);
    a->nr_unmap = mem.unmap.size();
    a->moves = arena.copy(sp->moves);
    a->nr_moves = sp->moves.size();
    for (size_t i = 0; i < mem.vmas.size(); ++i) {
        if (mem.vmas[i].kind == CRFS_RA_FILE) mem.vmas[i].path = arena.str(mem.paths[i]);
        if (!mem.names[i].empty()) mem.vmas[i].name = arena.str(mem.names[i]);  // names
    }
    a->vmas = arena.copy(mem.vmas);
    a->nr_vmas = mem.vmas.size();
    a->pages = arena.copy(mem.pages);
    a->nr_pages = mem.pages.size();
    auto memfds = state::memfd_blob_list(fds->memfds);  // kobj: sealed and closed by the blob
    a->memfds = arena.copy(memfds);
    a->nr_memfds = memfds.size();
    const auto& m = img->mm;
    a->mm = {m.start_code,
             m.end_code,
             m.start_data,
             m.end_data,
             m.start_brk,
             m.brk,
             m.start_stack,
             m.arg_start,
             m.arg_end,
             m.env_start,
             m.env_end,
             arena.copy(img->auxv),
             uint32_t(img->auxv.size() * 8),
             uint32_t(-1)};
    // The exe link: the task inherits ours. Replacing it fails (EBUSY) while the
    // old file is mapped, which it is when both are the same file: then keep it.
    if (set_exe) a->exe_path = arena.str(img->exe);
    fill_sigactions(*img, *a);
    a->siginfo = arena.copy(pending);
    a->nr_siginfo = pending.size();
    fill_itimers(*img, *a);
    std::vector<uint32_t> groups(img->groups.begin(), img->groups.end());
    fill_creds(*img, *a, reinterpret_cast<const uint32_t*>(arena.copy(groups)));
    // A writer that is not root: stage 1 already took its credentials; the
    // blob only drops what was kept for the exe link.
    if (writer->as_writer) {
        a->set_creds = 0;
        a->drop_caps = 1;
        // ... and what choosing the threads' tids needs (clone3 set_tid in the blob).
        writer->keep_exe_cap = a->exe_path != 0 || !img->threads.empty();
    }
    // fidelity: the task's own (0 or 1, check_fields); version 2 images: 1, as
    // for any task that did not ask otherwise.
    a->dumpable = img->settings ? img->settings->dumpable : 1;
    a->mlockall_flags = img->mlockall.flags;  // fid: state/mlockall.h
    a->thread_timers = arena.copy(timers->blob);  // timer: made after the threads
    a->nr_thread_timers = timers->blob.size();
    a->fs_base = img->regs.fs_base;
    a->gs_base = img->regs.gs_base;
    a->thread_pidfds = arena.copy(*thread_pidfds);  // thpidfd: made after the threads
    a->nr_thread_pidfds = thread_pidfds->size();
    if (req.tree) req.tree->members[req.tree_index].args = a;  // its threads_made_fd
    if (auto s = fill_threads(
            *img, [&](size_t bytes, size_t align) { return arena.take(bytes, align); }, *a);
        !s)
        return std::unexpected(s.error());
    // fid: a tree's root, like a single process, is a crfsd thread's child.
    state::plan_thread_attrs(*img, req.tree && req.tree_index > 0, *a);
    if (sync) {
        std::memset(sync, 0, kPage);
        a->sync = reinterpret_cast<uint64_t>(sync);
    }
    void* frame = arena.take(sigframe_size(*img), 64);
    if (!frame || arena.used() > arena.cap())
        return make_error(ENOMEM, "restorer area too small (internal error)");
    // The frame goes onto the task's stack where there is room, so that all of
    // the area but its code pages can go before rt_sigreturn.
    uint64_t frame_at = sigframe_on_stack(*img);
    // A thread whose frame stays in the area needs the area until it returns.
    for (uint64_t i = 0; i < a->nr_threads; ++i)
        if (!reinterpret_cast<const crfs_ra_thread*>(a->threads)[i].sigframe_dst) frame_at = 0;
    if (auto s = build_sigframe(*img, frame, frame_at ? frame_at : uint64_t(frame)); !s)
        return std::unexpected(s.error());
    a->sigframe = reinterpret_cast<uint64_t>(frame);
    if (frame_at) {
        a->sigframe_dst = frame_at;
        a->sigframe_len = sigframe_size(*img);
        a->self_unmap = area->start + kept;
        a->self_unmap_len = area->len - kept;
    }
    if (mprotect(reinterpret_cast<void*>(area->start), page_up(blob_len), PROT_READ | PROT_EXEC) <
        0)
        return errno_error("mprotect of the restorer code");

    trace.mark("prepare");
    ChildPlan cp;
    cp.status_fd = status_w.get();
    cp.keep = {image_fd.get(), status_w.get()};
    if (page_store) cp.keep.push_back(page_store.get());
    if (stream_go_task) cp.keep.push_back(stream_go_task.get());  // stream
    for (const auto& c : fds->copies) cp.keep.push_back(c.get());
    for (const auto& m : fds->memfds) cp.keep.push_back(m.fd.get());  // kobj: the blob closes them
    if (*netns) {
        cp.netns_fd = fcntl(netns->get(), F_DUPFD_CLOEXEC, min_fd);
        if (cp.netns_fd < 0) return errno_error("dup of the network namespace fd");
        netns->reset(cp.netns_fd);
        cp.keep.push_back(cp.netns_fd);
    }
    if (req.tree) cp.keep.push_back(tree_go_fd(req, min_fd));
    auto handoff = RestartHandoff::plan(*img, req.tree != nullptr, min_fd, *a);  // fid
    if (!handoff) return std::unexpected(handoff.error());
    if (handoff->has_gate()) cp.keep.push_back(handoff->task_fd());
    if (req.tree) req.tree->members[req.tree_index].restart = handoff->tracers();  // at the go
    cp.tree = req.tree;
    cp.tree_index = req.tree_index;
    cp.tty = &*tty;
    std::sort(cp.keep.begin(), cp.keep.end());
    tree_task_share_keep(req, cp.keep);  // share: kept by the tables it is made from
    cp.fds = &*fds;
    cp.attrs = &attrs;
    cp.settings = &settings;
    cp.timers = &*timers;
    cp.locks = &img->file_locks;
    cp.writer = &*writer;
    cp.fs_creds = !writer->as_writer &&
                  (img->creds.uid[3] != 0 || img->creds.gid[3] != 0 || !img->groups.empty());
    cp.entry = area->start;
    cp.args = reinterpret_cast<uint64_t>(a);
    cp.stack_top = (area->start + area->len - 64) & ~uint64_t(15);
    // CRFS_RESTORE_FAULT=<step of crfs_ra_step>: tests make that step fail.
    if (const char* f = getenv("CRFS_RESTORE_FAULT")) cp.fault_step = a->fault_step = atoi(f);
    bool stopped = img->header.flags & image::kHeaderTaskWasStopped;
    a->stop_self = stopped;
    if (req.tree) stopped = tree_gate(req, *a);  // trees: stops come after the go
    if (handoff->active()) a->stop_self = 0;     // fid: the hand-off stops it
    // fid-exact: last, once every field the blob's final syscalls use is set.
    if (auto s = state::plan_seccomp(
            *img, req.want_pid, [&](size_t b, size_t al) { return arena.take(b, al); }, *a);
        !s)
        return std::unexpected(s.error());

    // --- create the task --------------------------------------------------------
    clone_args ca{};
    ca.exit_signal = SIGCHLD;
    pid_t want = req.want_pid;
    if (want > 0) {
        ca.set_tid = reinterpret_cast<uint64_t>(&want);
        ca.set_tid_size = 1;
    }
    // streamtree: taken by the last process's run; a failure it read there
    // is this process's own report.
    std::optional<crfs_ra_report> stream_failed;
    if (req.stream && req.tree) {
        auto& self = req.tree->members[req.tree_index];
        self.stream_go = stream_go.get();
        self.stream_take = [&, index = req.tree_index](UniqueFd& uffd, UniqueFd& task_mem) {
            return stream_take(req.tree->members[index].pid, index, status_r.get(), *img, mem, *fds,
                               uffd, task_mem, &stream_failed,
                               [&] { return tree_member_is_ours(*req.tree, index); });
        };
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = req.tree ? 0 : clone_task(ca, cp);
    int clone_err = errno;
    // trees: the next process's restore, and after the last the clone of the whole tree.
    Result<pid_t> member =
        req.tree ? tree_spawn(req, &cp,
                              [](const void* p) { child_main(*static_cast<const ChildPlan*>(p)); })
                 : pid_t(pid);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    // trees: a later member failed once the tree ran; this one's own outcome
    // may be the first cause (tree_first_failure).
    std::optional<Error> later;
    if (!member && req.tree && req.tree->cloned)
        later = member.error(), member = req.tree->members[req.tree_index].pid;
    if (!member) return std::unexpected(member.error());
    pid = *member;
    if (pid < 0) {
        if (clone_err == EEXIST) return make_error(EBUSY, strfmt("pid {} is in use", want));
        return sys_error(clone_err, "clone3");
    }
    before_task.s = nullptr;
    if (req.stream) req.stream->task_made = true;
    status_w.reset();
    image_fd.reset();
    page_store.reset();
    stream_go_task.reset();
    handoff->close_task_fd();
    fds->copies.clear();
    trace.mark("clone");
    if (req.stream && !req.tree)  // stream: the pages arrive now; the go once they all did
        if (auto s = stream_pages(req, pid_t(pid), status_r.get(), stream_go.get(), *img, mem, *fds,
                                  trace);
            !s) {
            kill_and_reap(req, pid_t(pid));
            return std::unexpected(s.error());
        }
    // streamtree: every process of the tree exists: the last one prepared
    // hands all of them to the slot at once (state/tree_restore.h). Its
    // failure is as a later process's: each run then sees its own process's
    // report (or its end), as a tree that fails unstreamed.
    if (req.stream && req.tree && !later && tree_last_prepared(req))
        if (auto s = tree_stream_pages(*req.tree, *req.stream); !s) later = s.error();

    // --- wait for the point of no return ---------------------------------------
    char first = 0;
    ssize_t n = stream_failed ? 1 : -1;
    while (!stream_failed) {
        pollfd p{status_r.get(), POLLIN, 0};
        int pr = poll(&p, 1, kReportTimeoutMs);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) {
            kill_and_reap(req, pid_t(pid));
            if (later) return std::unexpected(*later);
            return make_error(ETIMEDOUT, "restore: the new task did not finish in time");
        }
        n = ::read(status_r.get(), &first, 1);
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    if (n == 1 && first == 'K' && later) return std::unexpected(*later);
    if (n == 1 && first == 'K') {
        // The blob closes its last descriptors around 'K': wait for them to
        // be gone (EOF), and for a task that was stopped to be stopped again,
        // so that whoever looks at the task next sees it as it was.
        trace.mark("rebuild");
        if (auto done = wait_for_eof(status_r.get()); !done) {
            kill_and_reap(req, pid_t(pid));
            return std::unexpected(done.error());
        }
        if (handoff->has_gate())
            if (auto h = handoff->run(pid_t(pid), stopped); !h) {
                kill_and_reap(req, pid_t(pid));
                return std::unexpected(h.error());
            }
        if (stopped) {
            siginfo_t si{};
            while (waitid(P_PID, id_t(pid), &si, WSTOPPED | WEXITED | WNOWAIT) < 0 &&
                   errno == EINTR) {
            }
        }
        trace.mark("handoff");
        trace.print(pid_t(pid));
        netlock->restored();
        sysv_made.keep();   // sysv
        names_made.keep();  // failclean
        std::lock_guard lock(g_children_mu);
        if (req.tree_index == 0) g_children.push_back({pid_t(pid)});  // a tree's others are its
        return pid_t(pid);
    }
    crfs_ra_report rep{};
    if (stream_failed) {
        rep = *stream_failed;
    } else if (n == 1) {
        std::memcpy(&rep, &first, 1);
        auto rest = read_full(status_r.get(), reinterpret_cast<char*>(&rep) + 1, sizeof rep - 1);
        if (!rest || *rest != sizeof rep - 1) n = 0;
    }
    int st = kill_and_reap(req, pid_t(pid));
    if ((n != 1 || rep.tag != CRFS_RA_REPORT_TAG) && later) return std::unexpected(*later);
    // streamtree: it was ready for its pages, and never got its go.
    if (later && rep.step == CRFS_RA_STEP_STREAM_READY && rep.err == 0)
        return std::unexpected(*later);
    if (later)
        return std::unexpected(tree_first_failure(
            req, *later, rep,
            sys_error(rep.err, "restore: " + step_text(rep, *img, mem, *fds)).error()));
    if (n != 1 || rep.tag != CRFS_RA_REPORT_TAG)
        return make_error(EIO, strfmt("restore: the new task died before it was restored "
                                      "({})",
                                      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "no report"));
    return sys_error(rep.err, "restore: " + step_text(rep, *img, mem, *fds));
}

void release_restored_child(pid_t pid) {
    std::lock_guard lock(g_children_mu);
    for (auto& c : g_children)
        if (c.pid == pid) c.held = false;
}

std::vector<pid_t> reap_restored_children() {
    std::lock_guard lock(g_children_mu);
    std::vector<pid_t> gone;
    for (auto it = g_children.begin(); it != g_children.end();) {
        int st;
        pid_t r = it->held ? 0 : own_children::waitpid(it->pid, &st, WNOHANG | __WALL);
        if (r == it->pid || (r < 0 && errno == ECHILD)) {
            gone.push_back(it->pid);
            it = g_children.erase(it);
        } else {
            ++it;
        }
    }
    return gone;
}

std::vector<pid_t> restored_children() {
    std::lock_guard lock(g_children_mu);
    std::vector<pid_t> pids;
    for (const auto& c : g_children) pids.push_back(c.pid);
    return pids;
}

}  // namespace crfs
