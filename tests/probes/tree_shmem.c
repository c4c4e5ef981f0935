/* Shared anonymous memory between a tree's processes (docs/trees.md "Shared
 * memory between members", state/tree_shmem.h): one object again after the
 * restore, written through by every process that maps it; refused when a
 * process outside the tree maps it too, or when a child maps pages its
 * parent (the object's first holder) does not. Each child, on SIGUSR1,
 * checks what its parent wrote and answers through the memory itself. */
#include "outsider.h"
#include "probe.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define SLOTS 3
static char* g_mem;
static pid_t g_kids[2];
static int g_nkids;

/* A child that, on SIGUSR1, runs `answer(slot)` and exits with its result. */
static pid_t worker(int slot, int (*answer)(int)) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, NULL); /* before the fork: no signal is lost */
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int sig = 0;
        while (sigwait(&s, &sig) != 0) {
        }
        _exit(answer(slot));
    }
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    g_kids[g_nkids++] = pid;
    return pid;
}

/* Each child answers in turn (SIGUSR1, then reaped). */
static void ask_kids(void) {
    for (int i = 0; i < g_nkids; ++i) {
        kill(g_kids[i], SIGUSR1);
        int st = 0;
        if (waitpid(g_kids[i], &st, 0) != g_kids[i])
            fail("child %d is not ours", g_kids[i]);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("child %d: the shared memory is not shared (status 0x%x)", g_kids[i], st);
    }
}

static char* slot(int i) {
    return g_mem + (size_t)i * PAGE;
}

/* Child `i` sees "parent" in slot 0 and writes "child i" in its own slot. */
static int answer_parent(int i) {
    if (strcmp(slot(0), "parent") != 0) return 1;
    snprintf(slot(i + 1), 32, "child %d", i);
    return 0;
}

/* The pre-fork server: a parent maps, two workers inherit; before the
 * checkpoint each wrote its slot. */
static void map_slots(void) {
    g_mem = mmap(NULL, SLOTS * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_mem == MAP_FAILED) die("mmap");
}
static void parent_kids_setup(void) {
    map_slots();
    strcpy(slot(1), "before");
    worker(0, answer_parent);
    worker(1, answer_parent);
}
static void parent_kids_check(void) {
    if (strcmp(slot(1), "before") != 0) fail("slot 1 lost its content: '%s'", slot(1));
    strcpy(slot(0), "parent");
    ask_kids();
    for (int i = 0; i < 2; ++i) {
        char want[32];
        snprintf(want, sizeof want, "child %d", i);
        if (strcmp(slot(i + 1), want) != 0)
            fail("slot %d holds '%s', not the child's write", i + 1, slot(i + 1));
    }
}

/* The parent split its mapping (mprotect), the child too, differently. */
static int answer_split(int i) {
    (void)i;
    if (strcmp(slot(0), "parent") != 0) return 1;
    if (mprotect(slot(2), PAGE, PROT_READ | PROT_WRITE) != 0) return 2;
    strcpy(slot(2), "child");
    return 0;
}
static void split_setup(void) {
    map_slots();
    worker(0, answer_split);
    if (mprotect(slot(1), PAGE, PROT_READ) != 0) die("mprotect");
    strcpy(slot(2), "two");
}
static void split_check(void) {
    if (strcmp(slot(2), "two") != 0) fail("slot 2 holds '%s'", slot(2));
    if (mprotect(slot(1), PAGE, PROT_READ | PROT_WRITE) != 0) fail("mprotect: %s", strerror(errno));
    strcpy(slot(0), "parent");
    ask_kids();
    if (strcmp(slot(2), "child") != 0) fail("slot 2 holds '%s', not the child's", slot(2));
}

/* Siblings share it, their parent unmapped it: the first child owns it. */
static int answer_first(int i) {
    (void)i;
    strcpy(slot(1), "first");
    return 0;
}
static int answer_second(int i) {
    (void)i;
    return strcmp(slot(1), "first") == 0 ? 0 : 1;
}
static void siblings_setup(void) {
    map_slots();
    worker(0, answer_first);
    worker(1, answer_second);
    munmap(g_mem, SLOTS * PAGE);
}

/* Refused: a process outside the tree maps it too. */
static pid_t g_outside;
static void outside_setup(void) {
    map_slots();
    g_outside = spawn_outsider();
    worker(0, answer_parent);
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
    strcpy(slot(0), "parent");
    ask_kids();
}

/* Refused: the child maps a page its parent (the first holder) unmapped. */
static void uncovered_setup(void) {
    map_slots();
    worker(0, answer_parent);
    if (munmap(slot(2), PAGE) != 0) die("munmap");
}
static void uncovered_check(void) {
    strcpy(slot(0), "parent");
    ask_kids();
}

/* A memfd held (fd 3) and mapped by a parent, inherited by two workers:
 * one memfd again, its record in the parent's image. */
