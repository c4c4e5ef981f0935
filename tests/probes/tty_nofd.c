/* A shell job with a controlling terminal and no fd on it (issue 10,
 * state/tty.h, docs/trees.md "Shell jobs"): `prog </dev/null >/dev/null &`
 * of an interactive shell, or a job that closed its terminal fds. The probe
 * makes its own terminal (tty_term.h), sets its termios and window size
 * through fd 0, then puts /dev/null at fds 0 and 1: no fd on the terminal,
 * which stays the session's. Either the probe leads that session
 * ("leader_nofd"), or a shell leads it and the probe is a foreground job
 * ("job_nofd") or a background one ("background_nofd", refused as a
 * background job with fds is). Restored by `crfs restore --shell-job`:
 * after SIGTERM it opens /dev/tty, checks that terminal (its session's,
 * the settings it had, its group in the foreground), writes a line on it. */
#include "probe.h"
#include "tty_term.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

static struct termios g_tio;

/* Settings through fd 0, then fds 0 and 1 on /dev/null. */
static void settings_then_away(void) {
    if (tcgetattr(0, &g_tio) < 0) die("tcgetattr");
    g_tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE);
    g_tio.c_cc[VEOF] = 0x05;
    if (tcsetattr(0, TCSANOW, &g_tio) < 0 || tcgetattr(0, &g_tio) < 0) die("tcsetattr");
    struct winsize ws = {41, 77, 0, 0};
    if (ioctl(0, TIOCSWINSZ, &ws) < 0) die("TIOCSWINSZ");
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) != 0 || dup2(null, 1) != 1) die("/dev/null");
    close(null);
    write_pid();
}

static void leader_setup(void) {
    g_keep_slave = 1; /* else the terminal ends at EIO and hangs the probe up */
    session_on_pty();
    settings_then_away();
}

static void job_setup(void) {
    job_of_shell(1, settings_then_away);
}
static void background_setup(void) {
    job_of_shell(0, settings_then_away);
}

static void check(void) {
    struct stat st;
    if (fstat(0, &st) < 0 || isatty(0) || isatty(1)) fail("fds 0 and 1 are terminals");
    int t = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (t < 0) {
        fail("no controlling terminal: /dev/tty: %s", strerror(errno));
        return;
    }
    struct termios now;
    if (tcgetattr(t, &now) < 0)
        fail("tcgetattr: %s", strerror(errno));
    else if (now.c_iflag != g_tio.c_iflag || now.c_oflag != g_tio.c_oflag ||
             now.c_cflag != g_tio.c_cflag || now.c_lflag != g_tio.c_lflag ||
             memcmp(now.c_cc, g_tio.c_cc, sizeof now.c_cc) != 0)
        fail("termios differs (lflag 0%o, was 0%o)", now.c_lflag, g_tio.c_lflag);
    struct winsize ws;
    if (ioctl(t, TIOCGWINSZ, &ws) < 0 || ws.ws_row != 41 || ws.ws_col != 77)
        fail("window size %ux%u", ws.ws_row, ws.ws_col);
    if (tcgetsid(t) != getsid(0))
        fail("the terminal is not the session's (%d, %d)", tcgetsid(t), getsid(0));
    if (tcgetpgrp(t) != getpgrp()) fail("foreground group %d, ours %d", tcgetpgrp(t), getpgrp());
    const char* line = g_fail[0] ? "tty probe FAIL\r\n" : "tty probe done\r\n";
    if (write(t, line, strlen(line)) != (ssize_t)strlen(line)) fail("write on the terminal");
    close(t);
}

static void unused(void) {}

static const struct variant kVariants[] = {
    {"leader_nofd", leader_setup, check, NULL},
    {"job_nofd", job_setup, check, NULL},
    {"background_nofd", background_setup, unused, NULL},
};

PROBE_MAIN(kVariants)
