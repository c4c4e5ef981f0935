// Interval timers (docs/state.md "itimers"; detect: nothing is refused): the
// three of setitimer(2), ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF.
//
// Dump: read by the parasite with the signal dispositions (getitimer x3 in the
// frozen task, checkpoint/parasite.cc: /proc does not show them), kept as the
// `itimers` record.
//
// Restore: the blob sets them (restorer/blob/blob.c, setitimer, after the
// signals), from what fill_itimers puts in its arguments.
#pragma once

#include "checkpoint/parasite.h"
#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "crfs/restorer_args.h"

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

image::ItimersRecord dump_itimers(const ParasiteOutput& p);

// --- check (hostile images) --------------------------------------------------

// Each value and interval a timeval setitimer takes (seconds >= 0, microseconds
// below a million).
Status check_itimers(const DecodedImage& img);

// --- restore -----------------------------------------------------------------

void fill_itimers(const DecodedImage& img, crfs_restorer_args& a);

}  // namespace crfs
