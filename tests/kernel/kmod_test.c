/* Guest tests of crfs.ko through /dev/crfs (no daemon). Run as root inside
 * the qemu guest booted by tests/kernel/run.sh:
 *
 *     kmod_test <test> [args]
 *
 * Each test exits 0 when it passes and prints "why" lines when it fails.
 * Every wait is bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crfs/nocr.h"
#include "crfs_kdev.h"

#define REMAP_REASON "CR: sys_remap_file_pages not supported yet."
#define PI_REASON "CR: PI futexes not supported yet."
#define RING_REASON "CR: io_uring not supported yet."

static int failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            printf("  check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
            fflush(stdout);                                                     \
            failed = 1;                                                         \
        }                                                                       \
    } while (0)

static int kdev(void) {
    static int fd = -1;
    if (fd < 0) fd = crfs_kdev_open();
    if (fd < 0) {
        printf("  open %s: %s\n", CRFS_KDEV_PATH, strerror(-fd));
        exit(1);
    }
    return fd;
}

static pid_t gettid_(void) {
    return (pid_t)syscall(SYS_gettid);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Does `pid` (a thread group when tg) carry a mark from `src` with `reason`
 * (NULL: any)? -errno on query failure. */
static int has_mark(pid_t pid, int tg, unsigned src, const char* reason) {
    struct crfs_kdev_query q;
    int rc = crfs_kdev_read(kdev(), pid, tg ? CRFS_KDEV_QUERY_THREAD_GROUP : 0, &q);
    if (rc < 0) return rc;
    for (unsigned i = 0; i < q.nr; i++)
        if (q.marks[i].source == src && (!reason || strcmp(q.marks[i].reason, reason) == 0))
            return 1;
    return 0;
}

static unsigned nr_marks(pid_t pid, int tg) {
    struct crfs_kdev_query q;
    int rc = crfs_kdev_read(kdev(), pid, tg ? CRFS_KDEV_QUERY_THREAD_GROUP : 0, &q);
    return rc < 0 ? 1000 : q.total;
}

static struct crfs_kdev_stats stats(void) {
    struct crfs_kdev_stats st;
    int rc = crfs_kdev_read_stats(kdev(), &st);
    if (rc < 0) {
        printf("  stats: %s\n", strerror(-rc));
        exit(1);
    }
    return st;
}

/* Polls until the store holds `live` entries and every freed entry passed
 * its RCU grace period; bounded by 5 s. */
static int settle(uint64_t live) {
    double end = now() + 5;
    for (;;) {
        struct crfs_kdev_stats st = stats();
        if (st.live == live && st.allocated == st.freed + st.live) return 1;
        if (now() > end) {
            printf("  store did not settle: live %llu (want %llu) allocated %llu freed %llu\n",
                   (unsigned long long)st.live, (unsigned long long)live,
                   (unsigned long long)st.allocated, (unsigned long long)st.freed);
            return 0;
        }
        usleep(10000);
    }
}

/* ---- helpers that create kernel state ---- */

