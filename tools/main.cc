// crfs: the command for people and scripts around the crfs tree.
//   crfs dump PID|NAME [FILE]       checkpoint PID through ROOT/PID/image
//   crfs restore FILE [NAME|PID]    restore through a slot ROOT/NAME
//   crfs ps [--json] [PID]          who can be checkpointed now, and why not
//   crfs show [--json] FILE         what an image holds; crfs verify FILE
//   crfs checkpoint, restore-direct debugging, without the mount (debug.cc)
// ROOT is $CRFS_ROOT, else /crfs.
#include <signal.h>

#include <charconv>
#include <string>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "tools/commands.h"

namespace crfs::tool {

int parse_pid(const char* cmd, const std::string& arg) {
    int pid = 0;
    auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), pid);
    if (ec != std::errc() || end != arg.data() + arg.size() || pid <= 0) {
        fmt::print(stderr, "crfs {}: bad pid {}\n", cmd, arg);
        return 0;
    }
    return pid;
}

}  // namespace crfs::tool

int main(int argc, char** argv) {
    using namespace crfs::tool;
    signal(SIGPIPE, SIG_IGN);

    CLI::App app{
        "crfs: checkpoint/restart of Linux processes through the crfs tree\n"
        "(mounted at $CRFS_ROOT, else /crfs). See crfs(1) and crfs(5)."};
    app.set_version_flag("--version", "crfs " CRFS_VERSION);
    app.require_subcommand(1);

    DumpOptions dump;
    auto* c_dump = app.add_subcommand("dump", "checkpoint PID (and its descendants) into FILE");
    c_dump->add_option("PID", dump.pid, "the process, or the slot NAME of a restored one")
        ->required();
    c_dump->add_option("FILE", dump.file, "the image file (default, or -: stdout)");
    c_dump->add_flag("-q,--quiet", dump.quiet, "no progress line");

    RestoreOptions restore;
    auto* c_restore = app.add_subcommand(
        "restore", "restore the image in FILE through a slot; prints the new pid");
    c_restore->add_option("FILE", restore.file, "the image file, - for stdin")->required();
    c_restore->add_option("TARGET", restore.target,
                          "the slot NAME, or a PID to restore with that pid "
                          "(default: a fresh name crfs-<pid>)");
    c_restore->add_flag("-q,--quiet", restore.quiet, "no progress line");
    c_restore->add_flag("--shell-job", restore.shell_job,
                        "a job of an interactive shell: restore it on a new terminal and relay "
                        "ours to it until it ends (exits with its status)");

    PsOptions ps;
    auto* c_ps = app.add_subcommand("ps", "list processes and whether they can be checkpointed");
    c_ps->add_option("PID", ps.pid, "only this process and its descendants");
    c_ps->add_flag("--json", ps.json, "one JSON array, for scripts");

    ShowOptions show;
    auto* c_show = app.add_subcommand("show", "print what an image holds");
    c_show->add_option("FILE", show.file, "the image file, - for stdin")->required();
    c_show->add_flag("--json", show.json, "as JSON, for scripts");

    std::string verify;
    auto* c_verify = app.add_subcommand("verify", "check an image end to end");
    c_verify->add_option("FILE", verify, "the image file, - for stdin")->required();

    std::string ckpt;
    auto* c_ckpt =
        app.add_subcommand("checkpoint", "debugging: checkpoint PID to stdout without the mount");
    c_ckpt->add_option("PID", ckpt, "the process")->required();

    RestoreDirectOptions direct;
    auto* c_direct = app.add_subcommand(
        "restore-direct",
        "debugging: restore without the mount, print the new pid (exit status: the errno)");
    c_direct->add_option("FILE", direct.file, "the image file, - for stdin")->required();
    c_direct->add_option("--pid", direct.pid, "restore with this pid");
    c_direct->add_option("--writer", direct.writer, "restore as for this non-root writer")
        ->type_name("UID:GID");

    if (argc > 1 && argv[1][0] != '-') {
        try {
            app.get_subcommand(argv[1]);
        } catch (const CLI::OptionNotFound&) {
            fmt::print(stderr, "crfs: unknown command {} (see crfs --help)\n", argv[1]);
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; a usage error exits 2, as getopt tools do.
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (*c_dump) return cmd_dump(dump);
    if (*c_restore) return cmd_restore(restore);
    if (*c_ps) return cmd_ps(ps);
    if (*c_show) return cmd_show(show);
    if (*c_verify) return cmd_verify(verify);
    if (*c_ckpt) return cmd_checkpoint_direct(ckpt);
    if (*c_direct) return cmd_restore_direct(direct);
    return 2;
}
