#include "common/page_set.h"

#include <algorithm>
#include <iterator>

#include "common/strfmt.h"

namespace crfs {

namespace {

// Whether [lo, hi) shares a page with one of the disjoint intervals `s`
// (sorted by start): the last one starting below hi must end at or below lo.
bool overlaps(const std::vector<std::pair<uint64_t, uint64_t>>& s, uint64_t lo, uint64_t hi) {
    auto it = std::lower_bound(
        s.begin(), s.end(), hi,
        [](const std::pair<uint64_t, uint64_t>& a, uint64_t v) { return a.first < v; });
    return it != s.begin() && std::prev(it)->second > lo;
}

void append(std::vector<std::pair<uint64_t, uint64_t>>& s, uint64_t lo, uint64_t hi) {
    if (!s.empty() && s.back().second == lo)
        s.back().second = hi;
    else
        s.emplace_back(lo, hi);
}

}  // namespace

bool PageSet::add(uint64_t lo, uint64_t hi) {
    if (lo >= top_) {  // above everything: every run so far ends at or below top_
        if (seqs_.empty()) seqs_.emplace_back();
        append(seqs_[top_seq_], lo, hi);
        top_ = hi;
        return true;
    }
    size_t below = kMaxSeqs;  // the sequence with the highest end at or below lo
    for (size_t i = 0; i < seqs_.size(); ++i) {
        if (overlaps(seqs_[i], lo, hi)) return false;
        if (seqs_[i].back().second <= lo &&
            (below == kMaxSeqs || seqs_[i].back().second > seqs_[below].back().second))
            below = i;
    }
    auto l = late_.lower_bound(hi);
    if (l != late_.begin() && std::prev(l)->second > lo) return false;
    if (below == kMaxSeqs && seqs_.size() < kMaxSeqs) {
        below = seqs_.size();
        seqs_.emplace_back();
    }
    if (below != kMaxSeqs)
        append(seqs_[below], lo, hi);
    else
        late_.emplace_hint(l, lo, hi);
    return true;
}

std::string page_twice(uint64_t lo, uint64_t hi) {
    return strfmt("pages {:x}-{:x} give a page an earlier pages record gave (a page twice)", lo,
                  hi);
}

}  // namespace crfs
