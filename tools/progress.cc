#include "tools/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <fmt/core.h>

namespace crfs::tool {
namespace {

std::string human(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
    return u == 0 ? fmt::format("{:.0f} {}", bytes, units[u])
                  : fmt::format("{:.1f} {}", bytes, units[u]);
}

std::string duration(double seconds) {
    auto s = static_cast<long>(seconds + 0.5);
    return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                     : fmt::format("{}:{:02}", s / 60, s % 60);
}

int terminal_width() {
    winsize ws{};
    if (::ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
    return 80;
}

}  // namespace

bool progress_wanted(bool quiet) {
    return !quiet && ::isatty(2);
}

Progress::Progress(bool enabled, uint64_t total, bool estimate)
    : enabled_(enabled), total_(total), estimate_(estimate) {}

void Progress::abort() {
    if (enabled_ && drawn_) std::fputc('\n', stderr);
    enabled_ = false;
}

void Progress::add(uint64_t n) {
    bytes_ += n;
    if (!enabled_) return;
    auto now = Clock::now();
    if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw();
}

void Progress::done() {
    if (!enabled_) return;
    total_ = bytes_;
    estimate_ = false;
    draw();
    std::fputc('\n', stderr);
    drawn_ = false;
}

void Progress::draw() {
    drawn_ = true;
    double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    double rate = secs > 0 ? bytes_ / secs : 0;
    std::string line = human(double(bytes_));
    if (total_) line += fmt::format(" of {}{}", estimate_ ? "~" : "", human(double(total_)));
    line += fmt::format("  {}/s", human(rate));
    if (total_) {
        double frac = std::min(1.0, double(bytes_) / double(total_));
        if (estimate_) frac = std::min(frac, 0.99);
        constexpr int kBar = 24;
        int filled = static_cast<int>(frac * kBar);
        line += fmt::format("  [{}{}] {:3.0f}%", std::string(filled, '#'),
                            std::string(kBar - filled, '-'), frac * 100);
        if (rate > 0 && bytes_ < total_)
            line += fmt::format("  {}left {}", estimate_ ? "~" : "",
                                duration(double(total_ - bytes_) / rate));
        else if (bytes_ >= total_ && frac >= 1.0)
            line += fmt::format("  in {}", duration(secs));
    }
    int width = terminal_width() - 1;
    if (int(line.size()) > width) line.resize(size_t(width));
    // \r and clear to the end of the line: the line shrinks as well as grows.
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
}

}  // namespace crfs::tool
