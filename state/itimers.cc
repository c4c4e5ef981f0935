// Interval timers: dump, check and restore halves (state/itimers.h).
#include "state/itimers.h"

#include <cstring>

#include "common/strfmt.h"
#include "state/check.h"

namespace crfs {

image::ItimersRecord dump_itimers(const ParasiteOutput& p) {
    image::ItimersRecord r{};
    std::memcpy(r.v, p.itimers, sizeof r.v);
    return r;
}

Status check_itimers(const DecodedImage& img) {
    for (int w = 0; w < 3; ++w)
        for (int k = 0; k < 4; k += 2)
            if (img.itimers.v[w][k] < 0 || img.itimers.v[w][k + 1] < 0 ||
                img.itimers.v[w][k + 1] >= 1000000)
                return check::bad(
                    strfmt("itimer {}: {}.{:06}", w, img.itimers.v[w][k], img.itimers.v[w][k + 1]));
    return {};
}

void fill_itimers(const DecodedImage& img, crfs_restorer_args& a) {
    std::memcpy(a.itimers, img.itimers.v, sizeof a.itimers);
    // An ITIMER_REAL that expired while the task was frozen reads 0 with its
    // interval set: the kernel re-arms it only when the SIGALRM is dequeued,
    // and setitimer with a zero value would disarm it for good. Re-arm it one
    // interval out (the pending SIGALRM, if any, is re-queued separately).
    for (auto& t : a.itimers)
        if (t[2] == 0 && t[3] == 0 && (t[0] != 0 || t[1] != 0)) t[2] = t[0], t[3] = t[1];
}

}  // namespace crfs
