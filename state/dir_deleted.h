// A removed directory made again (state/dir_deleted.cc): the one making that
// fd kind 39 (a removed directory held open) and a removed cwd (state/fs.cc)
// share, with the rules both keep (docs/state.md "dir_deleted", "fs").
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "state/kind.h"

namespace crfs::state {

// What the task's removed directory was, from its fd record or its
// deleted-cwd record.
struct RemovedDir {
    std::string path;  // where it lived: "/a/b" (made again in "/a")
    uint32_t mode = 0;
    int flags = 0;  // open flags of the description made
    uint64_t pos = 0;
    int64_t mtime_sec = 0, mtime_nsec = 0;
    std::string what;  // "fd 3", "cwd": the start of every error
    // deltwice: (flags, offset) of later descriptions opened and seeked with it,
    // before the rmdir (a removed ext4 directory takes no getdents cookie).
    std::vector<std::pair<int, uint64_t>> later = {};
};

// Why the removed directory `name` (`st`: its stat) of task `t` cannot be made
// again exactly ("...; such a directory not supported yet"), or nullopt: owned
// by another than the task's fsuid:fsgid, its parent gone or on another file
// system now.
std::optional<std::string> removed_dir_reason(TaskView& t, const std::string& name,
                                              const struct stat& st);

// An absolute path of at least one name, none of them empty, "." or "..".
bool plain_path(const std::string& p);

// The image's mode of a removed directory, or why not (hostile images).
std::optional<std::string> bad_removed_dir_mode(uint32_t mode);

// Made again in its old parent, as the caller's credentials allow (the
// writer's: restorer/writer.h as_writer): opened with its flags, seeked,
// removed (nlink 0, checked), given `creds`' fsuid:fsgid, its mode and mtime.
// Nothing is left in the parent on failure. `later`: d.later's descriptions, in order.
Result<UniqueFd> make_removed_dir(const RemovedDir& d, const image::CredsRecord& creds,
                                  std::vector<UniqueFd>* later = nullptr);

}  // namespace crfs::state
