// The pages one process's pages records gave so far (docs/image-format.md,
// pages: no page twice in one process's records of one image). Used by the
// decoder (common/image_reader.cc) and by the streamed restore, which checks
// each run before a byte of it is copied (fs/slot_stream.cc).
//
// crfs writes a process's pages records in address order
// (checkpoint/checkpoint.cc build_records), or, in a live snapshot's image,
// as two such sequences one after the other (the pages copied while frozen,
// then those streamed: checkpoint/live_snapshot.cc). Runs are kept in up to
// kMaxSeqs address-ordered sequences: a run above every earlier one costs
// O(1), one that continues another sequence O(kMaxSeqs log n), neither
// allocating (amortized); runs past that (no image crfs writes) go to a map,
// O(log n) each.
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
    static constexpr size_t kMaxSeqs = 4;
    // Each in address order, disjoint, touching runs merged; none empty.
    std::vector<std::vector<std::pair<uint64_t, uint64_t>>> seqs_;
    std::map<uint64_t, uint64_t> late_;  // start -> end: runs no sequence could take
    uint64_t top_ = 0;                   // the highest end so far
    size_t top_seq_ = 0;                 // the sequence that ends at top_
};

// The refusal of a pages record [lo, hi) that gives a page given before.
std::string page_twice(uint64_t lo, uint64_t hi);

}  // namespace crfs
