// mlockall(MCL_FUTURE) (and MCL_ONFAULT): mm->def_flags, the flags every
// mapping made later gets. No /proc file shows it, so it is asked in the
// frozen task: a one-page PROT_NONE shared anonymous mapping made there (it
// merges with nothing and populates nothing) shows def_flags in its smaps
// VmFlags (`lo` VM_LOCKED, `lf` VM_LOCKONFAULT), and is unmapped again. The
// blob calls mlockall(flags) after every mapping of the image is made, so
// only the task's own later mappings are locked (record 129, version 5).
// Where the parasite runs, its own area, mapped in the task just before, shows
// def_flags as well and no probe page is made (checkpoint/parasite.h: two
// remote syscalls, four tracee stops fewer per process). There the parasite's
// batch also asks madvise(MADV_DONTNEED) of an untouched page of that area,
// which the kernel refuses (EINVAL) for a VM_LOCKED area only: where it
// succeeded, def_flags hold neither flag and smaps is not read (perf: an
// smaps read was ~60 us of each process's capture; the lock probe,
// checkpoint/parasite.h).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "common/image_reader.h"
#include "common/result.h"

namespace crfs::state {

// A syscall run in the frozen task: its raw result (negative errno).
using RemoteCall6 = std::function<Result<int64_t>(long nr, const std::array<uint64_t, 6>& args)>;

// Checkpoint: MCL_FUTURE | MCL_ONFAULT as the task set them, 0 for none.
Result<uint32_t> dump_mlockall(pid_t pid, const RemoteCall6& call);

// Checkpoint: the same, read from the smaps VmFlags of the area holding
// `addr`, which the frozen task mapped (so it got def_flags) and still holds.
// An area that merged with a neighbour has the neighbour's flags, the same.
// `dontneed`: the raw result of madvise(MADV_DONTNEED) the task made on a
// page of that area, if it made one: 0 (the area is not VM_LOCKED) answers
// 0 without smaps; anything else, or none, reads smaps.
Result<uint32_t> mlockall_of_area(pid_t pid, uint64_t addr,
                                  std::optional<int64_t> dontneed = std::nullopt);

// Restore: the record in range.
Status check_mlockall(const DecodedImage& img);

}  // namespace crfs::state
