// The pages one process's pages records gave so far (docs/image-format.md,
// pages: no page twice in one process's records of one image). Used by the
// decoder (common/image_reader.cc) and by the streamed restore, which checks
// each run before a byte of it is copied (fs/slot_stream.cc).
//
// crfs writes a process's pages records in address order
// (checkpoint/checkpoint.cc build_records), or, in a live snapshot's image,
// as two such sequences one after the other (the pages copied while frozen,
// then those streamed: checkpoint/live_snapshot.cc). A run above every
// earlier one costs O(1) and allocates nothing (amortized); any other run
// costs O(log n).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace crfs {

class PageSet {
  public:
    // Adds the pages [lo, hi) (lo < hi); false, adding nothing, when one of
    // them was added before.
    bool add(uint64_t lo, uint64_t hi);

  private:
    std::vector<std::pair<uint64_t, uint64_t>> sorted_;  // in order, disjoint, touching merged
    std::map<uint64_t, uint64_t> late_;  // start -> end: those added below an earlier one
    uint64_t top_ = 0;                   // the highest end so far (sorted_'s last)
};

// The refusal of a pages record [lo, hi) that gives a page given before.
std::string page_twice(uint64_t lo, uint64_t hi);

}  // namespace crfs
