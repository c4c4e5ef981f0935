// Shared anonymous memory mapped at more than one place in the task (issue
// 11): the memory kind restores each shared anonymous VMA as a fresh
// MAP_SHARED|MAP_ANONYMOUS mapping with its own content, which is exact while
// no page of the object shows at two addresses. Two VMAs of one shmem object
// (same inode in maps) whose file ranges overlap (an mremap with old size 0,
// a second mmap of /dev/zero's object through map_files, ...) would come back
// as two objects: a write through one would no longer show through the other.
// That is a reason until such aliases are rebuilt as one object. VMAs of one
// object over disjoint ranges (an mprotect split) hold different pages and are
// restored exactly.
#include <algorithm>
#include <map>

#include "common/strfmt.h"
#include "state/kind.h"
#include "state/memory.h"

namespace crfs::state {

void shmem_alias_reasons(const std::vector<MapsEntry>& maps, Reasons& out) {
    std::map<std::pair<uint64_t, uint64_t>, std::vector<const MapsEntry*>> by_object;
    for (const MapsEntry& m : maps)
        if (m.ino != 0 && classify_vma(m) == image::VmaKind::kAnonShared &&
            !m.path.starts_with("/SYSV"))  // System V: the memory kind's own reason
            by_object[{(uint64_t(m.dev_major) << 32) | m.dev_minor, m.ino}].push_back(&m);
    for (auto& [key, vmas] : by_object) {
        std::sort(vmas.begin(), vmas.end(),
                  [](const MapsEntry* a, const MapsEntry* b) { return a->pgoff < b->pgoff; });
        for (size_t i = 1; i < vmas.size(); ++i) {
            const MapsEntry& a = *vmas[i - 1];
            const MapsEntry& b = *vmas[i];
            if (b.pgoff < a.pgoff + (a.end - a.start) / 4096)
                out.push_back(
                    strfmt("memory: shared anonymous memory {:x}-{:x} shows pages "
                           "of {:x}-{:x} (one object mapped twice in the task);"
                           " such aliases{}",
                           b.start, b.end, a.start, a.end, kNotYet));
        }
    }
}

}  // namespace crfs::state
