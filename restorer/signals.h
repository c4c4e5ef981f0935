// Signal state for the blob: the 64 dispositions, the pending signals of both
// queues (re-queued to the task itself while everything is blocked, so they
// stay pending in order), and the three interval timers. The blocked mask and
// the alternate stack travel in the signal frame (restorer/regs).
#pragma once

#include <vector>

#include "common/image_reader.h"
#include "crfs/restorer_args.h"

namespace crfs {

void fill_sigactions(const DecodedImage& img, crfs_restorer_args& a);
std::vector<crfs_ra_siginfo> pending_signals(const DecodedImage& img);
void fill_itimers(const DecodedImage& img, crfs_restorer_args& a);

}  // namespace crfs
