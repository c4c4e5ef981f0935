/* Workload: holds a half-closed TCP connection over loopback (the client,
 * fd 3, shut down for writing: FIN_WAIT2; a listener; the accepted socket,
 * which read the EOF: CLOSE_WAIT), states crfs refuses (docs/network.md),
 * then closes all three on SIGUSR1.
 *
 *   tcp_toggle STATE_FILE
 *
 * Writes "open\n" to STATE_FILE once the sockets exist and "closed\n" once
 * they are gone; exits on SIGTERM. stdin/stdout/stderr are left as given
 * (tests pass /dev/null so that only the sockets are reasons). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1, got_term;

static void on_signal(int sig) {
    if (sig == SIGUSR1) got_usr1 = 1;
    if (sig == SIGTERM) got_term = 1;
}

static void write_state(const char* path, const char* text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) exit(2);
    close(fd);
    if (rename(tmp, path) < 0) exit(2);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s STATE_FILE\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int lis = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cli < 0 || lis < 0 || bind(lis, (struct sockaddr*)&addr, sizeof addr) < 0 ||
        listen(lis, 1) < 0 || getsockname(lis, (struct sockaddr*)&addr, &len) < 0)
        return 3;
    if (connect(cli, (struct sockaddr*)&addr, sizeof addr) < 0) return 3;
    int acc = accept(lis, NULL, NULL);
    char c;
    if (acc < 0 || shutdown(cli, SHUT_WR) < 0 || read(acc, &c, 1) != 0) return 3;
    write_state(argv[1], "open\n");

    while (!got_usr1 && !got_term) pause();
    close(acc);
    close(cli);
    close(lis);
    write_state(argv[1], "closed\n");
    while (!got_term) pause();
    return 0;
}
