#include "fs/log.h"

#include <syslog.h>

#include <cstdio>

namespace crfs::fs {
namespace {

bool g_foreground = true;
bool g_debug = false;

void vlog(int prio, const char* fmt, va_list ap) {
    if (g_foreground) {
        std::fputs("crfsd: ", stderr);
        std::vfprintf(stderr, fmt, ap);
        std::fputc('\n', stderr);
    } else {
        ::vsyslog(prio, fmt, ap);
    }
}

}  // namespace

void log_init(bool foreground, bool debug) {
    g_foreground = foreground;
    g_debug = debug;
    if (!foreground) ::openlog("crfsd", LOG_PID, LOG_DAEMON);
}

bool log_debug_enabled() {
    return g_debug;
}

#define CRFS_LOG_FN(name, prio, cond) \
    void name(const char* fmt, ...) { \
        if (!(cond)) return;          \
        va_list ap;                   \
        va_start(ap, fmt);            \
        vlog(prio, fmt, ap);          \
        va_end(ap);                   \
    }
CRFS_LOG_FN(log_info, LOG_INFO, true)
CRFS_LOG_FN(log_error, LOG_ERR, true)
CRFS_LOG_FN(log_debug, LOG_DEBUG, g_debug)
#undef CRFS_LOG_FN

}  // namespace crfs::fs
