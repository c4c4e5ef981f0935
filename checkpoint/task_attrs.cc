#include "checkpoint/task_attrs.h"

#include <unistd.h>

#include "common/io.h"
#include "common/strfmt.h"

namespace crfs {

std::string proc_path(pid_t pid, std::string_view name) {
    return strfmt("/proc/{}/{}", pid, name);
}

Result<std::string> read_proc(pid_t pid, std::string_view name, size_t max) {
    auto r = read_file(proc_path(pid, name), max);
    if (!r && r.error().code == ENOENT) return make_error(ESRCH, r.error().what);
    return r;
}

Result<std::string> read_link(const std::string& path) {
    char buf[4096];
    ssize_t n = readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return errno_error("readlink " + path);
    if (size_t(n) == sizeof buf) return make_error(ENAMETOOLONG, "readlink " + path + ": too long");
    return std::string(buf, size_t(n));
}

Result<int32_t> read_tracer_pid(pid_t pid) {
    auto s = read_task_status(pid);
    if (!s) return std::unexpected(s.error());
    return s->tracer_pid;
}

}  // namespace crfs
