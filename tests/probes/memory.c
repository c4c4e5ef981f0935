/* Memory probes: plain memory round-trips; the rest are refused variants. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PAGE 4096
static unsigned char* g_heap;
static unsigned char* g_anon;
static size_t g_len = 64 * PAGE;

static void fill(unsigned char* p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(i * 31 + seed);
}
static int same(const unsigned char* p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != (unsigned char)(i * 31 + seed)) return 0;
    return 1;
}

static unsigned char* anon(size_t n) {
    void* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

static void plain_setup(void) {
    g_heap = malloc(100000);
    fill(g_heap, 100000, 7);
    g_anon = anon(g_len);
    fill(g_anon, g_len, 9);
    mprotect(g_anon + 8 * PAGE, PAGE, PROT_READ);
}
static void plain_check(void) {
    if (!same(g_heap, 100000, 7)) fail("heap content differs");
    if (!same(g_anon, g_len, 9)) fail("anonymous mapping content differs");
}

/* A madvise flag set on a middle part: the VMA splits; the check reads the
 * content back (the flag itself is what a restore would lose). */
static int g_advice;
static void advise_setup(void) {
    plain_setup();
    if (madvise(g_anon + 4 * PAGE, 4 * PAGE, g_advice) != 0) die("madvise");
}
static void dontfork(void) {
    g_advice = MADV_DONTFORK;
    advise_setup();
}
static void wipeonfork(void) {
    g_advice = MADV_WIPEONFORK;
    advise_setup();
}
static void hugepage(void) {
    g_advice = MADV_HUGEPAGE;
    advise_setup();
}

static void mlock_setup(void) {
    plain_setup();
    /* The syscall itself: ASan makes mlock() a no-op. */
    if (syscall(SYS_mlock, g_anon, 4 * PAGE) != 0) die("mlock");
}

static void guard_setup(void) {
    plain_setup();
    if (madvise(g_anon + 10 * PAGE, PAGE, 102 /* MADV_GUARD_INSTALL */) != 0) die("guard");
}
static void guard_check(void) {
    if (!same(g_heap, 100000, 7)) fail("heap content differs");
    if (!same(g_anon, 10 * PAGE, 9)) fail("content before the guard differs");
}

static unsigned long g_aio;
static void aio_setup(void) {
    if (syscall(SYS_io_setup, 4, &g_aio) != 0) die("io_setup");
}
static void aio_check(void) {
    if (syscall(SYS_io_destroy, g_aio) != 0) fail("io_destroy: %s", strerror(errno));
}

static void memfd_shared_setup(void) {
    int fd = memfd_create("probe-small", 0);
    if (fd < 0 || write(fd, "hello", 5) != 5) die("memfd");
    g_anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (g_anon == MAP_FAILED) die("mmap memfd");
    close(fd);
}
static void memfd_shared_check(void) {
    if (memcmp(g_anon, "hello", 5) != 0) fail("memfd content differs");
}

static int g_shmid;
static void sysv_setup(void) {
    g_shmid = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (g_shmid < 0) die("shmget");
    g_anon = shmat(g_shmid, NULL, 0);
    if (g_anon == (void*)-1) die("shmat");
    shmctl(g_shmid, IPC_RMID, NULL); /* gone with the last detach */
    strcpy((char*)g_anon, "sysv");
}
static void sysv_check(void) {
    if (strcmp((char*)g_anon, "sysv") != 0) fail("shm content differs");
    struct shmid_ds ds;
    if (shmctl(g_shmid, IPC_STAT, &ds) != 0) fail("segment %d is gone", g_shmid);
}

/* Shared anonymous memory that a child maps too. */
static pid_t g_child;
static void shared_anon_setup(void) {
    g_anon = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_anon == MAP_FAILED) die("mmap shared");
    strcpy((char*)g_anon, "before");
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        while (strcmp((char*)g_anon, "from parent") != 0) usleep(1000);
        strcpy((char*)g_anon, "from child");
        for (;;) pause();
    }
}
static void shared_anon_check(void) {
    strcpy((char*)g_anon, "from parent");
    for (int i = 0; i < 5000 && strcmp((char*)g_anon, "from child") != 0; ++i) usleep(1000);
    if (strcmp((char*)g_anon, "from child") != 0) fail("the child no longer shares the memory");
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

/* A file mapped MAP_SHARED, then unlinked. */
static void shared_deleted_setup(void) {
    int fd = open(at("mapped"), O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, PAGE) != 0) die("mapped file");
    g_anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (g_anon == MAP_FAILED) die("mmap file");
    close(fd);
    strcpy((char*)g_anon, "file");
    unlink(at("mapped"));
}
static void shared_deleted_check(void) {
    if (strcmp((char*)g_anon, "file") != 0) fail("content differs");
}

static const struct variant kVariants[] = {
    {"plain", plain_setup, plain_check, NULL},
    {"mlock", mlock_setup, plain_check, NULL},
    {"dontfork", dontfork, plain_check, NULL},
    {"wipeonfork", wipeonfork, plain_check, NULL},
    {"hugepage", hugepage, plain_check, NULL},
    {"guard", guard_setup, guard_check, NULL},
    {"aio", aio_setup, aio_check, NULL},
    {"memfd_shared", memfd_shared_setup, memfd_shared_check, NULL},
    {"sysv", sysv_setup, sysv_check, NULL},
    {"shared_anon", shared_anon_setup, shared_anon_check, NULL},
    {"shared_deleted", shared_deleted_setup, shared_deleted_check, NULL},
};
PROBE_MAIN(kVariants)
