/* A test's FUSE file system that holds one process (failclean_mount_test.py):
 * one regular file, "file" (mode 0644, HOLDFS_SIZE bytes of 'h'), whose open
 * by the pid written in CTL/hold waits until CTL/go exists (at most 120 s);
 * meanwhile CTL/held exists. Every other request is answered at once. So a
 * test can hold a restore inside a member's stage 1 (its open of the image's
 * file, made as its own pid) without any knob in crfsd.
 *
 *   holdfs MOUNTPOINT CTL      (foreground; mounted allow_other, unmounted on
 *                               SIGTERM by libfuse's signal handlers)
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOLDFS_SIZE 16
static const char* ctl;

static void attr_of(fuse_ino_t ino, struct stat* st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_nlink = ino == 1 ? 2 : 1;
    st->st_mode = ino == 1 ? S_IFDIR | 0755 : S_IFREG | 0644;
    st->st_size = ino == 1 ? 0 : HOLDFS_SIZE;
}

static void hf_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    if (parent != 1 || strcmp(name, "file") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = 2;
    attr_of(2, &e.attr);
    fuse_reply_entry(req, &e);
}

static void hf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    (void)fi;
    struct stat st;
    attr_of(ino, &st);
    fuse_reply_attr(req, &st, 0);
}

static int exists(const char* name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", ctl, name);
    return access(path, F_OK) == 0;
}

static long held_pid(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/hold", ctl);
    FILE* f = fopen(path, "r");
    long pid = -1;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) pid = -1;
        fclose(f);
    }
    return pid;
}

static void hf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    if (ino == 2 && held_pid() == (long)fuse_req_ctx(req)->pid) {
        char held[4096];
        snprintf(held, sizeof held, "%s/held", ctl);
        int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) close(fd);
        struct timespec tick = {0, 10 * 1000 * 1000};
        for (int i = 0; i < 12000 && !exists("go"); ++i) nanosleep(&tick, NULL);
    }
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void hf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info* fi) {
    (void)ino;
    (void)fi;
    char buf[HOLDFS_SIZE];
    memset(buf, 'h', sizeof buf);
    size_t n = off >= HOLDFS_SIZE ? 0 : (size_t)(HOLDFS_SIZE - off);
    fuse_reply_buf(req, buf + (off < HOLDFS_SIZE ? off : 0), n < size ? n : size);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = hf_lookup, .getattr = hf_getattr, .open = hf_open, .read = hf_read};

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: holdfs MOUNTPOINT CTL\n");
        return 2;
    }
    ctl = argv[2];
    char* args[] = {argv[0], "-o", "allow_other,fsname=holdfs", NULL};
    struct fuse_args fa = FUSE_ARGS_INIT(3, args);
    struct fuse_session* se = fuse_session_new(&fa, &ops, sizeof ops, NULL);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
    int r = fuse_session_loop(se);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return r < 0 ? 1 : 0;
}
