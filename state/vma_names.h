// names: the name PR_SET_VMA_ANON_NAME gives anonymous memory (issue 9). The
// checkpoint has it already: the VMA record's path is the maps text,
// `[anon:NAME]` for private anonymous memory and `[anon_shmem:NAME]` for
// shared; the restore sets NAME again on the same range once the mapping
// exists (restorer/blob/blob.c name_vmas). docs/state.md, "names".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/procfs.h"
#include "crfs/image_format.h"
#include "state/kind.h"

namespace crfs::state {

// ANON_VMA_NAME_MAX_LEN (80) without its NUL: the longest name the kernel sets.
inline constexpr size_t kMaxAnonVmaName = 79;

// The name in a VMA record's path of kind `kind` ("" when it has none): the
// text between `[anon:` (anonymous private) or `[anon_shmem:` (anonymous
// shared, single process or tree) and the final `]`.
std::string_view anon_vma_name(image::VmaKind kind, std::string_view path);

// Why an image's name cannot be set as it is written (empty, longer than the
// kernel takes, holding a NUL that would cut it short); nullopt when it can.
// The characters the kernel refuses are the kernel's EINVAL at restore.
std::optional<std::string> anon_vma_name_problem(image::VmaKind kind, std::string_view path);

// The detect half, per area of a task's maps: a name the restore cannot set
// again on the same object is a reason. A named mapping of a memfd (or of any
// unlinked shmem file but /dev/zero's) shows only `[anon_shmem:NAME]`, not the
// file: its object is found through map_files (readlink, as the caller).
void vma_name_reasons(TaskView& t, const MapsEntry& m, Reasons& out);

}  // namespace crfs::state
