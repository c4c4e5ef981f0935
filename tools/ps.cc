// crfs ps [PID]: every process (or PID's tree) and whether it can be
// checkpointed now, from ROOT/<pid>/reason.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "tools/commands.h"
#include "tools/escape.h"
#include "tools/json.h"
#include "tools/procs.h"
#include "tools/tree.h"

namespace crfs::tool {
namespace {

struct Row {
    ProcInfo proc;
    std::vector<std::string> reasons;
    std::string error;  // reason unreadable (no rights, or the task is gone)
};

Json to_json(const Row& r) {
    Json j;
    j["pid"] = r.proc.pid;
    j["ppid"] = r.proc.ppid;
    put_text(j, "user", r.proc.user);
    put_text(j, "command", r.proc.command);
    if (r.error.empty())
        j["checkpointable"] = r.reasons.empty();
    else
        j["checkpointable"] = nullptr;
    auto reasons = Json::array();
    for (const auto& s : r.reasons) reasons.push_back(s);
    j["reasons"] = std::move(reasons);
    if (!r.error.empty()) j["error"] = r.error;
    return j;
}

// Colour on a terminal, unless NO_COLOR (no-color.org) is set.
bool colour() {
    const char* no = std::getenv("NO_COLOR");
    return ::isatty(1) && !(no && *no);
}

void print_table(const std::vector<Row>& rows) {
    bool c = colour();
    fmt::print("{:>7} {:<10} {:<32} {}\n", "PID", "USER", "COMMAND", "CHECKPOINTABLE");
    for (const auto& r : rows) {
        std::string cmd = printable(r.proc.command);
        // One line per process; --json has the whole command line.
        if (cmd.size() > 32) {
            size_t cut = 31;
            while (cut > 0 && (static_cast<unsigned char>(cmd[cut]) & 0xc0) == 0x80) --cut;
            cmd = cmd.substr(0, cut) + "+";  // cut between characters, not inside one
        }
        std::string state;
        const char* on = "";
        if (!r.error.empty())
            state = "? " + r.error, on = "\033[33m";
        else if (r.reasons.empty())
            state = "yes", on = "\033[32m";
        else
            state = printable(r.reasons.front()), on = "\033[31m";
        fmt::print("{:>7} {:<10} {:<32} {}{}{}\n", r.proc.pid, printable(r.proc.user), cmd,
                   c ? on : "", state, c ? "\033[0m" : "");
    }
}

}  // namespace

int cmd_ps(const PsOptions& o) {
    auto all = list_processes();
    if (!all) {
        fmt::print(stderr, "crfs ps: {}\n", all.error().what);
        return 1;
    }
    if (auto mounted = tree_mounted(); !mounted) {
        fmt::print(stderr, "crfs ps: {}\n", mounted.error().what);
        return 1;
    }
    std::vector<ProcInfo> procs = *all;
    if (o.pid) {
        procs = process_tree(*all, *o.pid);
        if (procs.empty()) {
            fmt::print(stderr, "crfs ps: no process {}\n", *o.pid);
            return 1;
        }
    }
    std::vector<Row> rows;
    for (auto& p : procs) {
        Row r{std::move(p), {}, {}};
        auto reasons = read_reasons(r.proc.pid);
        if (reasons) {
            r.reasons = std::move(*reasons);
        } else if (reasons.error().code == ENOENT || reasons.error().code == ESRCH) {
            if (::kill(r.proc.pid, 0) < 0 && errno == ESRCH) continue;  // exited meanwhile
            r.error = std::strerror(reasons.error().code);
        } else {
            r.error = std::strerror(reasons.error().code);
        }
        rows.push_back(std::move(r));
    }
    if (o.json) {
        auto j = Json::array();
        for (const auto& r : rows) j.push_back(to_json(r));
        fmt::print("{}\n", dump_json(j));
    } else {
        print_table(rows);
    }
    return 0;
}

}  // namespace crfs::tool
