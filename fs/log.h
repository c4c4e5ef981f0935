// Daemon log: stderr in the foreground, syslog once daemonized.
#pragma once

#include <cstdarg>

namespace crfs::fs {

void log_init(bool foreground, bool debug);
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
bool log_debug_enabled();

}  // namespace crfs::fs
