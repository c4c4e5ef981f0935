// A progress line on stderr for long copies (dump, restore): bytes, rate,
// and against an expected size a bar and an estimate of the time left.
#pragma once

#include <chrono>
#include <cstdint>

namespace crfs::tool {

class Progress {
  public:
    // enabled: draw at all (a terminal on stderr, no --quiet). total: the
    // expected bytes, 0 when unknown; a guess (estimate) is shown with "~"
    // and never claims 100% before the end.
    Progress(bool enabled, uint64_t total, bool estimate);
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    ~Progress() { abort(); }

    void add(uint64_t bytes);  // redraws at most every 100 ms
    void done();               // final line and newline
    void abort();              // ends the line, draws no more (an error follows)

    uint64_t bytes() const { return bytes_; }

  private:
    using Clock = std::chrono::steady_clock;
    void draw();

    bool enabled_;
    uint64_t total_;
    bool estimate_;
    uint64_t bytes_ = 0;
    bool drawn_ = false;
    Clock::time_point start_ = Clock::now();
    Clock::time_point last_draw_{};
};

// Whether a progress line belongs on stderr: a terminal, and not --quiet.
bool progress_wanted(bool quiet);

}  // namespace crfs::tool
