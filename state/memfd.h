// memfd (issue 11, single task): one memfd object per inode the task holds by
// an fd or a mapping, saved once and restored once, then every fd and mapping
// made from it (docs/state.md "memfd").
//   detect   hugetlbfs memfds, memfds above image::kMaxMemfdBytes, memfds that
//            another process holds or maps, and (for a caller without
//            CAP_CHECKPOINT_RESTORE) memfds the task only maps are reasons;
//   dump     (frozen) name, size, seals, mode and the allocated extents
//            (SEEK_DATA/SEEK_HOLE), read through an fd of the task or, for a
//            memfd only mapped, /proc/<pid>/map_files;
//   restore  the parent (as the writer) makes each memfd with its contents and
//            mode and holds it above every target fd; stage 1 reopens it
//            through /proc/self/fd for each of the task's descriptions, the
//            blob maps it for each mapping (O_RDWR only where the mapping was
//            may-write) and adds the seals last, then closes it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_reader.h"
#include "common/image_writer.h"
#include "common/procfs.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/restorer_args.h"
#include "state/kind.h"

namespace crfs::state {

// "/memfd:NAME (deleted)": the link or maps path of a memfd.
bool is_memfd_path(std::string_view path);

// Detect (state/shmem.cc): shared anonymous memory whose pages show at two
// addresses of the task.
void shmem_alias_reasons(const std::vector<MapsEntry>& maps, Reasons& out);

// Detect: why memfd mapping `m` cannot be saved exactly, or nullopt.
std::optional<std::string> memfd_vma_reason(TaskView& t, const MapsEntry& m);

// Checkpoint, while the task is frozen: every memfd it holds or maps.
struct MemfdDump {
    struct Object {
        image::MemfdRecord rec{};
        std::string name;
        std::vector<std::pair<uint64_t, std::string>> extents;  // offset, bytes
    };
    std::vector<Object> objects;
};
// `fds`: its fds and their links, as its view read them while frozen (perf:
// /proc/<pid>/fd not listed again).
Result<MemfdDump> dump_memfds(pid_t pid, const std::vector<std::pair<int, std::string>>& fds,
                              const std::vector<MapsEntry>& maps);
void write_memfds(ImageWriter& w, const MemfdDump& d);

// Restore: the memfd records, the fds and mappings that name them, in range.
Status check_memfds(const DecodedImage& img);

// A memfd made for the restore, held at an fd above every target.
struct MemfdHeld {
    uint64_t ino = 0;
    UniqueFd fd;
    uint32_t seals = 0;
};
// As the writer: each memfd of the image with its contents (copied from
// `image_fd`) and mode; owned by the task's fsuid/fsgid when `chown`.
Result<std::vector<MemfdHeld>> plan_memfds(const DecodedImage& img, int image_fd, int min_fd,
                                           bool chown);
// "/proc/self/fd/N" of the memfd held for `ino` ("" if none: check_memfds excludes it).
std::string memfd_self_path(const std::vector<MemfdHeld>& held, uint64_t ino);
// The blob's list: seal each held memfd (after every mapping), then close it.
std::vector<crfs_ra_memfd> memfd_blob_list(const std::vector<MemfdHeld>& held);

}  // namespace crfs::state