static long futex(uint32_t* uaddr, int op, uint32_t val) {
    return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

struct remap {
    char* addr;
    size_t len;
    int fd;
};

/* Maps 4 pages of a tmpfs file shared and remaps page 0 onto file page 2. */
static struct remap do_remap(void) {
    struct remap r = {0};
    long page = sysconf(_SC_PAGESIZE);
    char name[] = "/tmp/crfs-remap-XXXXXX";
    r.len = 4 * page;
    r.fd = mkstemp(name);
    CHECK(r.fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(name);
    CHECK(ftruncate(r.fd, r.len) == 0, "ftruncate: %s", strerror(errno));
    r.addr = mmap(NULL, r.len, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
    CHECK(r.addr != MAP_FAILED, "mmap: %s", strerror(errno));
    strcpy(r.addr + 2 * page, "page two");
    CHECK(remap_file_pages(r.addr, page, 0, 2, 0) == 0, "remap_file_pages: %s", strerror(errno));
    CHECK(strcmp(r.addr, "page two") == 0, "remapped page reads \"%.8s\"", r.addr);
    return r;
}

static void undo_remap(struct remap* r) {
    munmap(r->addr, r->len);
    close(r->fd);
}

static int ring_setup(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    CHECK(fd >= 0, "io_uring_setup: %s", strerror(errno));
    return fd;
}

/* Polls has_mark() until it equals want; bounded by 2 s. */
static int wait_mark(pid_t pid, int tg, unsigned src, int want) {
    double end = now() + 2;
    int got;
    while ((got = has_mark(pid, tg, src, NULL)) != want && now() < end) usleep(5000);
    return got == want;
}

/* A child that runs fn(arg) and then waits for the parent to write a byte
 * (or EOF) to its pipe; bounded by the parent. */
struct child {
    pid_t pid;
    int go;    /* parent writes here to release the child */
    int ready; /* child writes one byte when fn is done */
};

static struct child spawn_child(void (*fn)(void*), void* arg, uid_t uid) {
    int go[2], ready[2];
    struct child c;
    if (pipe(go) || pipe(ready)) {
        perror("pipe");
        exit(1);
    }
    c.pid = fork();
    if (c.pid == 0) {
        close(go[1]);
        close(ready[0]);
        alarm(60);
        if (uid != 0) {
            if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) _exit(3);
            prctl(PR_SET_DUMPABLE, 1);
        }
        if (fn) fn(arg);
        char b = failed ? 'F' : 'R';
        if (write(ready[1], &b, 1) != 1) _exit(4);
        if (read(go[0], &b, 1) < 0) _exit(5);
        _exit(failed);
    }
    close(go[0]);
    close(ready[1]);
    c.go = go[1];
    c.ready = ready[0];
    char b = 0;
    CHECK(read(c.ready, &b, 1) == 1 && b == 'R', "child %d did not get ready (%c)", c.pid, b);
    return c;
}

static int reap_child(struct child* c) {
    int status = 0;
    /* A byte, not EOF: later children inherited this pipe's write end. */
    CHECK(write(c->go, "x", 1) == 1, "release child: %s", strerror(errno));
    close(c->go);
    close(c->ready);
    CHECK(waitpid(c->pid, &status, 0) == c->pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status 0x%x", c->pid, status);
    return status;
}

/* ---- tests ---- */

static int t_hooks(void) {
    struct crfs_kdev_stats st = stats();
    uint64_t want = 0;
    unsigned srcs[] = {CRFS_KDEV_SRC_REMAP, CRFS_KDEV_SRC_PI_FUTEX, CRFS_KDEV_SRC_IO_URING};
    for (unsigned i = 0; i < 3; i++)
        want |= (1ull << srcs[i]) | (1ull << (CRFS_KDEV_HOOK_CLEAR_SHIFT + srcs[i]));
    printf("  hooks 0x%llx\n", (unsigned long long)st.hooks);
    CHECK((st.hooks & want) == want, "hooks 0x%llx, want 0x%llx", (unsigned long long)st.hooks,
          (unsigned long long)want);
    return failed;
}

static int t_remap(void) {
    long page = sysconf(_SC_PAGESIZE);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, NULL) == 0, "marked before");
    struct remap r = do_remap();
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, REMAP_REASON) == 1, "no remap mark");
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_REMAP, REMAP_REASON) == 1, "no remap mark on self");
    /* unmapping other pages of the mapping keeps it */
    CHECK(munmap(r.addr + 3 * page, page) == 0, "munmap");
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, NULL) == 1, "cleared by unrelated munmap");
    undo_remap(&r);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, NULL) == 0, "still marked after munmap");

    /* mapping anonymous memory over the range clears it too */
    r = do_remap();
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, NULL) == 1, "no remap mark (2)");
    CHECK(mmap(r.addr, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == r.addr,
          "mmap fixed");
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_REMAP, NULL) == 0, "still marked after MAP_FIXED");
    undo_remap(&r);
    return failed;
}

static int t_pi(void) {
    static uint32_t f;
    pid_t tid = gettid_();
    f = 0;
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "marked before");
    CHECK(futex(&f, FUTEX_LOCK_PI, 0) == 0, "FUTEX_LOCK_PI: %s", strerror(errno));
    CHECK((f & FUTEX_TID_MASK) == (uint32_t)tid, "futex word 0x%x", f);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, PI_REASON) == 1, "no PI mark");
    CHECK(futex(&f, FUTEX_UNLOCK_PI, 0) == 0, "FUTEX_UNLOCK_PI: %s", strerror(errno));
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "marked after unlock");

    /* locked in the kernel, unlocked in userspace (what glibc does when
     * nobody waits): the mark goes once the word no longer holds our tid */
    CHECK(futex(&f, FUTEX_LOCK_PI, 0) == 0, "FUTEX_LOCK_PI: %s", strerror(errno));
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 1, "no PI mark (2)");
    uint32_t expect = (uint32_t)tid;
    CHECK(atomic_compare_exchange_strong((_Atomic uint32_t*)&f, &expect, 0), "cmpxchg 0x%x",
          expect);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "marked after user unlock");

    /* trylock counts too */
    CHECK(futex(&f, FUTEX_TRYLOCK_PI, 0) == 0, "FUTEX_TRYLOCK_PI: %s", strerror(errno));
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 1, "no PI mark after trylock");
    CHECK(futex(&f, FUTEX_UNLOCK_PI, 0) == 0, "FUTEX_UNLOCK_PI: %s", strerror(errno));
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "marked after unlock (3)");
    return failed;
}

/* Contended PI futex: the owner hands it to a waiter in the kernel. */
static uint32_t pi_word;
static atomic_int waiter_tid;
static atomic_int waiter_state;

