// The task's fs context: cwd and umask are captured (state/task_attrs.cc)
// and restored in stage 1 (state/task_attrs.cc). A deleted cwd cannot be
// reopened by path, and a chrooted task is refused by the restorer
// (restorer/validate.cc): both are reasons here.
#include "common/io.h"
#include "state/kind.h"

namespace crfs::state {
namespace {

Result<std::string> link_of(TaskView& t, const char* name) {
    char buf[4096];
    ssize_t n = ::readlink(t.path(name).c_str(), buf, sizeof buf);
    if (n < 0) return errno == ENOENT ? sys_error(ESRCH, t.path(name)) : errno_error(t.path(name));
    return std::string(buf, size_t(n));
}

}  // namespace

Status detect_fs(TaskView& t, Reasons& out) {
    auto cwd = link_of(t, "cwd");
    if (!cwd) return std::unexpected(cwd.error());
    if (cwd->ends_with(" (deleted)") || !cwd->starts_with("/"))
        out.push_back("fs: cwd " + *cwd + " was deleted; a deleted cwd" + std::string(kNotYet));
    auto root = link_of(t, "root");
    if (!root) return std::unexpected(root.error());
    if (*root != "/")
        out.push_back("fs: root is " + *root + "; chrooted tasks" + std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
