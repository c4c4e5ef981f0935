// crfs dump PID [FILE]: reads ROOT/PID/image (which checkpoints PID and its
// descendants) into FILE or stdout.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/core.h>

#include "common/io.h"
#include "tools/commands.h"
#include "tools/copy.h"
#include "tools/escape.h"
#include "tools/procs.h"
#include "tools/tree.h"

namespace crfs::tool {
namespace {

// EBUSY means "has reasons": print them, as the user would have to cat them.
void explain_busy(pid_t pid, const Error& err) {
    auto reasons = read_reasons(pid);
    if (!reasons || reasons->empty()) {
        fmt::print(stderr, "crfs dump: {}\n", err.what);
        return;
    }
    fmt::print(stderr, "crfs dump: process {} cannot be checkpointed now:\n", pid);
    for (const auto& r : *reasons) fmt::print(stderr, "  {}\n", printable(r));
}

// ENOENT on ROOT/PID/image: no such process, or no crfs mounted at ROOT.
void explain_missing(pid_t pid, const Error& err) {
    if (auto mounted = tree_mounted(); !mounted)
        fmt::print(stderr, "crfs dump: {}\n", mounted.error().what);
    else
        fmt::print(stderr, "crfs dump: no process {} ({})\n", pid, err.what);
}

void explain(pid_t pid, const Error& err) {
    if (err.code == EBUSY)
        explain_busy(pid, err);
    else if (err.code == ENOENT || err.code == ESRCH)
        explain_missing(pid, err);
    else
        fmt::print(stderr, "crfs dump: {}\n", err.what);
}

}  // namespace

int cmd_dump(const DumpOptions& o) {
    pid_t pid = 0;
    if (o.pid.find_first_not_of("0123456789") == std::string::npos) {
        pid = parse_pid("dump", o.pid);
        if (!pid) return 2;
    } else {
        // A restore slot is a view of its restored task.
        auto slot_pid = read_file(tree_path(o.pid, "pid").string());
        if (!slot_pid && slot_pid.error().code == ENOENT) {
            fmt::print(stderr, "crfs dump: no slot {} in {}\n", printable(o.pid),
                       mount_root().string());
            return 1;
        }
        if (!slot_pid || slot_pid->empty()) {
            fmt::print(stderr, "crfs dump: {}\n",
                       slot_pid ? "slot " + printable(o.pid) + " holds no restored task"
                                : slot_pid.error().what);
            return 1;
        }
        pid = parse_pid("dump", slot_pid->substr(0, slot_pid->find('\n')));
        if (!pid) return 1;
    }
    bool to_stdout = o.file.empty() || o.file == "-";
    if (to_stdout && ::isatty(1)) {
        fmt::print(stderr, "crfs dump: stdout is a terminal; give a FILE or redirect stdout\n");
        return 2;
    }
    std::string image = tree_path(std::to_string(pid), "image").string();
    auto in = open_fd(image, O_RDONLY);
    if (!in) {
        explain(pid, in.error());
        return 1;
    }
    UniqueFd out_owned;
    int out = 1;
    if (!to_stdout) {
        // An image holds the task's memory: readable by its owner only.
        auto f = open_fd(o.file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (!f) {
            fmt::print(stderr, "crfs dump: {}\n", f.error().what);
            return 1;
        }
        out_owned = std::move(*f);
        out = out_owned.get();
    }
    // The image is about the size of the resident memory (zero pages elided,
    // clean file pages re-mapped): a guess, shown as one.
    auto info = process_info(pid);
    Progress progress(progress_wanted(o.quiet), info ? info->rss_bytes : 0, true);
    auto copied = copy_stream(in->get(), image, out, to_stdout ? "stdout" : o.file, progress);
    if (!copied) {
        progress.abort();
        explain(pid, copied.error());
        if (!to_stdout) ::unlink(o.file.c_str());
        return 1;
    }
    if (!to_stdout && ::close(out_owned.release()) < 0) {
        fmt::print(stderr, "crfs dump: close {}: {}\n", o.file, std::strerror(errno));
        ::unlink(o.file.c_str());
        return 1;
    }
    progress.done();
    return 0;
}

}  // namespace crfs::tool