static void* pi_waiter(void* arg) {
    (void)arg;
    atomic_store(&waiter_tid, gettid_());
    if (futex(&pi_word, FUTEX_LOCK_PI, 0) != 0) {
        atomic_store(&waiter_state, -errno);
        return NULL;
    }
    atomic_store(&waiter_state, 1);
    while (atomic_load(&waiter_state) != 2) usleep(1000);
    if (futex(&pi_word, FUTEX_UNLOCK_PI, 0) != 0)
        atomic_store(&waiter_state, -errno);
    else
        atomic_store(&waiter_state, 3);
    return NULL;
}

static int t_pi_contended(void) {
    pthread_t th;
    pi_word = 0;
    CHECK(futex(&pi_word, FUTEX_LOCK_PI, 0) == 0, "lock: %s", strerror(errno));
    pthread_create(&th, NULL, pi_waiter, NULL);
    double end = now() + 5;
    /* wait until the waiter sits in the kernel: FUTEX_WAITERS appears */
    while (!(__atomic_load_n(&pi_word, __ATOMIC_SEQ_CST) & FUTEX_WAITERS) && now() < end)
        usleep(1000);
    CHECK(pi_word & FUTEX_WAITERS, "no waiter");
    pid_t w = atomic_load(&waiter_tid);
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 1, "owner not marked");
    CHECK(has_mark(w, 0, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "blocked waiter marked");
    CHECK(futex(&pi_word, FUTEX_UNLOCK_PI, 0) == 0, "unlock: %s", strerror(errno));
    while (atomic_load(&waiter_state) == 0 && now() < end) usleep(1000);
    CHECK(atomic_load(&waiter_state) == 1, "waiter state %d", atomic_load(&waiter_state));
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "old owner still marked");
    CHECK(has_mark(w, 0, CRFS_KDEV_SRC_PI_FUTEX, PI_REASON) == 1, "new owner not marked");
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 1, "process not marked");
    atomic_store(&waiter_state, 2);
    while (atomic_load(&waiter_state) == 2 && now() < end) usleep(1000);
    CHECK(atomic_load(&waiter_state) == 3, "waiter unlock state %d", atomic_load(&waiter_state));
    pthread_join(th, NULL);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_PI_FUTEX, NULL) == 0, "marked after all unlocked");
    return failed;
}

static void child_keep_ring(void* arg) {
    (void)arg;
}

static int t_uring(void) {
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, NULL) == 0, "marked before");
    int fd = ring_setup();
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, RING_REASON) == 1, "no io_uring mark");
    int dup_fd = dup(fd);
    close(fd);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, NULL) == 1, "cleared while a dup is open");
    close(dup_fd);
    CHECK(wait_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, 0), "marked after close");

    /* a child that inherited the ring keeps it alive */
    fd = ring_setup();
    struct child c = spawn_child(child_keep_ring, NULL, 0);
    close(fd);
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, NULL) == 1, "cleared while child holds it");
    reap_child(&c);
    CHECK(wait_mark(getpid(), 1, CRFS_KDEV_SRC_IO_URING, 0), "marked after child exit");
    return failed;
}

static void child_remap(void* arg) {
    (void)arg;
    do_remap(); /* kept mapped until exit */
}

static void child_mark(void* arg) {
    int rc = crfs_kdev_set(kdev(), 0, (const char*)arg);
    CHECK(rc == 0, "set: %s", strerror(-rc));
}

static int t_isolation(void) {
    struct child a = spawn_child(child_remap, NULL, 0);
    struct child b = spawn_child(NULL, NULL, 0);
    struct child m = spawn_child(child_mark, "CR: child m", 0);
    CHECK(has_mark(a.pid, 1, CRFS_KDEV_SRC_REMAP, REMAP_REASON) == 1, "a not marked");
    CHECK(nr_marks(a.pid, 1) == 1, "a has %u marks", nr_marks(a.pid, 1));
    CHECK(nr_marks(b.pid, 1) == 0, "b has %u marks", nr_marks(b.pid, 1));
    CHECK(nr_marks(getpid(), 1) == 0, "parent has %u marks", nr_marks(getpid(), 1));
    CHECK(has_mark(m.pid, 1, CRFS_KDEV_SRC_MARK, "CR: child m") == 1, "m not marked");
    CHECK(nr_marks(m.pid, 1) == 1, "m has %u marks", nr_marks(m.pid, 1));
    reap_child(&a);
    reap_child(&b);
    reap_child(&m);
    CHECK(settle(0), "marks left after exit");
    return failed;
}

/* Marks itself from every source, then exits without clearing anything. */
static void child_mark_all(void* arg) {
    static uint32_t f;
    (void)arg;
    do_remap();
    CHECK(futex(&f, FUTEX_LOCK_PI, 0) == 0, "lock: %s", strerror(errno));
    ring_setup();
    child_mark("CR: everything");
    CHECK(nr_marks(0, 0) == 4, "%u marks", nr_marks(0, 0));
}

