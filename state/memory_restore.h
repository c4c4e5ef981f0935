// The memory kind's restore half (state/memory.cc detects, state/memory_dump.h
// dumps): memory of the task to restore in the form the blob takes: which
// ranges to unmap, where this kernel's vdso/vvar go, every VMA to map and
// every stored page run (by file offset in the image, read with pread by the
// blob), and where the blob's own area lies (a hole of the image layout). The
// blob (restorer/blob/blob.c) maps, fills and protects them (`map_vmas`,
// `fill_pages`, `protect_vmas`), then advises (`advise_vmas`) and names
// (`name_vmas`) them. And the check of a hostile image's VMA records.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/restorer_args.h"
#include "state/memfd.h"

namespace crfs {

// --- plan (restore) ----------------------------------------------------------

// A kernel-provided mapping of this process: [vdso], [vvar], [vvar_vclock].
struct SpecialMapping {
    std::string name;
    uint64_t start = 0, end = 0;
};

// This process's special mappings (a task cloned from it has the same ones).
Result<std::vector<SpecialMapping>> current_specials();

// Where this kernel's specials go for `img`. Same layout as the image: each
// to its image address. A different layout (other kernel): the vdso code must
// land at the image's vdso address (the program holds pointers into it), and
// the data pages keep this kernel's offsets from it (the vdso code addresses
// them relative to itself); refused with ENOTSUP where that cannot fit.
// `moves[i].tmp` is left 0 (set once the blob area is known).
struct SpecialsPlan {
    std::vector<crfs_ra_move> moves;
    std::vector<crfs_ra_range> drop;  // current specials the image has no place for
    uint64_t tmp_len = 0;             // scratch room the two-step move needs
};
Result<SpecialsPlan> plan_specials(const DecodedImage& img, const std::vector<SpecialMapping>& cur);

// An area of `len` bytes (followed by `tmp_len` scratch bytes) that no image
// VMA, image special or current special uses, mapped read-write in this
// process (MAP_FIXED_NOREPLACE, so no other thread's mapping is hit).
// `taken`: [start, end) ranges this process mapped for other areas, left out
// from the start (a tree's earlier processes' areas, all still mapped: each
// was tried and refused once more for each process before, ~1.5 us a try).
struct BlobArea {
    uint64_t start = 0, len = 0, tmp = 0;
};
Result<BlobArea> map_blob_area(const DecodedImage& img, const std::vector<SpecialMapping>& cur,
                               uint64_t len, uint64_t tmp_len,
                               const std::vector<std::pair<uint64_t, uint64_t>>& taken = {});

struct MemoryPlan {
    std::vector<crfs_ra_range> unmap;
    std::vector<crfs_ra_vma> vmas;   // path fields: index into paths until placed
    std::vector<std::string> paths;  // per VMA ("" for anonymous)
    std::vector<std::string> names;  // names: per VMA, PR_SET_VMA_ANON_NAME ("" for none)
    std::vector<crfs_ra_pages> pages;
};
MemoryPlan plan_memory(const DecodedImage& img, const BlobArea& area,
                       const std::vector<SpecialMapping>& cur, const SpecialsPlan& sp,
                       const std::vector<state::MemfdHeld>& memfds);

// --- check (a hostile image, before anything is created) ---------------------

// Every VMA record in range (restorer/check_fields.cc `check_fields` calls
// it): kind, flags, page-aligned user addresses in order and disjoint, file
// offset, path, anonymous name, content fingerprint. EINVAL naming the VMA.
Status check_vmas(const DecodedImage& img);

// The image VMA holding `addr` (or ending at it, if `end_inclusive`), or null.
const VmaEntry* vma_at(const DecodedImage& img, uint64_t addr, bool end_inclusive);

}  // namespace crfs
