// Anonymous pipes whose ends are all fds of the task: detect, dump and
// restore halves of one kind (docs/state.md "pipe").
//   detect  a pipe is saved when the task holds both its ends, no other process
//           the caller can see holds it, its flags are O_NONBLOCK/O_DIRECT only
//           and it is at most image::kMaxPipeBytes large;
//   dump    the buffered bytes are copied with tee(2) into a spare pipe while the
//           task is frozen (the pipe keeps them), buffer by buffer;
//   restore stage 1 makes the pipe, sizes it, writes the buffers back and puts
//           each end at its fds with their flags.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs::state {

struct FdContext;

bool is_pipe(const FdView& f);
std::optional<std::string> pipe_reason(TaskView& t, const FdView& f, FdContext& ctx);
// A FIFO with a path (reopened by it): a pipe whose path must still name it.
bool is_fifo(const FdView& f);
std::optional<std::string> fifo_reason(TaskView& t, const FdView& f, FdContext& ctx);

// The pipe record payload of pipe or FIFO `ino` (`link`: the fd link of its
// ends), read through /proc/<pid>/fd/<fd> (one of its ends) while the task is
// frozen; the pipe keeps its bytes.
Result<std::string> dump_pipe(pid_t pid, int fd, uint64_t ino, const std::string& link);

// Restore: every pipe record in range and matched with the fds of its ends;
// FIFOs an earlier process of the tree restores (kFifoJoin) in range.
Status check_pipes(const DecodedImage& img);

// One pipe to make in stage 1. The child writes the fds it makes into the
// mutable fields: it runs in its own copy of the parent's memory.
struct PipePlan {
    uint64_t ino = 0, dev = 0;  // dev: a FIFO's
    std::string fifo;           // a FIFO: its path, reopened as the writer
    int size = 0;
    bool packet = false;
    std::vector<uint32_t> lens;     // the buffers' lengths
    mutable std::string data;       // stage 1 drains its spare pipe into it (the same bytes)
    mutable int end[2] = {-1, -1};  // read, write: held at fds >= min_fd until every fd is in place
    mutable bool given[2] = {false, false};  // the end's own description is at a target already
};

// The pipes of the image, their bytes read from the image (as the writer).
Result<std::vector<PipePlan>> plan_pipes(const DecodedImage& img, int image_fd);

// Stage 1, syscalls only: puts an end of `p` at `target` with `open_flags`
// (O_RDONLY or O_WRONLY, O_NONBLOCK, O_DIRECT), making the pipe first if
// needed, above `min_fd`. Returns 0 or an errno.
int child_pipe_fd(const PipePlan& p, int target, int open_flags, bool cloexec, int min_fd);
// fifo (docs/trees.md "FIFOs between members"): opens the FIFO at `path`
// (which must be FIFO dev:ino) with `open_flags`' access mode, O_NONBLOCK,
// puts it at `target` and gives it `open_flags`' O_NONBLOCK/O_DIRECT. The
// caller holds a description of the FIFO already, so an O_WRONLY open finds a
// reader. Returns 0 or an errno.
int child_fifo_join(const char* path, uint64_t dev, uint64_t ino, int target, int open_flags,
                    bool cloexec);
// Closes the held ends once every fd is in place.
void child_close_pipes(const std::vector<PipePlan>& pipes);

}  // namespace crfs::state