static int t_pid_reuse(void) {
    struct child c = spawn_child(child_mark_all, NULL, 0);
    pid_t pid = c.pid;
    CHECK(nr_marks(pid, 1) == 4, "child has %u marks", nr_marks(pid, 1));
    reap_child(&c);
    CHECK(settle(0), "marks left after exit");
    /* a new task with the same pid (clone3 set_tid) starts clean */
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    ca.set_tid = (uint64_t)(uintptr_t)&pid;
    ca.set_tid_size = 1;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    long r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0) {
        char v = (char)nr_marks(0, 1);
        if (syscall(SYS_getpid) != pid) v = 100;
        if (write(p[1], &v, 1) != 1) _exit(2);
        _exit(0);
    }
    CHECK(r == pid, "clone3 set_tid %d: %ld %s", pid, r, strerror(errno));
    char v = 99;
    CHECK(read(p[0], &v, 1) == 1, "read");
    CHECK(v == 0, "reused pid %d has %d marks (100: wrong pid)", pid, v);
    waitpid((pid_t)r, NULL, 0);
    close(p[0]);
    close(p[1]);
    return failed;
}

static int t_api(void) {
    int fd = kdev(), rc;
    rc = crfs_kdev_set(fd, 0, "CR: test mark");
    CHECK(rc == 0, "set self: %s", strerror(-rc));
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_MARK, "CR: test mark") == 1, "not marked");
    rc = crfs_kdev_set(fd, 0, "CR: replaced");
    CHECK(rc == 0, "set again: %s", strerror(-rc));
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_MARK, "CR: replaced") == 1, "not replaced");
    CHECK(nr_marks(0, 0) == 1, "%u marks", nr_marks(0, 0));
    rc = crfs_kdev_clear(fd, 0);
    CHECK(rc == 0, "clear: %s", strerror(-rc));
    CHECK(nr_marks(0, 0) == 0, "%u marks after clear", nr_marks(0, 0));
    CHECK(crfs_kdev_set(fd, 0, "") == -EINVAL, "empty reason");
    CHECK(crfs_kdev_set(fd, 0, "two\nlines") == -EINVAL, "newline accepted");
    char long_reason[1100];
    memset(long_reason, 'x', sizeof long_reason);
    long_reason[1024] = 0;
    rc = crfs_kdev_set(fd, 0, long_reason);
    CHECK(rc == 0, "1024-byte reason: %s", strerror(-rc));
    CHECK(has_mark(0, 0, CRFS_KDEV_SRC_MARK, long_reason) == 1, "1024-byte reason not kept");
    crfs_kdev_clear(fd, 0);
    long_reason[1025] = 0;
    long_reason[1024] = 'x';
    CHECK(crfs_kdev_set(fd, 0, long_reason) == -EINVAL, "1025-byte reason accepted");
    /* raw ioctl with an unterminated reason and with flags */
    struct crfs_kdev_set s;
    memset(&s, 'y', sizeof s);
    s.pid = 0;
    s.flags = 0;
    CHECK(ioctl(fd, CRFS_IOC_SET, &s) == 0, "unterminated: %s", strerror(errno));
    crfs_kdev_clear(fd, 0);
    s.flags = 1;
    CHECK(ioctl(fd, CRFS_IOC_SET, &s) == -1 && errno == EINVAL, "flags accepted");
    CHECK(crfs_kdev_set(fd, 999999, "x") == -ESRCH, "no such pid");
    struct crfs_kdev_query q;
    CHECK(crfs_kdev_read(fd, 999999, 0, &q) == -ESRCH, "query no such pid");
    /* root marks a child (proxy), and clears it */
    struct child c = spawn_child(NULL, NULL, 0);
    rc = crfs_kdev_set(fd, c.pid, "CR: by proxy");
    CHECK(rc == 0, "proxy set: %s", strerror(-rc));
    CHECK(has_mark(c.pid, 1, CRFS_KDEV_SRC_MARK, "CR: by proxy") == 1, "proxy mark missing");
    CHECK(crfs_kdev_clear(fd, c.pid) == 0, "proxy clear");
    CHECK(nr_marks(c.pid, 1) == 0, "proxy mark not cleared");
    reap_child(&c);
    return failed;
}

struct perm_arg {
    pid_t target;
    pid_t same_uid_target;
};

