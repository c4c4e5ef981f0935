// kcmp asked once per relation, groups by sorting: state/kcmp_cache.h.
#include "state/kcmp_cache.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <numeric>

namespace crfs::state {
namespace {

// The answer of kcmp(b, a) from that of kcmp(a, b): an order turned round;
// the same object, or an error (either process or fd), is the same.
int turned(int r) {
    return r == 1 ? 2 : r == 2 ? 1 : r;
}

// A merge sort of `v[lo, hi)`: at most n log2 n calls of `less`, and safe
// whatever `less` answers (std::sort is not, with an order that is not one).
// Stops early once `failed`.
template <class Less>
void merge_sort(std::vector<size_t>& v, size_t lo, size_t hi, std::vector<size_t>& tmp, Less& less,
                const bool& failed) {
    if (hi - lo < 2 || failed) return;
    size_t mid = lo + (hi - lo) / 2;
    merge_sort(v, lo, mid, tmp, less, failed);
    merge_sort(v, mid, hi, tmp, less, failed);
    if (failed) return;
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi) tmp[k++] = less(v[j], v[i]) ? v[j++] : v[i++];
    while (i < mid) tmp[k++] = v[i++];
    while (j < hi) tmp[k++] = v[j++];
    std::copy(tmp.begin() + long(lo), tmp.begin() + long(hi), v.begin() + long(lo));
}

}  // namespace

namespace {

// splitmix64's finalizer.
uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace

size_t KcmpItemHash::operator()(const KcmpItem& i) const noexcept {
    return size_t(mix(mix(uint32_t(i.pid)) ^ i.idx));
}

size_t KcmpCache::KeyHash::operator()(const Key& k) const noexcept {
    const auto& [type, a, b] = k;
    return size_t(mix(mix(uint64_t(uint32_t(type)) << 32 ^ KcmpItemHash()(a)) ^ KcmpItemHash()(b)));
}

size_t KcmpCache::RankKeyHash::operator()(const std::pair<int, KcmpItem>& k) const noexcept {
    return size_t(mix(uint64_t(uint32_t(k.first)) << 32 ^ KcmpItemHash()(k.second)));
}

namespace {

// Keeps in `ranks` the rank of the bigger sort.
template <class Ranks, class Key, class Rank>
void keep_rank(Ranks& ranks, const Key& key, const Rank& r) {
    auto [it, fresh] = ranks.try_emplace(key, r);
    if (!fresh && it->second.size < r.size) it->second = r;
}

}  // namespace

void KcmpCache::rank(int type, const std::vector<KcmpItem>& items, const std::vector<int>& cls) {
    const uint32_t sort = sorts_++;
    for (size_t i = 0; i < items.size(); ++i)
        keep_rank(ranks_, std::pair{type, items[i]}, Rank{sort, cls[i], items.size()});
}

void KcmpCache::adopt(KcmpCache&& other) {
    answers_.merge(other.answers_);
    classes_.merge(other.classes_);
    const uint32_t base = sorts_;
    for (const auto& [key, r] : other.ranks_)
        keep_rank(ranks_, key, Rank{base + r.sort, r.cls, r.size});
    sorts_ += other.sorts_;
    calls_ += other.calls_;
}

int KcmpCache::order(int type, KcmpItem a, KcmpItem b) {
    // Kept as (type, lower item, higher item): one lookup answers both ways round.
    const bool swapped = b < a;
    const Key key = swapped ? Key{type, b, a} : Key{type, a, b};
    if (auto it = answers_.find(key); it != answers_.end())
        return swapped ? turned(it->second) : it->second;
    // Both of one sort: its classes are numbered in kcmp's order.
    if (auto ra = ranks_.find({type, a}); ra != ranks_.end())
        if (auto rb = ranks_.find({type, b});
            rb != ranks_.end() && rb->second.sort == ra->second.sort)
            return ra->second.cls == rb->second.cls ? 0 : ra->second.cls < rb->second.cls ? 1 : 2;
    ++calls_;
    long r = syscall(SYS_kcmp, a.pid, b.pid, type, a.idx, b.idx);
    int v = r < 0 ? -errno : int(r);
    answers_.emplace(key, swapped ? turned(v) : v);
    return v;
}

bool KcmpCache::worth_sorting(size_t n, uint64_t pairs) {
    uint64_t log = 0;
    while ((uint64_t(1) << log) < n) ++log;
    return pairs > n * log + n;
}

std::optional<std::vector<int>> KcmpCache::classes(int type, std::span<const KcmpItem> asked) {
    // One set, in one order, whatever the caller's: the key, and what is sorted.
    std::vector<KcmpItem> items(asked.begin(), asked.end());
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    auto in_order = [&](const std::optional<std::vector<int>>& cls) {
        std::optional<std::vector<int>> out;
        if (!cls) return out;
        out.emplace();
        for (const KcmpItem& a : asked)
            out->push_back(
                (*cls)[size_t(std::lower_bound(items.begin(), items.end(), a) - items.begin())]);
        return out;
    };
    auto key = std::pair{type, items};
    if (auto it = classes_.find(key); it != classes_.end()) return in_order(it->second);
    std::optional<std::vector<int>> out;
    bool failed = false;
    // Anything but an order (an error, or an answer kcmp does not give) ends the sort.
    auto ask = [&](size_t x, size_t y) {
        int r = order(type, items[x], items[y]);
        if (r < 0 || r > 2) failed = true;
        return r;
    };
    // Often every item holds one object (the fds a fork gave every member of a
    // tree): told with n - 1 calls against the first, tried once the first two
    // are one (the sort of n equal items asks about n log2 n / 2 + n). At the
    // first that differs, the sort, which finds these answers kept.
    if (items.size() >= 2 && ask(0, 1) == 0) {
        bool one = true;
        for (size_t k = 2; k < items.size() && one && !failed; ++k) one = ask(0, k) == 0;
        if (one && !failed) {
            std::vector<int> cls(items.size(), 0);
            rank(type, items, cls);
            return in_order(classes_.emplace(std::move(key), std::move(cls)).first->second);
        }
    }
    auto less = [&](size_t x, size_t y) { return ask(x, y) == 1; };
    std::vector<size_t> sorted(items.size()), tmp(items.size());
    std::iota(sorted.begin(), sorted.end(), size_t(0));
    merge_sort(sorted, 0, sorted.size(), tmp, less, failed);
    if (!failed) {
        // Sorted: the items holding one object are neighbours.
        std::vector<int> cls(items.size(), 0);
        int c = 0;
        for (size_t k = 1; k < sorted.size() && !failed; ++k) {
            if (ask(sorted[k - 1], sorted[k]) != 0) ++c;
            cls[sorted[k]] = c;
        }
        if (!failed) {
            rank(type, items, cls);
            out = std::move(cls);
        }
    }
    return in_order(classes_.emplace(std::move(key), std::move(out)).first->second);
}

}  // namespace crfs::state
