/* The nocr C API, from C, against a mounted crfsd found through $CRFS_ROOT:
 * marks itself, checks nocr and reason, clears, checks again; also the
 * proxy calls on itself by pid and the argument errors.
 * Prints one line per failed check and exits 1 if any failed. */
#include <crfs/nocr.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* Content of $CRFS_ROOT/<pid>/reason. */
static const char* reason_text(void) {
    static char buf[8192];
    char path[4096];
    snprintf(path, sizeof path, "%s/%d/reason", getenv("CRFS_ROOT"), (int)getpid());
    int fd = open(path, O_RDONLY);
    if (fd < 0) return "<open failed>";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    return buf;
}

int main(void) {
    pid_t me = getpid();
    if (!getenv("CRFS_ROOT")) {
        fprintf(stderr, "CRFS_ROOT not set\n");
        return 2;
    }
    CHECK(crfs_task_nocr(me) == 0);
    CHECK(strcmp(reason_text(), "") == 0);

    CHECK(crfs_set_current_nocr("CR: PI futexes not supported yet.") == 0);
    CHECK(crfs_task_nocr(me) == 1);
    CHECK(strcmp(reason_text(), "nocr: CR: PI futexes not supported yet.\n") == 0);

    CHECK(crfs_set_current_cr() == 0);
    CHECK(crfs_task_nocr(me) == 0);
    CHECK(strcmp(reason_text(), "") == 0);

    CHECK(crfs_set_task_nocr(me, "1") == 0);
    CHECK(strcmp(reason_text(), "nocr: CR: marked uncheckpointable\n") == 0);
    CHECK(crfs_set_task_cr(me) == 0);
    CHECK(crfs_task_nocr(me) == 0);

    CHECK(crfs_set_current_nocr(NULL) == -EINVAL);
    CHECK(crfs_set_current_nocr("") == -EINVAL);
    CHECK(crfs_set_current_nocr("0") == -EINVAL);
    CHECK(crfs_set_current_nocr("bad\001reason") == -EINVAL);
    CHECK(crfs_task_nocr(me) == 0);
    CHECK(crfs_task_nocr(-1) == -ENOENT);
    CHECK(crfs_set_task_nocr(4194303, "CR: nobody") == -ENOENT);

    if (failures == 0) printf("nocr_api_test: all checks passed\n");
    return failures ? 1 : 0;
}
