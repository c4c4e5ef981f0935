#include "common/page_set.h"

#include <algorithm>
#include <iterator>

#include "common/strfmt.h"

namespace crfs {

bool PageSet::add(uint64_t lo, uint64_t hi) {
    if (lo >= top_) {  // above everything: every late run ends below top_
        if (!sorted_.empty() && sorted_.back().second == lo)
            sorted_.back().second = hi;
        else
            sorted_.emplace_back(lo, hi);
        top_ = hi;
        return true;
    }
    // The last interval of each starting below hi must end at or below lo.
    auto s = std::lower_bound(
        sorted_.begin(), sorted_.end(), hi,
        [](const std::pair<uint64_t, uint64_t>& a, uint64_t v) { return a.first < v; });
    if (s != sorted_.begin() && std::prev(s)->second > lo) return false;
    auto l = late_.lower_bound(hi);
    if (l != late_.begin() && std::prev(l)->second > lo) return false;
    late_.emplace_hint(l, lo, hi);
    return true;
}

std::string page_twice(uint64_t lo, uint64_t hi) {
    return strfmt("pages {:x}-{:x} give a page an earlier pages record gave (a page twice)", lo,
                  hi);
}

}  // namespace crfs
