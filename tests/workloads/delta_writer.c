// A self-checking workload for delta images (docs/incremental.md): N pages
// of known content, changed in rounds between checkpoints; every page is
// checked after restore.
//
// usage: delta_writer DIR MIB. Writes DIR/ready when every page holds its
// first generation. SIGUSR1: the next round (DIR/round<k> when done):
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
#include <unistd.h>

enum { kPage = 4096, kDiscardAt = 40, kDiscard = 8, kExtraPages = 4 };

static const char* dir;
static uint8_t* mem;
static uint32_t* gens;  // gens[i]: the generation page i holds; ~0u: discarded
static size_t npages;
static uint8_t* extra;

static void fill(uint8_t* p, uint64_t gen, uint64_t i) {
    memset(p, (int)((gen * 31 + i) & 0xff) | 1, kPage);
    memcpy(p, &gen, 8);
    memcpy(p + 8, &i, 8);
}

static int holds(const uint8_t* p, uint64_t gen, uint64_t i) {
    uint8_t want[kPage];
    fill(want, gen, i);
    return memcmp(p, want, kPage) == 0;
}

static void note(const char* name, const char* text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "w");
    if (!f) exit(2);
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
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

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    dir = argv[1];
    npages = (size_t)atoi(argv[2]) * 256;
    mem = mmap(NULL, npages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    gens = calloc(npages, sizeof *gens);
    if (mem == MAP_FAILED || !gens) return 2;
    for (size_t i = 0; i < npages; ++i) fill(mem + i * kPage, 0, i);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    note("ready", "1\n");
    for (unsigned k = 1;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGTERM) {
            note("result", check());
            return 0;
        }
        if (sig != SIGUSR1) continue;
        round_k(k);
        char name[32];
        snprintf(name, sizeof name, "round%u", k++);
        note(name, "1\n");
    }
}
