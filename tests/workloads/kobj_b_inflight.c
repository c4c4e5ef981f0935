// A single-process event loop that always has data in flight in a self-pipe,
// a stream socketpair and a datagram socketpair (issue 11, state/pipe.cc and
// state/unix_socket.cc): each round it writes record i into all three and
// reads record i - LAG back from each, checking it. A checkpoint, kill -9 and
// restore anywhere in the run must neither lose nor double a byte.
//
//   kobj_b_inflight DIR ROUNDS
//
// Writes DIR/ready once LAG records are in flight, runs ROUNDS rounds of about
// a millisecond each, then writes DIR/result: "PASS <rounds>" or "FAIL: why".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAG 64

struct rec {
    uint64_t seq, check;
};

static char g_dir[1024];

static void finish(const char* text) {
    char path[1100], tmp[1100];
    snprintf(path, sizeof path, "%s/result", g_dir);
    snprintf(tmp, sizeof tmp, "%s/result.tmp", g_dir);
    FILE* f = fopen(tmp, "w");
    if (!f) exit(2);
    fprintf(f, "%s\n", text);
    fclose(f);
    rename(tmp, path);
    exit(strncmp(text, "PASS", 4) == 0 ? 0 : 1);
}

static void put(int fd, uint64_t seq, const char* what) {
    struct rec r = {seq, seq * 0x9e3779b97f4a7c15ull};
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        char msg[128];
        snprintf(msg, sizeof msg, "FAIL: write %s %llu: %s", what, (unsigned long long)seq,
                 strerror(errno));
        finish(msg);
    }
}

static void get(int fd, uint64_t seq, const char* what) {
    struct rec r;
    ssize_t n = read(fd, &r, sizeof r);
    if (n != (ssize_t)sizeof r || r.seq != seq || r.check != seq * 0x9e3779b97f4a7c15ull) {
        char msg[160];
        snprintf(msg, sizeof msg, "FAIL: %s: read %zd bytes, record %llu, want %llu", what, n,
                 (unsigned long long)r.seq, (unsigned long long)seq);
        finish(msg);
    }
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    uint64_t rounds = strtoull(argv[2], NULL, 10);
    int p[2], s[2], d[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, d))
        return 2;
    for (uint64_t i = 0; i < LAG; ++i) {
        put(p[1], i, "pipe");
        put(s[0], i, "stream");
        put(d[0], i, "datagram");
    }
    char ready[1100];
    snprintf(ready, sizeof ready, "%s/ready", g_dir);
    close(open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    struct timespec ms = {0, 1000000};
    for (uint64_t i = LAG; i < rounds + LAG; ++i) {
        put(p[1], i, "pipe");
        put(s[0], i, "stream");
        put(d[0], i, "datagram");
        get(p[0], i - LAG, "pipe");
        get(s[1], i - LAG, "stream");
        get(d[1], i - LAG, "datagram");
        nanosleep(&ms, NULL);
    }
    char ok[64];
    snprintf(ok, sizeof ok, "PASS %llu", (unsigned long long)rounds);
    finish(ok);
}
