#include "state/tree_shmem_dump.h"

#include <algorithm>
#include <set>

#include "state/tree_shmem.h"

namespace crfs {

Status share_shmem_between_members(std::span<const pid_t> pids, std::span<MemoryDump* const> mems) {
    std::vector<const std::vector<MapsEntry>*> maps;
    for (MemoryDump* m : mems) maps.push_back(&m->maps);
    state::Reasons why;
    auto shares = state::classify_shmem(pids, maps, why);
    if (!why.empty()) return make_error(EBUSY, why.front());
    for (const state::ShmemShare& s : shares) {
        auto mark = [&](size_t i, image::VmaKind kind) {
            MemoryDump& d = *mems[i];
            for (const MapsEntry& m : d.maps) {
                state::ShmemKey k;
                if (!state::tree_shmem_key(m, k) || k != s.key) continue;
                d.tree_kinds[m.start] = kind;
                if (kind == image::VmaKind::kAnonSharedTaken)  // the owner's pages are its content
                    std::erase_if(d.runs, [&](const CopiedRun& r) {
                        return r.vaddr >= m.start && r.vaddr < m.end;
                    });
            }
        };
        mark(s.owner, image::VmaKind::kAnonSharedOwner);
        for (size_t t : s.takers) mark(t, image::VmaKind::kAnonSharedTaken);
    }
    return {};
}

void share_memfds_between_members(std::span<state::MemfdDump* const> memfds) {
    std::set<uint64_t> recorded;
    for (state::MemfdDump* d : memfds) {
        std::erase_if(d->objects, [&](const state::MemfdDump::Object& o) {
            return recorded.count(o.rec.ino) != 0;
        });
        for (const auto& o : d->objects) recorded.insert(o.rec.ino);
    }
}

image::VmaRecord tree_vma_record(const MemoryDump& mem, const MapsEntry& m) {
    image::VmaRecord r = vma_record(m);
    if (auto k = mem.tree_kinds.find(m.start); k != mem.tree_kinds.end())
        r.kind = uint32_t(k->second);
    return r;
}

}  // namespace crfs
