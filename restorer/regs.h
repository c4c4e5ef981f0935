// The signal frame the blob returns through: an x86-64 rt_sigframe whose
// ucontext holds the saved general registers, blocked mask and alternate
// stack, followed by the saved xsave area marked (FP_XSTATE_MAGIC1/2) so the
// kernel restores every xsave component, not only the legacy FXSAVE part.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/image_reader.h"
#include "common/result.h"

namespace crfs {

// Bytes build_sigframe writes (frame, alignment, xsave area, end marker).
size_t sigframe_size(const DecodedImage& img);

// Writes the frame at `mem` (64-byte aligned). The blob sets rsp to mem + 8
// and calls rt_sigreturn.
Status build_sigframe(const DecodedImage& img, void* mem);

}  // namespace crfs
