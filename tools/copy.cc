#include "tools/copy.h"

#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common/io.h"

namespace crfs::tool {

Status copy_stream(int in, const std::string& in_name, int out, const std::string& out_name,
                   Progress& progress) {
    // 1 MiB: FUSE serves up to max_read per request; fewer syscalls than cp's 128 KiB.
    std::vector<char> buf(1 << 20);
    for (;;) {
        ssize_t n = ::read(in, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + in_name);
        }
        if (n == 0) return {};
        if (auto w = write_full(out, buf.data(), size_t(n)); !w)
            return sys_error(w.error().code, "write " + out_name);
        progress.add(uint64_t(n));
    }
}

}  // namespace crfs::tool
