// A self-checking workload for delta images (docs/incremental.md): N pages
// of known content, changed in rounds between checkpoints; every page is
// checked after restore.
//
// usage: delta_writer DIR MIB [CHILDREN]. With CHILDREN, a tree: that many
// children are forked, each rewriting every page with a content of its own
// (its number in every page), and doing the rounds below on its own SIGUSR1
// (files prefixed "c<n>."); the parent writes DIR/ready once every child is
// ready, and on SIGTERM sends each child SIGTERM and reaps it: its verdict is
// PASS only if it and every child that exited passed (a child killed by
// SIGKILL is one the test took away). Writes DIR/ready when every page holds
// its first generation. SIGUSR1: the next round (DIR/round<k> when done):
//   every round  pages i with i % 97 == k get the next generation (~1%)
//   round 1      maps a new area (4 pages, known content)
//   round 2      discards 8 pages (MADV_DONTNEED: they must come back zero)
//   round 3      unmaps the area of round 1
// SIGTERM: checks every page against what it should hold; DIR/result gets
// "PASS" or "FAIL <why>".
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../support/put_file.h"

enum { kPage = 4096, kDiscardAt = 40, kDiscard = 8, kExtraPages = 4 };

static const char* dir;
static uint8_t* mem;
static uint32_t* gens;  // gens[i]: the generation page i holds; ~0u: discarded
static size_t npages;
static uint8_t* extra;
static uint64_t me;  // 0: the parent; n: child n
static char prefix[16];
enum { kMaxChildren = 8 };
static pid_t kids[kMaxChildren];
static int nkids;

static void fill(uint8_t* p, uint64_t gen, uint64_t i) {
    memset(p, (int)((gen * 31 + i + me * 7) & 0xff) | 1, kPage);
    memcpy(p, &gen, 8);
    memcpy(p + 8, &i, 8);
    memcpy(p + 16, &me, 8);
}

static int holds(const uint8_t* p, uint64_t gen, uint64_t i) {
    uint8_t want[kPage];
    fill(want, gen, i);
    return memcmp(p, want, kPage) == 0;
}

static void note(const char* name, const char* text) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    if (put_file(dir, full, text) != 0) exit(2);
}

static void round_k(unsigned k) {
    for (size_t i = k % 97; i < npages; i += 97)
        if (gens[i] != ~0u) fill(mem + i * kPage, ++gens[i], i);
    if (k == 1) {
        extra = mmap(NULL, kExtraPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
        if (extra == MAP_FAILED) exit(2);
        for (size_t i = 0; i < kExtraPages; ++i) fill(extra + i * kPage, 1000, i);
    }
    if (k == 2) {
        madvise(mem + kDiscardAt * kPage, kDiscard * kPage, MADV_DONTNEED);
        for (size_t i = kDiscardAt; i < kDiscardAt + kDiscard; ++i) gens[i] = ~0u;
    }
    if (k == 3 && extra) {
        munmap(extra, kExtraPages * kPage);
        extra = NULL;
    }
}

static const char* check(void) {
    static uint8_t zero[kPage];
    static char why[256];
    for (size_t i = 0; i < npages; ++i) {
        const uint8_t* p = mem + i * kPage;
        int ok = gens[i] == ~0u ? memcmp(p, zero, kPage) == 0 : holds(p, gens[i], i);
        if (!ok) {
            uint64_t g;
            memcpy(&g, p, 8);
            snprintf(why, sizeof why, "FAIL page %zu holds generation %llu, not %u", i,
                     (unsigned long long)g, gens[i]);
            return why;
        }
    }
    for (size_t i = 0; extra && i < kExtraPages; ++i)
        if (!holds(extra + i * kPage, 1000, i)) return "FAIL the new area";
    return "PASS";
}

// The parent's verdict: its own pages, then each child's end.
static const char* tree_check(void) {
    const char* mine = check();
    static char why[256];
    for (int c = 0; c < nkids; ++c) {
        kill(kids[c], SIGTERM);
        int st = 0;
        if (waitpid(kids[c], &st, 0) != kids[c]) return "FAIL a child is no child";
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) continue;  // the test's
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            snprintf(why, sizeof why, "FAIL child %d (status %#x)", c + 1, st);
            return why;
        }
    }
    return mine;
}

static int exists(const char* name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) return 2;
    dir = argv[1];
    npages = (size_t)atoi(argv[2]) * 256;
    nkids = argc == 4 ? atoi(argv[3]) : 0;
    if (nkids < 0 || nkids > kMaxChildren) return 2;
    mem = mmap(NULL, npages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    gens = calloc(npages, sizeof *gens);
    if (mem == MAP_FAILED || !gens) return 2;
    for (size_t i = 0; i < npages; ++i) fill(mem + i * kPage, 0, i);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (int c = 0; c < nkids; ++c) {
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {  // a child: its own content, its own files
            me = (uint64_t)c + 1;
            nkids = 0;
            snprintf(prefix, sizeof prefix, "c%d.", c + 1);
            for (size_t i = 0; i < npages; ++i) fill(mem + i * kPage, 0, i);
            break;
        }
        kids[c] = pid;
    }
    if (me == 0)  // the parent: ready once every child is (a bounded wait)
        for (int c = 0; c < nkids; ++c) {
            char name[32];
            snprintf(name, sizeof name, "c%d.ready", c + 1);
            for (int i = 0; !exists(name); ++i) {
                if (i == 600000) return 2;
                usleep(100);
            }
        }
    note("ready", "1\n");
    for (unsigned k = 1;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGTERM) {
            const char* verdict = me ? check() : tree_check();
            note("result", verdict);
            return strcmp(verdict, "PASS") != 0;
        }
        if (sig != SIGUSR1) continue;
        round_k(k);
        char name[32];
        snprintf(name, sizeof name, "round%u", k++);
        note(name, "1\n");
    }
}