static void child_attacker(void* arg) {
    struct perm_arg* a = arg;
    int fd = kdev(), rc;
    rc = crfs_kdev_set(fd, a->target, "CR: evil");
    CHECK(rc == -EACCES, "set on other user's task: %d", rc);
    rc = crfs_kdev_clear(fd, a->target);
    CHECK(rc == -EACCES, "clear on other user's task: %d", rc);
    rc = crfs_kdev_set(fd, getppid(), "CR: evil");
    CHECK(rc == -EACCES, "set on root's task: %d", rc);
    rc = crfs_kdev_set(fd, 1, "CR: evil");
    CHECK(rc == -EACCES, "set on init: %d", rc);
    CHECK(has_mark(a->target, 1, CRFS_KDEV_SRC_MARK, NULL) == 1, "cannot read other's marks");
    rc = crfs_kdev_set(fd, 0, "CR: mine");
    CHECK(rc == 0, "set on self: %s", strerror(-rc));
    rc = crfs_kdev_set(fd, a->same_uid_target, "CR: same uid");
    CHECK(rc == 0, "set on own uid's dumpable task: %s", strerror(-rc));
    rc = crfs_kdev_clear(fd, a->same_uid_target);
    CHECK(rc == 0, "clear on own uid's task: %s", strerror(-rc));
}

static int t_perm(void) {
    struct child victim = spawn_child(child_mark, "CR: victim", 1001);
    struct child same = spawn_child(NULL, NULL, 1002);
    struct perm_arg a = {victim.pid, same.pid};
    struct child attacker = spawn_child(child_attacker, &a, 1002);
    CHECK(has_mark(victim.pid, 1, CRFS_KDEV_SRC_MARK, "CR: victim") == 1, "victim mark changed");
    CHECK(nr_marks(getpid(), 1) == 0, "root got marked");
    CHECK(nr_marks(1, 1) == 0, "init got marked");
    CHECK(nr_marks(same.pid, 1) == 0, "same-uid mark not cleared");
    CHECK(has_mark(attacker.pid, 1, CRFS_KDEV_SRC_MARK, "CR: mine") == 1, "attacker self mark");
    reap_child(&attacker);
    reap_child(&same);
    reap_child(&victim);
    return failed;
}

/* Marks itself from several sources and exits without clearing. */
static int t_exit_frees(void) {
    struct crfs_kdev_stats before = stats();
    for (int i = 0; i < 20; i++) {
        struct child c = spawn_child(child_mark_all, NULL, 0);
        reap_child(&c);
    }
    CHECK(settle(before.live), "entries left after exits");
    struct crfs_kdev_stats after = stats();
    CHECK(after.allocated - before.allocated >= 20, "only %llu allocated",
          (unsigned long long)(after.allocated - before.allocated));
    return failed;
}

/* ---- stress ---- */

static atomic_int stop;
static atomic_long ops;

static void* stress_worker(void* arg) {
    uint32_t f = 0;
    int fd = kdev();
    (void)arg;
    crfs_kdev_set(fd, 0, "CR: stress");
    if (futex(&f, FUTEX_LOCK_PI, 0) == 0) futex(&f, FUTEX_UNLOCK_PI, 0);
    futex(&f, FUTEX_LOCK_PI, 0); /* held at exit */
    if (atomic_fetch_add(&ops, 1) % 2) crfs_kdev_clear(fd, 0);
    return NULL;
}

static void* stress_spawner(void* arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_t th[8];
        int n = 0;
        for (; n < 8; n++)
            if (pthread_create(&th[n], NULL, stress_worker, NULL)) break;
        for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    }
    return NULL;
}

static void* stress_reader(void* arg) {
    struct crfs_kdev_query q;
    pid_t me = getpid();
    unsigned x = 1;
    (void)arg;
    while (!atomic_load(&stop)) {
        crfs_kdev_read(kdev(), me, CRFS_KDEV_QUERY_THREAD_GROUP, &q);
        x = x * 1103515245 + 12345;
        crfs_kdev_read(kdev(), me + (x >> 16) % 64, 0, &q);
        atomic_fetch_add(&ops, 1);
    }
    return NULL;
}

static void stress_fork_child(void* arg) {
    (void)arg;
    crfs_kdev_set(kdev(), 0, "CR: forked");
    int fd = ring_setup();
    (void)fd;
}

static void* stress_forker(void* arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pid_t p = fork();
        if (p == 0) {
            stress_fork_child(NULL);
            struct remap r = do_remap();
            (void)r;
            _exit(0);
        }
        if (p > 0) waitpid(p, NULL, 0);
    }
    return NULL;
}

/* Objects of the module's slab cache in use. Shrinking first flushes the
 * per-cpu slabs, which /proc/slabinfo otherwise counts as fully in use. */
static long slab_active(void) {
    int fd = open("/sys/kernel/slab/crfs_entry/shrink", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "1", 1) != 1) printf("  shrink crfs_entry: %s\n", strerror(errno));
        close(fd);
    }
    FILE* f = fopen("/proc/slabinfo", "r");
    char line[512];
    long active = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "crfs_entry %ld", &active) == 1) break;
    fclose(f);
    return active;
}

