// Shared anonymous memory between members (state/tree_shmem.h): the detect
// half and the one classification the checkpoint uses too.
#include "state/tree_shmem.h"

#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/holders.h"
#include "state/memory.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

std::string shown(const MapsEntry& m) {
    return strfmt("{:x}-{:x} ({})", m.start, m.end, m.path);
}

}  // namespace

const std::vector<MapsEntry>& member_maps(TaskView& t, pid_t pid, std::vector<MapsEntry>& storage) {
    if (MemberViews* views = t.member_views())
        if (auto it = views->find(pid); it != views->end() && it->second)
            if (auto m = it->second->smaps()) return **m;
    storage = maps_of(pid);
    return storage;
}

std::vector<MapsEntry> maps_of(pid_t pid) {
    auto text = read_file(strfmt("/proc/{}/maps", pid), 64 << 20);
    if (!text) return {};
    auto maps = parse_maps(*text);
    return maps ? std::move(*maps) : std::vector<MapsEntry>{};
}

bool tree_shmem_key(const MapsEntry& m, ShmemKey& key) {
    // What MAP_SHARED|MAP_ANONYMOUS makes (also a shared mapping of /dev/zero),
    // named or not (PR_SET_VMA_ANON_NAME); not a deleted file, not System V.
    if (m.ino == 0 || m.perms[3] != 's' ||
        (m.path != "/dev/zero (deleted)" && !m.path.starts_with("[anon_shmem:")))
        return false;
    key = {(uint64_t(m.dev_major) << 32) | m.dev_minor, m.ino};
    return true;
}

bool shmem_covered(const MapsEntry& m, std::span<const MapsEntry* const> owner) {
    // Object offsets in pages; the owner's ranges may be split (mprotect).
    uint64_t at = m.pgoff, end = m.pgoff + (m.end - m.start) / 4096;
    bool moved = true;
    while (at < end && moved) {
        moved = false;
        for (const MapsEntry* o : owner) {
            uint64_t os = o->pgoff, oe = o->pgoff + (o->end - o->start) / 4096;
            if (os <= at && at < oe) {
                at = oe;
                moved = true;
            }
        }
    }
    return at >= end;
}

std::vector<ShmemShare> classify_shmem(std::span<const pid_t> pids,
                                       std::span<const std::vector<MapsEntry>* const> maps,
                                       Reasons& out) {
    // Per object, per member (image order), its mappings of it.
    std::map<ShmemKey, std::map<size_t, std::vector<const MapsEntry*>>> by_object;
    for (size_t i = 0; i < maps.size(); ++i)
        for (const MapsEntry& m : *maps[i])
            if (ShmemKey k; tree_shmem_key(m, k)) by_object[k][i].push_back(&m);
    std::vector<ShmemShare> shares;
    for (const auto& [key, holders] : by_object) {
        if (holders.size() < 2) continue;
        ShmemShare s{key, holders.begin()->first, {}};
        const auto& owned = holders.begin()->second;
        for (const auto& [i, mine] : holders) {
            if (i == s.owner) continue;
            s.takers.push_back(i);
            for (const MapsEntry* m : mine)
                if (!shmem_covered(*m, owned))
                    out.push_back(strfmt(
                        "pid {} (vma {:x}-{:x}) and pid {} (vma {:x}-{:x}): shared anonymous "
                        "memory of which the second maps pages the first (its first holder in "
                        "the image) does not; such sharing{}",
                        pids[s.owner], owned.front()->start, owned.front()->end, pids[i], m->start,
                        m->end, kNotYet));
        }
        shares.push_back(std::move(s));
    }
    return shares;
}

void shmem_share_reasons(TaskView& t, Reasons& out) {
    auto smaps = t.smaps();
    if (!smaps) return;  // detect_memory reports it
    std::map<ShmemKey, std::vector<const MapsEntry*>> mine;
    for (const MapsEntry& m : **smaps)
        if (ShmemKey k; tree_shmem_key(m, k)) mine[k].push_back(&m);
    if (mine.empty()) return;
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    // The first holder of each object in image order, with its mappings of it.
    std::map<ShmemKey, pid_t> owner;
    std::map<ShmemKey, std::vector<MapsEntry>> owner_maps;
    std::map<ShmemKey, bool> in_tree;  // another member maps it
    for (pid_t p : inside) {
        if (p == t.pid()) {
            for (const auto& [k, v] : mine) owner.try_emplace(k, p);
            continue;
        }
        std::vector<MapsEntry> storage;
        for (const MapsEntry& m : member_maps(t, p, storage)) {
            ShmemKey k;
            if (!tree_shmem_key(m, k) || !mine.count(k)) continue;
            in_tree[k] = true;
            if (owner.try_emplace(k, p).second || owner[k] == p) owner_maps[k].push_back(m);
        }
    }
    // Processes outside the image that map one of them, as far as the caller sees.
    std::map<ShmemKey, std::vector<pid_t>> outside;
    HolderScan& scan = *t.holder_scan();  // one walk of every process's maps
    if (!scan.maps_loaded) scan.load_maps();
    const auto& mappers = scan.shmem_mappers;
    for (const auto& [k, v] : mine) {
        auto it = mappers.find({k.dev, k.ino});
        if (it == mappers.end()) continue;
        for (pid_t p : it->second)
            if (p != t.self_tgid() && std::find(inside.begin(), inside.end(), p) == inside.end())
                outside[k].push_back(p);
    }
    for (const auto& [k, vmas] : mine) {
        const MapsEntry& first = *vmas.front();
        if (auto o = outside.find(k); o != outside.end()) {
            out.push_back(strfmt(
                "memory: shared anonymous memory {} is also mapped by {}, outside the image; "
                "shared memory with a process outside the image{}",
                shown(first), Holders::names(o->second), kNotYet));
            continue;
        }
        if (!in_tree[k]) {
            // Pages mapped by another process the caller cannot see.
            for (const MapsEntry* m : vmas)
                if (m->shared_kb) {
                    out.push_back("memory: shared anonymous memory " + shown(*m) +
                                  " is mapped by another process too; sharing" +
                                  std::string(kNotYet));
                    break;
                }
            continue;
        }
        if (owner[k] == t.pid()) continue;
        std::vector<const MapsEntry*> owned;
        for (const MapsEntry& m : owner_maps[k]) owned.push_back(&m);
        for (const MapsEntry* m : vmas)
            if (!shmem_covered(*m, owned))
                out.push_back(strfmt(
                    "memory: shared anonymous memory {} maps pages of its object that pid {} "
                    "(its first holder in the image) does not map; such sharing{}",
                    shown(*m), owner[k], kNotYet));
    }
}

}  // namespace crfs::state
