// crfs restore FILE [NAME|PID]: makes the slot ROOT/NAME, writes the image
// into it (closing it restores), prints the restored pid. On failure prints
// the slot's status words and removes the slot. --shell-job: on a new
// terminal, relayed until the job ends (tools/shell_job.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <fmt/core.h>
#include <boost/filesystem/operations.hpp>

#include "common/escape.h"
#include "common/io.h"
#include "tools/commands.h"
#include "tools/copy.h"
#include "tools/shell_job.h"
#include "tools/tree.h"

namespace crfs::tool {
namespace {

namespace bfs = boost::filesystem;

// Makes the slot. Without a name: crfs-<our pid>[-N], the first that is free.
Result<std::string> make_slot(const std::string& want) {
    for (int n = 0; n < 100; ++n) {
        std::string name = want;
        if (name.empty())
            name = fmt::format("crfs-{}{}", ::getpid(), n ? fmt::format("-{}", n) : "");
        bfs::path dir = mount_root() / name;
        if (::mkdir(dir.c_str(), 0755) == 0) return name;
        bool numeric = !want.empty() && want.find_first_not_of("0123456789") == std::string::npos;
        if (errno == EEXIST && numeric)
            return make_error(EEXIST, "pid " + want + " is in use (mkdir " + dir.string() + ": " +
                                          std::strerror(EEXIST) + ")");
        if (errno != EEXIST || !want.empty()) return errno_error("mkdir " + dir.string());
    }
    return make_error(EEXIST, "no free slot name crfs-" + std::to_string(::getpid()) + "-N");
}

// What went wrong, in the slot's words when it has them, then the errno.
void report_failure(const std::string& slot, const Error& err) {
    auto status = read_status(slot);
    if (status && status->starts_with("error: "))
        fmt::print(stderr, "crfs restore: {} ({})\n", escape_nonprintable(status->substr(7)),
                   std::strerror(err.code));
    else
        fmt::print(stderr, "crfs restore: {}\n", err.what);
}

Status write_image(int in, const std::string& in_name, const std::string& slot,
                   Progress& progress) {
    std::string path = tree_path(slot, "image").string();
    auto out = open_fd(path, O_WRONLY);
    if (!out) return std::unexpected(out.error());
    auto copied = copy_stream(in, in_name, out->get(), path, progress);
    // Closing restores: its errno is the restore's (a copy error stands first).
    int closed = ::close(out->release());
    if (!copied) return copied;
    if (closed < 0) return errno_error("restore " + path);
    return {};
}

// A failed restore: the slot's words, the slot removed.
int fail_restore(const std::string& slot, const Error& err, Progress& progress) {
    progress.abort();
    report_failure(slot, err);
    boost::system::error_code ec;
    bfs::remove(mount_root() / slot, ec);
    if (ec) fmt::print(stderr, "crfs restore: rmdir {}: {}\n", slot, ec.message());
    return 1;
}

}  // namespace

int cmd_restore(const RestoreOptions& o) {
    UniqueFd in_owned;
    int in = 0;
    uint64_t size = 0;
    if (o.file != "-") {
        auto f = open_fd(o.file, O_RDONLY);
        if (!f) {
            fmt::print(stderr, "crfs restore: {}\n", f.error().what);
            return 1;
        }
        in_owned = std::move(*f);
        in = in_owned.get();
    } else if (o.shell_job) {
        fmt::print(stderr,
                   "crfs restore: --shell-job reads the image from a FILE (its standard "
                   "input becomes the job's terminal)\n");
        return 2;
    } else if (::isatty(0)) {
        fmt::print(stderr, "crfs restore: stdin is a terminal; give a FILE or redirect stdin\n");
        return 2;
    }
    struct stat st {};
    if (::fstat(in, &st) == 0 && S_ISREG(st.st_mode)) size = uint64_t(st.st_size);

    auto slot = make_slot(o.target);
    if (!slot) {
        fmt::print(stderr, "crfs restore: {}\n", slot.error().what);
        return 1;
    }
    Progress progress(progress_wanted(o.quiet), size, false);
    auto write = [&] {
        auto ok = write_image(in, o.file == "-" ? "stdin" : o.file, *slot, progress);
        if (!ok) return fail_restore(*slot, ok.error(), progress);
        progress.done();
        return 0;
    };
    std::optional<ShellPty> pty;
    if (o.shell_job) {
        auto p = open_shell_pty();
        if (!p) return fail_restore(*slot, p.error(), progress);
        pty = std::move(*p);
        auto code = write_as_terminal(*pty, write);  // the daemon takes its stdin: the new slave
        if (!code) return fail_restore(*slot, code.error(), progress);
        if (*code) return 1;
    } else if (write()) {
        return 1;
    }
    auto pid = read_file(tree_path(*slot, "pid").string());
    if (!pid) {
        fmt::print(stderr, "crfs restore: {}\n", pid.error().what);
        return 1;
    }
    if (pty) {
        if (!o.quiet)
            fmt::print(stderr, "crfs restore: job {} on {} (restored into {})\r\n",
                       lines_of(*pid).empty() ? "?" : lines_of(*pid).front(), pty->name,
                       (mount_root() / *slot).string());
        return relay_shell_job(
            *pty, *slot, lines_of(*pid).empty() ? 0 : std::atoi(lines_of(*pid).front().c_str()));
    }
    if (progress_wanted(o.quiet))
        fmt::print(stderr, "restored into {}\n", (mount_root() / *slot).string());
    fmt::print("{}", *pid);
    return 0;
}

}  // namespace crfs::tool