static int t_stress(int seconds) {
    pthread_t spawners[3], readers[2], forker;
    struct crfs_kdev_stats before = stats();
    long slab_before = slab_active();
    for (int i = 0; i < 3; i++) pthread_create(&spawners[i], NULL, stress_spawner, NULL);
    for (int i = 0; i < 2; i++) pthread_create(&readers[i], NULL, stress_reader, NULL);
    pthread_create(&forker, NULL, stress_forker, NULL);
    sleep(seconds);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(spawners[i], NULL);
    for (int i = 0; i < 2; i++) pthread_join(readers[i], NULL);
    pthread_join(forker, NULL);
    CHECK(settle(before.live), "entries left");
    struct crfs_kdev_stats after = stats();
    long slab_after = slab_active();
    printf("  %ld ops, %llu marks allocated and freed, %llu hook hits missed\n", atomic_load(&ops),
           (unsigned long long)(after.allocated - before.allocated),
           (unsigned long long)after.missed);
    printf("  slab crfs_entry active objects: before %ld after %ld\n", slab_before, slab_after);
    CHECK(after.allocated - before.allocated > 100, "too little work");
    CHECK(after.missed == 0, "%llu hook hits missed", (unsigned long long)after.missed);
    CHECK(slab_before >= 0 && slab_after == slab_before, "slab objects before %ld after %ld",
          slab_before, slab_after);
    return failed;
}

static uint32_t hold_word;
static volatile sig_atomic_t hold_go;

static void hold_on_usr1(int sig) {
    (void)sig;
    hold_go = 1;
}

static void* hold_waiter(void* arg) {
    sigset_t set;
    (void)arg;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (futex(&hold_word, FUTEX_LOCK_PI, 0) != 0) {
        atomic_store(&waiter_state, -errno);
        return NULL;
    }
    atomic_store(&waiter_state, futex(&hold_word, FUTEX_UNLOCK_PI, 0) == 0 ? 1 : -errno);
    return NULL;
}

static void write_file(const char* path, const char* text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) failed = 1;
    if (fd >= 0) close(fd);
}

/* For the unload test: marks itself from every source and has a thread
 * blocked in FUTEX_LOCK_PI (inside the module's kretprobe), closes
 * /dev/crfs so the module can go, and writes "R" to ready_file. On SIGUSR1
 * (after the module was unloaded and loaded again) it lets the waiter
 * through, so that it returns from the probed function with the old module
 * gone, and writes "P" (or "F") to ready_file.done. Bounded: 60 s. */
static int t_hold(const char* ready_file) {
    struct sigaction sa;
    pthread_t th;
    char done[256];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = hold_on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    snprintf(done, sizeof done, "%s.done", ready_file);

    child_mark_all(NULL);
    CHECK(nr_marks(0, 0) == 4, "marks %u", nr_marks(0, 0));
    CHECK(futex(&hold_word, FUTEX_LOCK_PI, 0) == 0, "lock: %s", strerror(errno));
    pthread_create(&th, NULL, hold_waiter, NULL);
    double end = now() + 5;
    while (!(__atomic_load_n(&hold_word, __ATOMIC_SEQ_CST) & FUTEX_WAITERS) && now() < end)
        usleep(1000);
    CHECK(hold_word & FUTEX_WAITERS, "waiter did not block");
    close(kdev());
    write_file(ready_file, failed ? "F" : "R");

    end = now() + 60;
    while (!hold_go && now() < end) usleep(10000);
    CHECK(hold_go, "no SIGUSR1");
    CHECK(futex(&hold_word, FUTEX_UNLOCK_PI, 0) == 0, "unlock: %s", strerror(errno));
    end = now() + 5;
    while (atomic_load(&waiter_state) == 0 && now() < end) usleep(1000);
    CHECK(atomic_load(&waiter_state) == 1, "waiter state %d", atomic_load(&waiter_state));
    if (atomic_load(&waiter_state) != 0) pthread_join(th, NULL);
    write_file(done, failed ? "F" : "P");
    return failed;
}

/* ---- through the mounted tree (crfsd at /crfs) and libcrfs ---- */

static const char* mnt = "/crfs";

/* Content of /crfs/<pid>/<name>, or "" (and a failed check) on error. */
static const char* tree_read(pid_t pid, const char* name) {
    static char buf[8192];
    char path[256];
    snprintf(path, sizeof path, "%s/%d/%s", mnt, (int)pid, name);
    buf[0] = 0;
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    if (fd < 0) return buf;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n >= 0, "read %s: %s", path, strerror(errno));
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    return buf;
}

/* Does /crfs/<pid>/reason have exactly this line? */
static int reason_has(pid_t pid, const char* line) {
    const char* text = tree_read(pid, "reason");
    size_t len = strlen(line);
    for (const char* p = text; (p = strstr(p, line)) != NULL; p += len)
        if ((p == text || p[-1] == '\n') && p[len] == '\n') return 1;
    return 0;
}

static int nocr_is(pid_t pid, const char* want) {
    return strcmp(tree_read(pid, "nocr"), want) == 0;
}

