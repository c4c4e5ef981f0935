// The victim of pagetwice_attacks_test.py: a marker in each of three kinds of
// memory whose pages an image stores, each written once and never read again
// by the task itself (an edited copy of its page cannot upset it):
//
//   victim DIR
//
// "<PTANON17>" at the start of a private anonymous page, "<PTSTACK17>" in
// main's frame on the stack, "<PTFILE17>" at the start of a private writable
// mapping of DIR/mapme (a dirty page of a file mapping). The markers are made
// at run time: they are in no file the task maps. On SIGUSR1 it writes
// DIR/report: "anon ...\nstack ...\nfile ...\n" (the three as the task sees
// them now). SIGTERM ends it.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/support/victim_loop.h"

static char *g_anon, *g_stack, *g_file;

static void report(const char* dir) {
    char rep[256];
    int len =
        snprintf(rep, sizeof rep, "anon %.11s\nstack %.11s\nfile %.11s\n", g_anon, g_stack, g_file);
    put_file(dir, "report", rep, (size_t)len);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const char* dir = argv[1];
    char path[4096], page[4096];
    snprintf(path, sizeof path, "%s/mapme", dir);
    memset(page, 'M', sizeof page);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, page, sizeof page) != (ssize_t)sizeof page) return 2;
    char* file = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    char* anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (file == MAP_FAILED || anon == MAP_FAILED) return 2;
    char stack[64] __attribute__((aligned(64)));  // the marker in one page
    snprintf(anon, 16, "<%s%d>", "PTANON", 17);
    snprintf(stack, sizeof stack, "<%s%d>", "PTSTACK", 17);
    snprintf(file, 16, "<%s%d>", "PTFILE", 17);
    g_anon = anon, g_stack = stack, g_file = file;
    int r = victim_loop(dir, report);
    __asm__ volatile("" : : "r"(stack) : "memory");  // main's frame holds it to the end
    return r;
}
