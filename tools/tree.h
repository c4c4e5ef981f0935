// The crfs command's view of the mounted tree: where it is and the files it
// reads for people (reason, status). The tree stays the interface; the
// command only wraps it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <boost/filesystem/path.hpp>

#include "common/result.h"

namespace crfs::tool {

// $CRFS_ROOT, else /crfs (as libcrfs finds it).
boost::filesystem::path mount_root();

// Whether a crfs tree answers at ROOT; the error says what to do if not.
Status tree_mounted();

// ROOT/<name>/<file>.
boost::filesystem::path tree_path(const std::string& name, const char* file);

// The reason lines of a task (empty: it can be checkpointed).
Result<std::vector<std::string>> read_reasons(pid_t pid);

// A slot's status, without its trailing newline.
Result<std::string> read_status(const std::string& slot);

// Splits text into lines, dropping empty ones.
std::vector<std::string> lines_of(const std::string& text);

}  // namespace crfs::tool