/* errno of reading /crfs/<pid>/image (0 if a read succeeded). */
static int image_errno(pid_t pid) {
    char path[256], buf[64];
    snprintf(path, sizeof path, "%s/%d/image", mnt, (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno;
    int err = read(fd, buf, sizeof buf) < 0 ? errno : 0;
    close(fd);
    return err;
}

static int t_mounted_remap(void) {
    pid_t me = getpid();
    CHECK(!reason_has(me, "kernel: " REMAP_REASON), "marked before");
    CHECK(nocr_is(me, "0\n"), "nocr before: %s", tree_read(me, "nocr"));
    struct remap r = do_remap();
    CHECK(reason_has(me, "kernel: " REMAP_REASON), "reason: %s", tree_read(me, "reason"));
    CHECK(nocr_is(me, "1\n"), "nocr: %s", tree_read(me, "nocr"));
    undo_remap(&r);
    CHECK(!reason_has(me, "kernel: " REMAP_REASON), "after munmap: %s", tree_read(me, "reason"));
    CHECK(nocr_is(me, "0\n"), "nocr after munmap: %s", tree_read(me, "nocr"));
    /* another task's kernel mark shows on it only */
    struct child a = spawn_child(child_remap, NULL, 0);
    struct child b = spawn_child(NULL, NULL, 0);
    CHECK(reason_has(a.pid, "kernel: " REMAP_REASON), "child: %s", tree_read(a.pid, "reason"));
    CHECK(nocr_is(a.pid, "1\n"), "child nocr");
    int err = image_errno(a.pid);
    CHECK(err == EBUSY, "reading the marked child's image: %s", strerror(err));
    CHECK(!reason_has(b.pid, "kernel: " REMAP_REASON), "other child: %s",
          tree_read(b.pid, "reason"));
    CHECK(nocr_is(b.pid, "0\n"), "other child nocr");
    CHECK(nocr_is(me, "0\n"), "parent nocr");
    reap_child(&a);
    reap_child(&b);
    return failed;
}

static void child_lock_pi(void* arg) {
    static uint32_t f;
    (void)arg;
    CHECK(futex(&f, FUTEX_LOCK_PI, 0) == 0, "FUTEX_LOCK_PI: %s", strerror(errno));
}

static int t_mounted_pi(void) {
    static uint32_t f;
    pid_t me = getpid();
    f = 0;
    CHECK(futex(&f, FUTEX_LOCK_PI, 0) == 0, "FUTEX_LOCK_PI: %s", strerror(errno));
    CHECK(reason_has(me, "kernel: " PI_REASON), "reason: %s", tree_read(me, "reason"));
    CHECK(nocr_is(me, "1\n"), "nocr: %s", tree_read(me, "nocr"));
    struct child c = spawn_child(child_lock_pi, NULL, 0);
    CHECK(reason_has(c.pid, "kernel: " PI_REASON), "child: %s", tree_read(c.pid, "reason"));
    int err = image_errno(c.pid);
    CHECK(err == EBUSY, "reading the PI-marked child's image: %s", strerror(err));
    reap_child(&c);
    CHECK(futex(&f, FUTEX_UNLOCK_PI, 0) == 0, "FUTEX_UNLOCK_PI: %s", strerror(errno));
    CHECK(!reason_has(me, "kernel: " PI_REASON), "after unlock: %s", tree_read(me, "reason"));
    CHECK(nocr_is(me, "0\n"), "nocr after unlock: %s", tree_read(me, "nocr"));
    int fd = ring_setup();
    CHECK(reason_has(me, "kernel: " RING_REASON), "reason: %s", tree_read(me, "reason"));
    close(fd);
    CHECK(!reason_has(me, "kernel: " RING_REASON), "after close: %s", tree_read(me, "reason"));
    return failed;
}

static void child_libcrfs_attacker(void* arg) {
    pid_t victim = *(pid_t*)arg;
    int rc = crfs_set_task_nocr(victim, "CR: evil");
    CHECK(rc == -EACCES, "set on root's process: %d", rc);
    rc = crfs_set_task_cr(victim);
    CHECK(rc == -EACCES, "clear on root's process: %d", rc);
    rc = crfs_set_current_nocr("CR: mine");
    CHECK(rc == 0, "set on self: %s", strerror(-rc));
    CHECK(has_mark(getpid(), 1, CRFS_KDEV_SRC_MARK, "CR: mine") == 1, "not in the kernel");
}

static int t_mounted_libcrfs(void) {
    pid_t me = getpid();
    int rc = crfs_set_current_nocr("CR: via libcrfs.");
    CHECK(rc == 0, "crfs_set_current_nocr: %s", strerror(-rc));
    /* it went through the device: the kernel has it */
    CHECK(has_mark(me, 1, CRFS_KDEV_SRC_MARK, "CR: via libcrfs.") == 1, "not in the kernel");
    CHECK(reason_has(me, "nocr: CR: via libcrfs."), "reason: %s", tree_read(me, "reason"));
    CHECK(nocr_is(me, "1\n"), "nocr: %s", tree_read(me, "nocr"));
    CHECK(crfs_task_nocr(me) == 1, "crfs_task_nocr: %d", crfs_task_nocr(me));
    rc = crfs_set_current_cr();
    CHECK(rc == 0, "crfs_set_current_cr: %s", strerror(-rc));
    CHECK(nr_marks(me, 1) == 0, "kernel still has %u marks", nr_marks(me, 1));
    CHECK(nocr_is(me, "0\n"), "nocr after cr: %s", tree_read(me, "nocr"));
    CHECK(crfs_task_nocr(me) == 0, "crfs_task_nocr after cr: %d", crfs_task_nocr(me));

    /* "1" is the generic reason; writing 0 to nocr clears a device mark */
    CHECK(crfs_set_current_nocr("1") == 0, "set 1");
    CHECK(reason_has(me, "nocr: CR: marked uncheckpointable"), "reason: %s",
          tree_read(me, "reason"));
    char path[64];
    snprintf(path, sizeof path, "%s/%d/nocr", mnt, (int)me);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && write(fd, "0\n", 2) == 2, "echo 0 > %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    CHECK(nr_marks(me, 1) == 0, "kernel mark not cleared by the mount");
    CHECK(nocr_is(me, "0\n"), "nocr after echo 0");

    /* a mark set by the kernel itself counts for crfs_task_nocr() */
    struct remap r = do_remap();
    CHECK(crfs_task_nocr(me) == 1, "crfs_task_nocr with a remap: %d", crfs_task_nocr(me));
    undo_remap(&r);
    CHECK(crfs_task_nocr(me) == 0, "crfs_task_nocr after unmap: %d", crfs_task_nocr(me));

    /* proxies: root may, another uid may not */
    struct child c = spawn_child(NULL, NULL, 0);
    CHECK(crfs_set_task_nocr(c.pid, "CR: proxy.") == 0, "proxy set");
    CHECK(reason_has(c.pid, "nocr: CR: proxy."), "proxy reason: %s", tree_read(c.pid, "reason"));
    CHECK(crfs_set_task_cr(c.pid) == 0, "proxy clear");
    CHECK(nocr_is(c.pid, "0\n"), "proxy nocr after clear");
    reap_child(&c);
    CHECK(crfs_set_current_nocr("CR: root's.") == 0, "set root's");
    struct child a = spawn_child(child_libcrfs_attacker, &me, 1003);
    CHECK(reason_has(a.pid, "nocr: CR: mine"), "attacker reason: %s", tree_read(a.pid, "reason"));
    reap_child(&a);
    CHECK(has_mark(me, 1, CRFS_KDEV_SRC_MARK, "CR: root's.") == 1, "root's mark changed");
    CHECK(crfs_set_current_cr() == 0, "clear root's");
    CHECK(crfs_set_task_nocr(999999, "x") == -ENOENT, "no such process");
    return failed;
}

static int t_count(pid_t pid) {
    printf("%u\n", nr_marks(pid, 1));
    return 0;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120); /* no test hangs */
    if (argc < 2) {
        fprintf(stderr, "usage: kmod_test TEST [ARG]\n");
        return 2;
    }
    const char* t = argv[1];
    int rc;
    if (!strcmp(t, "hooks"))
        rc = t_hooks();
    else if (!strcmp(t, "remap"))
        rc = t_remap();
    else if (!strcmp(t, "pi"))
        rc = t_pi();
    else if (!strcmp(t, "pi_contended"))
        rc = t_pi_contended();
    else if (!strcmp(t, "uring"))
        rc = t_uring();
    else if (!strcmp(t, "isolation"))
        rc = t_isolation();
    else if (!strcmp(t, "pid_reuse"))
        rc = t_pid_reuse();
    else if (!strcmp(t, "api"))
        rc = t_api();
    else if (!strcmp(t, "perm"))
        rc = t_perm();
    else if (!strcmp(t, "exit_frees"))
        rc = t_exit_frees();
    else if (!strcmp(t, "stress"))
        rc = t_stress(argc > 2 ? atoi(argv[2]) : 10);
    else if (!strcmp(t, "hold") && argc > 2)
        rc = t_hold(argv[2]);
    else if (!strcmp(t, "count") && argc > 2)
        rc = t_count(atoi(argv[2]));
    else if (!strcmp(t, "mounted_remap"))
        rc = t_mounted_remap();
    else if (!strcmp(t, "mounted_pi"))
        rc = t_mounted_pi();
    else if (!strcmp(t, "mounted_libcrfs"))
        rc = t_mounted_libcrfs();
    else {
        fprintf(stderr, "kmod_test: unknown test %s\n", t);
        return 2;
    }
    return rc || failed ? 1 : 0;
}