static int g_memfd = -1;
static void memfd_setup(unsigned flags) {
    g_memfd = memfd_create("tree", MFD_CLOEXEC | flags);
    if (g_memfd != 3 || ftruncate(g_memfd, SLOTS * PAGE) != 0) die("memfd");
    g_mem = mmap(NULL, SLOTS * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, g_memfd, 0);
    if (g_mem == MAP_FAILED) die("mmap memfd");
    strcpy(slot(1), "before");
}
static void memfd_kids_setup(void) {
    memfd_setup(0);
    worker(0, answer_parent);
    worker(1, answer_parent);
}
static void memfd_kids_check(void) {
    char link[64] = "";
    (void)!readlink("/proc/self/fd/3", link, sizeof link - 1);
    if (strcmp(link, "/memfd:tree (deleted)") != 0) fail("fd 3 is '%s'", link);
    parent_kids_check();
    char got[16] = "";
    if (pread(g_memfd, got, sizeof got - 1, 2 * PAGE) < 0 || strcmp(got, "child 1") != 0)
        fail("the memfd through its fd holds '%s'", got);
}

/* Sealed against writes (F_SEAL_FUTURE_WRITE) and shared with a child: the
 * seal comes back after the child's mapping is made (state/tree_shmem_restore.h
 * tree_seal_memfds); the writable mappings made before it stay writable, a
 * new one is refused. */
static int answer_sealed(int i) {
    if (answer_parent(i) != 0) return 1;
    if (fcntl(3, F_GET_SEALS) != F_SEAL_FUTURE_WRITE) return 2;
    void* p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
    return p == MAP_FAILED && errno == EPERM ? 0 : 3;
}
static void memfd_sealed_setup(void) {
    memfd_setup(MFD_ALLOW_SEALING);
    if (fcntl(g_memfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0) die("F_ADD_SEALS");
    worker(0, answer_sealed);
}
static void memfd_sealed_check(void) {
    int seals = fcntl(g_memfd, F_GET_SEALS);
    if (seals != F_SEAL_FUTURE_WRITE) fail("the memfd's seals are 0x%x", seals);
    strcpy(slot(0), "parent");
    ask_kids();
    if (strcmp(slot(1), "child 0") != 0) fail("slot 1 holds '%s', not the child's", slot(1));
}

/* Sealed with F_SEAL_WRITE (and F_SEAL_SEAL), mapped read-only by a parent
 * and its child: the content comes back and the seals after both mappings
 * (a mapping that may write would make F_SEAL_WRITE fail). */
static int answer_write_sealed(int i) {
    (void)i;
    if (strcmp(slot(1), "before") != 0) return 1;
    return fcntl(3, F_GET_SEALS) == (F_SEAL_WRITE | F_SEAL_SEAL) ? 0 : 2;
}
static void memfd_write_sealed_setup(void) {
    g_memfd = memfd_create("tree", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (g_memfd != 3 || ftruncate(g_memfd, SLOTS * PAGE) != 0) die("memfd");
    if (pwrite(g_memfd, "before", 7, PAGE) != 7) die("pwrite");
    if (fcntl(g_memfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0) die("F_ADD_SEALS");
    g_mem = mmap(NULL, SLOTS * PAGE, PROT_READ, MAP_SHARED, g_memfd, 0);
    if (g_mem == MAP_FAILED) die("mmap memfd");
    worker(0, answer_write_sealed);
}
static void memfd_write_sealed_check(void) {
    int seals = fcntl(g_memfd, F_GET_SEALS);
    if (seals != (F_SEAL_WRITE | F_SEAL_SEAL)) fail("the memfd's seals are 0x%x", seals);
    if (strcmp(slot(1), "before") != 0) fail("slot 1 holds '%s'", slot(1));
    if (pwrite(g_memfd, "x", 1, 0) != -1 || errno != EPERM) fail("a write to the memfd was let in");
    ask_kids();
}

/* Still refused: a memfd a process outside the tree holds and maps too. */
static void memfd_outside_setup(void) {
    memfd_setup(0);
    g_outside = spawn_outsider();
}
static void memfd_outside_check(void) {
    kill(g_outside, SIGKILL);
    if (strcmp(slot(1), "before") != 0) fail("the memfd holds '%s'", slot(1));
}

static const struct variant kVariants[] = {
    {"parent_kids", parent_kids_setup, parent_kids_check, NULL},
    {"split", split_setup, split_check, NULL},
    {"siblings", siblings_setup, ask_kids, NULL},
    {"outside", outside_setup, outside_check, NULL},
    {"uncovered", uncovered_setup, uncovered_check, NULL},
    {"memfd_kids", memfd_kids_setup, memfd_kids_check, NULL},
    {"sealed_kids", memfd_sealed_setup, memfd_sealed_check, NULL},
    {"write_sealed_kids", memfd_write_sealed_setup, memfd_write_sealed_check, NULL},
    {"memfd_outside", memfd_outside_setup, memfd_outside_check, NULL},
};

PROBE_MAIN(kVariants)
