// The one log of every crfs library and program: stderr in the foreground,
// syslog (the journal) once daemonized. crfsd sets it up; crfs-ckpt workers
// follow the daemon (CRFS_LOG_SYSLOG in their environment); the crfs command
// keeps the default, stderr. Every line is escaped (common/escape.h).
#pragma once

#include <cstdarg>

namespace crfs {

// Set in a daemonized crfsd's environment, so that the programs it starts
// (crfs-ckpt) log to syslog too.
inline constexpr const char* kLogToSyslogEnv = "CRFS_LOG_SYSLOG";

// `ident` prefixes each line on stderr and names the program in syslog.
void log_init(bool foreground, bool debug, const char* ident = "crfsd");
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
bool log_debug_enabled();

}  // namespace crfs
