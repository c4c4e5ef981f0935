// The crfs command's subcommands: main.cc parses the command line into these
// options and calls one of them; each returns the exit status.
#pragma once

#include <optional>
#include <string>

namespace crfs::tool {

struct ShowOptions {
    std::string file;  // or "-"
    bool json = false;
};
int cmd_show(const ShowOptions& o);
int cmd_verify(const std::string& file);

struct DumpOptions {
    std::string pid;   // or a slot name
    std::string file;  // empty: stdout
    bool quiet = false;
};
int cmd_dump(const DumpOptions& o);

struct RestoreOptions {
    std::string file;    // or "-"
    std::string target;  // slot name or pid; empty: a fresh name
    bool quiet = false;
    bool shell_job = false;  // on a new terminal, relayed (tools/shell_job.h)
};
int cmd_restore(const RestoreOptions& o);

struct PsOptions {
    std::optional<int> pid;  // one tree
    bool json = false;
};
int cmd_ps(const PsOptions& o);

// Debugging, without the mount (tools/debug.cc).
int cmd_checkpoint_direct(const std::string& pid);
struct RestoreDirectOptions {
    std::string file;
    long pid = 0;
    std::string writer;  // UID:GID
};
int cmd_restore_direct(const RestoreDirectOptions& o);

// Parses a positive pid; prints "crfs CMD: bad pid ARG" and returns 0 on error.
int parse_pid(const char* cmd, const std::string& arg);

}  // namespace crfs::tool
