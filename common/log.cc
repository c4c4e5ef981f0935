#include "common/log.h"

#include <syslog.h>

#include <cstdio>
#include <string>

#include "common/escape.h"

namespace crfs {
namespace {

bool g_foreground = true;
bool g_debug = false;
const char* g_ident = "crfsd";

// Every line is escaped whole (issue 8, item 18): its arguments quote names
// and image fields that callers chose, and a log must not carry their
// control bytes to a terminal or split into forged lines.
void vlog(int prio, const char* fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    std::string text(n > 0 ? static_cast<size_t>(n) : 0, '\0');
    if (n > 0) std::vsnprintf(text.data(), text.size() + 1, fmt, again);
    va_end(again);
    std::string line = escape_nonprintable(text);
    if (g_foreground)
        std::fprintf(stderr, "%s: %s\n", g_ident, line.c_str());
    else
        ::syslog(prio, "%s", line.c_str());
}

}  // namespace

void log_init(bool foreground, bool debug, const char* ident) {
    g_foreground = foreground;
    g_debug = debug;
    g_ident = ident;
    if (!foreground) ::openlog(ident, LOG_PID, LOG_DAEMON);
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

}  // namespace crfs
