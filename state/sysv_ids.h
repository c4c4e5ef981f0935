// The id and creation rule of System V objects a restore makes again (issue
// 11; docs/state.md "System V shared memory: decisions"): shared memory
// (state/sysv_shm.cc) and message queues (state/sysv_msg.cc).
//
// The task holds an object's id in memory, so the id is state. Before the
// object is made, as the writer: an id in use (the original still exists) is
// refused (EBUSY), never reused; then the id is asked of the kernel through
// /proc/sys/kernel/<kind>_next_id (root of the IPC namespace's user namespace
// only). The object is created IPC_CREAT|IPC_EXCL as its creator (a root
// writer: as the image's cuid/cgid; any other writer: as itself), and an id
// that came out differently, or another creator, is refused. What a restore
// made is removed again unless it keeps it (the task runs).
//
// In a tree (sysvtree; docs/trees.md "System V objects between members") an
// object is made once, by the first member in image order whose records name
// it; a later member's record of the same id must be that same record
// (SysvTree): a segment is attached again, a queue or set is refused (the
// checkpoint records those once). The tree keeps what it made until every
// member runs, and the daemon keeps an attach of each segment it made till
// then: the segment cannot be destroyed meanwhile, so its id names it, and no
// segment another creator made, when each member's blob attaches it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace crfs {
struct WriterPlan;
}

namespace crfs::state {

struct SysvKind {
    const char* what;     // "System V shared memory"
    const char* next_id;  // "shm_next_id" (under /proc/sys/kernel/)
    bool (*in_use)(int id);
    int (*create_private)();  // a throw-away object (IPC_PRIVATE), its id
    void (*remove)(int id);   // IPC_RMID
};

// The objects a restore made: removed again unless keep().
class SysvMade {
  public:
    SysvMade() = default;
    SysvMade(const SysvMade&) = delete;
    SysvMade& operator=(const SysvMade&) = delete;
    ~SysvMade();
    void add(const SysvKind& k, int id) { made_.emplace_back(&k, id); }
    void keep() { made_.clear(); }

  private:
    std::vector<std::pair<const SysvKind*, int>> made_;
};

// A tree restore's System V objects (restorer/restore.cc, state/tree_restore.h):
// what its members made, removed again unless restore_tree keeps them.
class SysvTree {
  public:
    struct Object {
        const SysvKind* kind;
        int id;
        std::string rec;  // its record as the maker's image holds it
        pid_t maker;
    };
    SysvTree() = default;
    SysvTree(const SysvTree&) = delete;
    SysvTree& operator=(const SysvTree&) = delete;
    ~SysvTree();
    // Made by an earlier member, or null.
    const Object* find(const SysvKind& k, int id) const;
    void add(const SysvKind& k, int id, std::string rec, pid_t maker) {
        objects_.push_back({&k, id, std::move(rec), maker});
    }
    // A segment's attach in the daemon, detached when the tree's restore ends.
    void pin(void* attach) { pins_.push_back(attach); }
    SysvMade made;

  private:
    std::vector<Object> objects_;
    std::vector<void*> pins_;
};

// sysvtree: whether `pid` is the first process of `inside` (image order)
// that `user` names (a queue's or set's last users); true when `inside`
// holds no earlier one (a single process: empty).
bool sysv_first_user(pid_t pid, const std::vector<pid_t>& inside,
                     const std::function<bool(pid_t)>& user);

// sysvtree: a queue or set (record `rec` of process `pid`) an earlier member
// made already is refused: the checkpoint records each once.
Status sysv_tree_once(const SysvKind& k, const SysvTree* tree, int id, const char* rec, pid_t pid);

// Object `id` of creator cuid/cgid: as the writer, the id refused when in
// use, then asked of the kernel; then make(chosen: the kernel was asked) as
// its creator (a root writer as cuid/cgid, any other writer as itself).
Status sysv_make(const SysvKind& k, const WriterPlan& writer, int id, uint32_t cuid, uint32_t cgid,
                 const std::function<Status(bool chosen)>& make);

// The restore loop of the queue and set kinds: each record of `recs`
// (payloads of record `rec`) parsed, refused if an earlier member made its id
// already, made by `make(parsed, chosen)` through sysv_make as its creator,
// then noted in `tree`. `parse` returns a Result whose value has `.r` with
// the record's creator ids; `id_of` gives the object's id.
template <class Parse, class IdOf, class Make>
Status sysv_restore_each(const SysvKind& k, const char* rec, const std::vector<std::string>& recs,
                         pid_t pid, const WriterPlan& writer, SysvTree* tree, Parse parse,
                         IdOf id_of, Make make) {
    for (const auto& p : recs) {
        auto q = parse(p);
        if (!q) return std::unexpected(q.error());
        int id = id_of(*q);
        if (auto s = sysv_tree_once(k, tree, id, rec, pid); !s) return s;
        if (auto m = sysv_make(k, writer, id, q->r.cuid, q->r.cgid,
                               [&](bool chosen) { return make(*q, chosen); });
            !m)
            return m;
        if (tree) tree->add(k, id, p, pid);
    }
    return {};
}

// After the creation (as the creator) that returned `got` (< 0: errno says
// why): an error unless it is `want`; what it made goes into `made`.
Status sysv_created(const SysvKind& k, const std::string& what, int got, int want, bool chosen,
                    SysvMade& made);

// A hostile image: no two records `rec` ("sysv-msg") of one id, nor of one
// non-zero key; `id_keys`: each record's {id, key}.
Status sysv_check_unique(const char* rec, const std::vector<std::pair<int32_t, int32_t>>& id_keys);

// The creator the kernel recorded must be the image's.
Status sysv_same_creator(const std::string& what, uint32_t cuid, uint32_t cgid, uint32_t want_cuid,
                         uint32_t want_cgid);

}  // namespace crfs::state
