#include "restorer/signals.h"

#include <cstring>

namespace crfs {

void fill_sigactions(const DecodedImage& img, crfs_restorer_args& a) {
    for (int i = 0; i < 64; ++i) {
        const auto& k = img.sigactions.action[i];
        a.sigactions[i] = {k.handler, k.flags, k.restorer, k.mask};
    }
}

std::vector<crfs_ra_siginfo> pending_signals(const DecodedImage& img) {
    std::vector<crfs_ra_siginfo> out;
    for (const auto& p : img.pending) {
        crfs_ra_siginfo s{};
        s.shared = p.queue == image::kSigqueueShared;
        std::memcpy(&s.signo, p.info, 4);  // si_signo leads the kernel siginfo
        std::memcpy(s.info, p.info, sizeof s.info);
        out.push_back(s);
    }
    return out;
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
