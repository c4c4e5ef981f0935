// Images compose by concatenation (docs/incremental.md): a slot that receives
// `cat base.img d1.img d2.img` restores the state of d2. Every part is a
// complete stream (header, records, trailer) and is verified on its own; the
// chain is verified (the first part complete, each later one a delta naming
// the part before it); only then is the one image they compose built, and the
// usual restore runs on that. Nothing runs before every part was verified.
#pragma once

#include <cstdint>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"

namespace crfs {

// `fd`: the spool of a slot (seekable, read from offset 0). One complete image
// (no chain, or a chain's first part alone): an invalid fd, restore it as it
// is. Several parts: a new memfd holding the image they compose. Errors
// (EINVAL, EBADMSG, ...) name the part: a delta alone or over the wrong base,
// parts out of order, a part that does not decode. `one_image`: the slot's
// framing walk saw no second image (common/image_spool.h: its pages records
// are apart, so the framing is not walked here, only the first record read).
// `info`: each part's place in the chain and size, for crfs show/verify
// (filled for several parts).
struct ChainPart {
    image::ChainRecord chain{};
    uint32_t processes = 0;  // 0: one process
    uint64_t pages_stored = 0, pages_kept = 0, size = 0;
};
Result<UniqueFd> compose_chain(int fd, bool one_image = false,
                               std::vector<ChainPart>* info = nullptr);

// The most parts one restore takes.
inline constexpr uint32_t kMaxChainParts = 4096;

}  // namespace crfs
