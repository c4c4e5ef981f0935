// A task that writes all its memory all the time, for the live snapshot's
// tests: usage gen_writer DIR MIB. Page 0 of a MIB region holds {generation
// being written, index being written, error flag}; pages 1.. hold
// {generation, generation ^ index * K}. It rewrites every page with the next
// generation, in order, forever, and checks that each page still held the
// previous one: any image that is not one cut of this memory, once restored,
// sets the flag. DIR/ready gets the region's address once it runs.
// usage gen_writer DIR MIB read: the same, but the kernel writes each page's
// words (read(2) from a pipe into it): a read that fails (EFAULT) sets the
// flag to 2.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define MIX 0x9e3779b97f4a7c15ull

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) return 2;
    int by_read = argc == 4;
    int pfd[2];
    if (by_read && pipe(pfd) != 0) return 1;
    size_t pages = (size_t)atoi(argv[2]) * 256;
    char* r = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return 1;
    volatile uint64_t* meta = (volatile uint64_t*)r;
    for (size_t i = 1; i < pages; ++i) {
        volatile uint64_t* p = (volatile uint64_t*)(r + i * PAGE);
        p[0] = 0;
        p[1] = i * MIX;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ready.tmp", argv[1]);
    FILE* f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "%lx\n", (unsigned long)r);
    fclose(f);
    char done[4096];
    snprintf(done, sizeof done, "%s/ready", argv[1]);
    if (rename(path, done) != 0) return 1;
    for (uint64_t g = 1;; ++g) {
        meta[0] = g;
        for (size_t i = 1; i < pages; ++i) {
            volatile uint64_t* p = (volatile uint64_t*)(r + i * PAGE);
            meta[1] = i;
            if (p[0] != g - 1 || p[1] != ((g - 1) ^ (i * MIX))) meta[2] = 1;
            if (by_read) {
                uint64_t w[2] = {g, g ^ (i * MIX)};
                if (write(pfd[1], w, sizeof w) != sizeof w) meta[2] = 3;
                if (read(pfd[0], (void*)p, sizeof w) != sizeof w) meta[2] = 2;
                continue;
            }
            p[0] = g;
            p[1] = g ^ (i * MIX);
        }
    }
}
