/* sysv (issue 11): System V shared memory the task attaches comes back with
 * its id, key, size, mode, content and attach flags (state/sysv_shm.h). Each
 * exact variant removes its segment while attached (IPC_RMID), so that the
 * segment is gone with the killed task and a restore may make it again; a
 * segment that outlives the task is tests/fs/sysv_mount_test.py's. Exact
 * too: a tree whose child inherits the attach (sysvtree). The refused
 * variants: an attach shared with a process outside the image, a split
 * attach, a segment locked in memory. */
#include "outsider.h"
#include "probe.h"

#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PAGE 4096

static int g_id;
static char* g_at;
static size_t g_size;
static pid_t g_child;

static int has_flag(void* addr, const char* flag) {
    char line[1024];
    if (vm_flags_of(addr, line, sizeof line) != 0) return -1;
    return strstr(line, flag) != NULL;
}

/* A segment of `size` bytes (key: IPC_PRIVATE or a key of this probe's pid),
 * attached with `flags`, a word at its start and end, removed while attached. */
static void make(key_t key, size_t size, int mode, int flags) {
    g_size = size;
    g_id = shmget(key, size, IPC_CREAT | IPC_EXCL | mode);
    if (g_id < 0) die("shmget");
    char* rw = shmat(g_id, NULL, 0);
    if (rw == (void*)-1) die("shmat");
    strcpy(rw, "first");
    strcpy(rw + size - 5, "last");
    if (flags & SHM_RDONLY) { /* the task's own attach cannot write */
        g_at = shmat(g_id, NULL, flags);
        if (g_at == (void*)-1) die("shmat read-only");
        shmdt(rw);
    } else {
        g_at = rw;
    }
    if (shmctl(g_id, IPC_RMID, NULL) != 0) die("IPC_RMID");
}

static void check_segment(int mode, int writable, unsigned long nattch) {
    if (strcmp(g_at, "first") != 0 || strcmp(g_at + g_size - 5, "last") != 0)
        fail("the segment's content differs");
    struct shmid_ds ds;
    if (shmctl(g_id, IPC_STAT, &ds) != 0) {
        fail("segment %d is gone", g_id);
        return;
    }
    if (ds.shm_segsz != g_size) fail("size %zu, not %zu", (size_t)ds.shm_segsz, g_size);
    if ((ds.shm_perm.mode & 0777) != (unsigned)mode)
        fail("mode %o, not %o", ds.shm_perm.mode & 0777, mode);
    if (!(ds.shm_perm.mode & SHM_DEST)) fail("the segment is no longer marked removed");
    if (ds.shm_perm.uid != getuid() || ds.shm_perm.cuid != getuid())
        fail("owner %u creator %u, not %u", ds.shm_perm.uid, ds.shm_perm.cuid, getuid());
    if (ds.shm_nattch != nattch) fail("nattch %lu, not %lu", (unsigned long)ds.shm_nattch, nattch);
    if (has_flag(g_at, " mw") != writable)
        fail("may-write (mw) is %d, not %d", has_flag(g_at, " mw"), writable);
    if (writable) {
        strcpy(g_at + 100, "written after");
        if (strcmp(g_at + 100, "written after") != 0) fail("the segment is not writable");
    }
}

static void private_setup(void) {
    make(IPC_PRIVATE, 3 * PAGE + 100, 0640, 0);
}
static void private_check(void) {
    check_segment(0640, 1, 1);
}
static void key_setup(void) {
    make(0x5117000 + getpid(), 20 * PAGE, 0600, 0);
}
static void key_check(void) {
    check_segment(0600, 1, 1);
}
static void rdonly_setup(void) {
    make(IPC_PRIVATE, PAGE, 0644, SHM_RDONLY);
}
static void rdonly_check(void) {
    check_segment(0644, 0, 1);
}

/* Refused: a process outside the probe's tree attaches the segment too (it
 * inherits the attach: outsider.h). */
static void other_setup(void) {
    make(IPC_PRIVATE, PAGE, 0600, 0);
    g_child = spawn_outsider();
}
static void other_check(void) {
    check_segment(0600, 1, 2);
    kill(g_child, SIGKILL);
}

/* sysvtree: a child inherits the attach: one segment of the tree, attached
 * twice, comes back attached twice (state/sysv_ids.h). */
static void tree_setup(void) {
    make(IPC_PRIVATE, PAGE, 0600, 0);
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}
static void tree_check(void) {
    check_segment(0600, 1, 2);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

/* Refused: one page of a two-page attach made read-only (two VMAs). */
static void split_setup(void) {
    make(IPC_PRIVATE, 2 * PAGE, 0600, 0);
    if (mprotect(g_at + PAGE, PAGE, PROT_READ) != 0) die("mprotect");
}
static void split_check(void) {
    if (strcmp(g_at, "first") != 0) fail("the segment's content differs");
}

/* Refused: SHM_LOCK. */
static void locked_setup(void) {
    make(IPC_PRIVATE, PAGE, 0600, 0);
    if (shmctl(g_id, SHM_LOCK, NULL) != 0) die("SHM_LOCK");
}
static void locked_check(void) {
    check_segment(0600, 1, 1);
}

static const struct variant kVariants[] = {
    {"shm_private", private_setup, private_check, NULL},
    {"shm_key", key_setup, key_check, NULL},
    {"shm_rdonly", rdonly_setup, rdonly_check, NULL},
    {"shm_other", other_setup, other_check, NULL},
    {"shm_tree", tree_setup, tree_check, NULL},
    {"shm_split", split_setup, split_check, NULL},
    {"shm_locked", locked_setup, locked_check, NULL},
};
PROBE_MAIN(kVariants)
