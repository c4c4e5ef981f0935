/* Probes of a shell job's terminal (issue 10, state/tty.h). The probe makes
 * its own terminal: the process the harness starts leads a new session on a
 * new pseudo-terminal (its controlling terminal), and a "terminal" process
 * (double-forked, outside the probe's tree) holds the master and keeps what
 * is written to it in DIR/screen. Then either that session leader is the
 * probe ("leader"), or it stays as the shell and a child in a group of its
 * own is the probe, a foreground job ("job") or a background one
 * ("background", refused). The probe writes DIR/pid (the pid to checkpoint:
 * run_probes.py restores it with `crfs restore --shell-job`). After SIGTERM
 * it checks its terminal: the same termios and window size, its fds 0 and 1
 * one description on its controlling terminal, fd 3 /dev/tty of it with
 * O_NONBLOCK, its session the terminal's, its group in the foreground; then
 * it writes a line on the terminal. */
#include "probe.h"
#include "tty_term.h"

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static struct termios g_tio;

/* The job's own terminal settings, a window size and /dev/tty at fd 3. */
static void settings(void) {
    if (tcgetattr(0, &g_tio) < 0) die("tcgetattr");
    g_tio.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    g_tio.c_cc[VMIN] = 1;
    g_tio.c_cc[VTIME] = 0;
    g_tio.c_cc[VINTR] = 0x07;
    if (tcsetattr(0, TCSANOW, &g_tio) < 0 || tcgetattr(0, &g_tio) < 0) die("tcsetattr");
    struct winsize ws = {33, 101, 0, 0};
    if (ioctl(0, TIOCSWINSZ, &ws) < 0) die("TIOCSWINSZ");
    int t = open("/dev/tty", O_RDWR | O_NONBLOCK);
    if (t < 0 || dup2(t, 3) != 3) die("open /dev/tty");
    if (t != 3) close(t);
    write_pid();
}

static void leader_setup(void) {
    session_on_pty();
    settings();
}
static void job_setup(void) {
    job_of_shell(1, settings);
}
static void background_setup(void) {
    job_of_shell(0, settings);
}

/* Another pty's slave at fd 4 (its master the terminal's): not the session's. */
static void not_ctty_setup(void) {
    session_on_pty();
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) die("posix_openpt");
    int s = open(ptsname(m), O_RDWR | O_NOCTTY);
    if (s < 0 || dup2(s, 4) != 4) die("open the other slave");
    terminal(m);
    close(m);
    settings();
}

/* Bytes typed on the terminal the job has not read. */
static void input_setup(void) {
    g_input = "abc";
    session_on_pty();
    settings();
    for (int i = 0; i < 60000; ++i) {
        int n = 0;
        if (ioctl(0, FIONREAD, &n) == 0 && n >= 3) return;
        usleep(1000);
    }
    die("the typed bytes never arrived");
}

static unsigned encode(dev_t d) { /* the kernel's new_encode_dev */
    return (minor(d) & 0xff) | (major(d) << 8) | ((minor(d) & ~0xffu) << 12);
}

static void check(void) {
    struct stat st0, st1;
    if (fstat(0, &st0) < 0 || fstat(1, &st1) < 0 || !isatty(0) || !isatty(1))
        fail("fds 0 and 1 are not terminals");
    else if (st0.st_rdev != st1.st_rdev || syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 1) != 0)
        fail("fds 0 and 1 are not one description of one terminal");
    if ((fcntl(0, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != O_RDWR) fail("fd 0 flags");
    struct termios now;
    if (tcgetattr(0, &now) < 0) {
        fail("tcgetattr: %s", strerror(errno));
    } else if (now.c_iflag != g_tio.c_iflag || now.c_oflag != g_tio.c_oflag ||
               now.c_cflag != g_tio.c_cflag || now.c_lflag != g_tio.c_lflag ||
               memcmp(now.c_cc, g_tio.c_cc, sizeof now.c_cc) != 0) {
        fail("termios differs (lflag 0%o, was 0%o)", now.c_lflag, g_tio.c_lflag);
    }
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) < 0 || ws.ws_row != 33 || ws.ws_col != 101)
        fail("window size %ux%u", ws.ws_row, ws.ws_col);
    if (tcgetsid(0) != getsid(0))
        fail("the terminal is not the session's (%d, %d)", tcgetsid(0), getsid(0));
    if (tcgetpgrp(0) != getpgrp()) fail("foreground group %d, ours %d", tcgetpgrp(0), getpgrp());
    char link[64] = {};
    if (readlink("/proc/self/fd/3", link, sizeof link - 1) < 0 || strcmp(link, "/dev/tty") != 0)
        fail("fd 3 is %s", link);
    unsigned dev = 0;
    if (ioctl(3, TIOCGDEV, &dev) < 0 || dev != encode(st0.st_rdev))
        fail("fd 3: TIOCGDEV 0x%x", dev);
    if (!(fcntl(3, F_GETFL) & O_NONBLOCK)) fail("fd 3 lost O_NONBLOCK");
    const char* line = g_fail[0] ? "tty probe FAIL\r\n" : "tty probe done\r\n";
    if (write(1, line, strlen(line)) != (ssize_t)strlen(line)) fail("write on the terminal");
}

static void unused(void) {}

static const struct variant kVariants[] = {
    {"leader", leader_setup, check, NULL},          {"job", job_setup, check, NULL},
    {"background", background_setup, unused, NULL}, {"not_ctty", not_ctty_setup, unused, NULL},
    {"input", input_setup, unused, NULL},
};

PROBE_MAIN(kVariants)
