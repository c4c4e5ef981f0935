// The process tree. Children are not checkpointed yet: a restored parent
// would find them gone (`wait` returns at once), so any child is a reason.
// Dump/restore: none yet (the process-tree issue).
#include <dirent.h>

#include <memory>

#include "state/kind.h"

namespace crfs::state {

Status detect_tree(TaskView& t, Reasons& out) {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(t.path("task").c_str()), ::closedir);
    if (!dir)
        return errno == ENOENT ? sys_error(ESRCH, t.path("task")) : errno_error(t.path("task"));
    std::string pids;
    while (dirent* de = ::readdir(dir.get())) {
        if (de->d_name[0] == '.') continue;
        auto text = t.read("task/" + std::string(de->d_name) + "/children");
        if (!text) continue;  // the thread exited meanwhile
        for (size_t i = 0; i < text->size();) {
            size_t j = text->find(' ', i);
            if (j == std::string::npos) j = text->size();
            std::string pid = text->substr(i, j - i);
            if (!pid.empty() && pid != "\n") pids += (pids.empty() ? "" : ", ") + pid;
            i = j + 1;
        }
    }
    if (!pids.empty())
        out.push_back("task: has child processes (pid " + pids + "); process trees" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
