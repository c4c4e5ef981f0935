#include "common/file_hash.h"

#include <unistd.h>
#include <xxhash.h>

#include <memory>
#include <vector>

#include "common/strfmt.h"

namespace crfs {

Result<uint64_t> hash_file_range(int fd, uint64_t offset, uint64_t len) {
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(),
                                                                &XXH3_freeState);
    if (!st || XXH3_64bits_reset(st.get()) != XXH_OK) return make_error(ENOMEM, "XXH3 state");
    std::vector<char> buf(std::min<uint64_t>(len, 1 << 20));
    uint64_t done = 0;
    while (done < len) {
        ssize_t n =
            pread(fd, buf.data(), std::min<uint64_t>(buf.size(), len - done), off_t(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(strfmt("read at offset {}", offset + done));
        if (n == 0)
            return make_error(EIO,
                              strfmt("file ends at {}, before {}", offset + done, offset + len));
        XXH3_64bits_update(st.get(), buf.data(), size_t(n));
        done += uint64_t(n);
    }
    return uint64_t(XXH3_64bits_digest(st.get()));
}

}  // namespace crfs
