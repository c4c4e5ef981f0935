// Open file descriptors of a frozen task: the fd table's dispatcher. Each fd
// gets the common record (path, flags, offset, mode, dev/inode/size/mtime,
// close-on-exec) and its kind's dump: files (regular, deleted, device:
// state/file_kind.h), kernel objects (state/kobj.h), pipes, unix and inet
// sockets (state/pipe.h, unix_*.h, inet.h). Fds that share one open
// file description are grouped (state/fds.h description_groups): a later fd of
// a group repeats the lowest fd's record with same_as naming it, and no content.
// Any other kind is an EBUSY error naming the fd: `reason` reports it before a
// checkpoint is tried.
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/inet.h"

namespace crfs {

namespace state {
class TaskView;  // state/kind.h
}

struct TaskFd {
    image::FdRecord rec{};
    std::string path;
    std::string content;  // deleted files only
    // Records of the fd's kind written after every fd record ({type, payload}):
    // a pipe's record with its first end, kernel objects' (state/kobj.h) with theirs.
    std::vector<std::pair<image::RecordType, std::string>> records;
    std::optional<state::InetDump> inet;  // TCP and UDP sockets (state/inet.h)
};

// FdInfo and parse_fdinfo: common/procfs.h.

// Upper bound on the content of one deleted file copied into an image.
inline constexpr uint64_t kMaxDeletedFileBytes = 1ull << 30;

// The fds of the task's view (state/kind.h: the ones its detect read, while
// frozen; description groups told with the view's kcmp answers);
// `task.image_pids()`: the processes of the image (unix connections between them).
Result<std::vector<TaskFd>> read_fds(state::TaskView& task);

}  // namespace crfs
