// kcmp(2) asked once per relation, and "which of these share one object"
// told by sorting instead of comparing every pair.
//
// A tree's checkpoint asks the same kcmp questions several times: the root's
// tree-wide `reason` (state/tree.cc) and each member's own check ask "does
// member a share its memory / fd table / fs / signal handlers / this open file
// description with member b" for every pair, and the checkpoint's sharing
// records ask again (at 64 processes, about 60,000 calls). A KcmpCache lives
// as long as one `reason` read or one checkpoint (its views share it, like the
// holder scan: TaskView::kcmp()): every answer it got, it keeps.
//
// kcmp orders what it compares (0: the same object, 1: the first's is less,
// 2: greater; a permutation of kernel pointers, so a total order per type), so
// the members sharing an object are found by sorting them with kcmp as the
// comparator and cutting the sorted list where neighbours differ (as CRIU
// does): about n log n calls for n members instead of n^2 / 2. Only while
// nothing can change (a frozen tree) or within one read (a `reason`) is that
// exact; the callers are those.
//
// A sorted set also answers any two of its items (ranks): the classes are
// numbered in kcmp's order, so two items of one sort compare as their classes
// do, with no call (perf: a tree's subsets, and another thread's sorts
// adopted, asked nothing again).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace crfs::state {

// One thing kcmp compares: a process's object of a type, and for KCMP_FILE
// its fd.
struct KcmpItem {
    pid_t pid = 0;
    unsigned long idx = 0;  // KCMP_FILE: the fd; else 0
    auto operator<=>(const KcmpItem&) const = default;
};
// For hashed maps of items (std::unordered_map<KcmpItem, T, KcmpItemHash>).
struct KcmpItemHash {
    size_t operator()(const KcmpItem& i) const noexcept;
};

// A process's fd, for KCMP_FILE.
inline KcmpItem kcmp_fd(pid_t pid, int fd) {
    return {pid, static_cast<unsigned long>(fd)};
}

class KcmpCache {
  public:
    // kcmp(a.pid, b.pid, type, a.idx, b.idx): 0 the same object, 1 a's is
    // less, 2 greater, -errno when kcmp fails. Asked of the kernel once per
    // (type, a, b) (b, a: the same answer turned round); errors are kept too.
    int order(int type, KcmpItem a, KcmpItem b);
    int order(int type, pid_t a, pid_t b) { return order(type, KcmpItem{a, 0}, KcmpItem{b, 0}); }

    // Class of each item, in order: two items hold the same object exactly
    // when their classes are equal. Sorted by kcmp (O(n log n) calls, each
    // relation once); nullopt when a kcmp failed (a process or fd gone, not
    // the caller's to inspect): the caller then asks pair by pair (order),
    // whose errors say what it cannot tell. Kept per (type, set of items):
    // asked again in another order, the answer costs no call.
    std::optional<std::vector<int>> classes(int type, std::span<const KcmpItem> items);

    // Whether sorting `n` items (about n log2 n + n calls) asks less than
    // comparing `pairs` pairs one by one.
    static bool worth_sorting(size_t n, uint64_t pairs);

    // kcmp calls made (each a real syscall).
    uint64_t calls() const { return calls_; }

    // Takes what `other` learned (its answers, sorted sets and ranks), where
    // this knows nothing yet: a cache filled on another thread, while frozen
    // (perf: a tree's sorts made on its tracers, checkpoint.cc presort).
    void adopt(KcmpCache&& other);

  private:
    // (type, a, b) with a <= b, and kcmp(a, b)'s answer. perf: hashed, one
    // lookup per question (a std::map asked twice, (a, b) and (b, a): in a
    // profile of a 64-process tree's checkpoint, the cache's own code was ~30%
    // of the root's tree-wide detect, twice the kcmp calls it made).
    using Key = std::tuple<int, KcmpItem, KcmpItem>;
    struct KeyHash {
        size_t operator()(const Key& k) const noexcept;
    };
    std::unordered_map<Key, int, KeyHash> answers_;
    std::map<std::pair<int, std::vector<KcmpItem>>, std::optional<std::vector<int>>> classes_;
    // (type, item): the biggest sort that ranked it (a number of this
    // cache's) and its class there. Two items of one sort: ordered as their
    // classes.
    struct RankKeyHash {
        size_t operator()(const std::pair<int, KcmpItem>& k) const noexcept;
    };
    struct Rank {
        uint32_t sort;
        int cls;
        size_t size;  // of its sort: a bigger sort's rank replaces it
    };
    std::unordered_map<std::pair<int, KcmpItem>, Rank, RankKeyHash> ranks_;
    uint32_t sorts_ = 0;
    void rank(int type, const std::vector<KcmpItem>& items, const std::vector<int>& cls);
    uint64_t calls_ = 0;
};

}  // namespace crfs::state
