// XXH3_64bits_update of an XXH3_state_t made by libxxhash (XXH3_createState),
// with AVX2 where the CPU has it. Debian's libxxhash is built for SSE2 only:
// on the development VM it hashes 130-150 ms of CPU per GiB, the AVX2 build
// of the same code 50-57 (docs/performance.md "Restore: the FUSE write path
// profiled"). The state's layout and the hash are the same either way
// (xxhash.h 0.8: the vector code is chosen at compile time, the algorithm
// is one), so updates of one state may mix the two.
#pragma once

#include <cstddef>

namespace crfs {

void xxh3_update(void* state, const void* input, size_t len);

}  // namespace crfs
