#include "common/file_hash.h"

#include <unistd.h>
#include <xxhash.h>

#include <memory>

#include "common/strfmt.h"

namespace crfs {

Result<uint64_t> hash_file_range(int fd, uint64_t offset, uint64_t len) {
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(),
                                                                &XXH3_freeState);
    if (!st || XXH3_64bits_reset(st.get()) != XXH_OK) return make_error(ENOMEM, "XXH3 state");
    // One buffer per thread, reused: a fresh zeroed MiB per call (per mapped
    // range of every library) cost a checkpoint of a small task ~4 ms in page
    // faults alone (docs/performance.md, "Small tasks"). 256 KiB stays in cache.
    constexpr size_t kBufBytes = 256 << 10;
    thread_local std::unique_ptr<char[]> buf = std::make_unique_for_overwrite<char[]>(kBufBytes);
    uint64_t done = 0;
    while (done < len) {
        ssize_t n =
            pread(fd, buf.get(), std::min<uint64_t>(kBufBytes, len - done), off_t(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(strfmt("read at offset {}", offset + done));
        if (n == 0)
            return make_error(EIO,
                              strfmt("file ends at {}, before {}", offset + done, offset + len));
        XXH3_64bits_update(st.get(), buf.get(), size_t(n));
        done += uint64_t(n);
    }
    return uint64_t(XXH3_64bits_digest(st.get()));
}

}  // namespace crfs
