#include "state/mlockall.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"

namespace crfs::state {

namespace {

// The smaps text from its start through the VmFlags line of the area at
// `page`, read in pieces and no further: the kernel generates smaps as it is
// read (~5 us per area), and the probe page lies low (below), so this is a
// few areas, not all 30,000. The whole file if the page is not found.
Result<std::string> smaps_through(pid_t pid, uint64_t page) {
    std::string path = strfmt("/proc/{}/smaps", pid);
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::unexpected(fd.error());
    std::string text, head = strfmt("{:08x}-", page);  // as the kernel prints it
    size_t from = 0;  // where the page's entry may start
    for (size_t chunk = 4 << 10;;) {  // perf: a page, ~3 areas of text, first
        size_t had = text.size();
        text.resize(had + chunk);
        ssize_t n = ::read(fd->get(), text.data() + had, chunk);
        if (n < 0 && errno == EINTR) {
            text.resize(had);
            continue;
        }
        if (n < 0) return errno_error("read " + path);
        text.resize(had + size_t(n));
        if (n == 0 || text.size() > (256u << 20)) return text;
        size_t at = text.compare(0, head.size(), head) == 0 ? 0 : text.find("\n" + head, from);
        if (at != std::string::npos) {
            size_t flags = text.find("\nVmFlags:", at);
            size_t eol = flags == std::string::npos ? flags : text.find('\n', flags + 1);
            if (eol != std::string::npos) return text.substr(0, eol + 1);
        } else {
            from = text.size() > head.size() + 1 ? text.size() - head.size() - 1 : 0;
        }
        chunk = std::min<size_t>(chunk * 2, 1 << 20);
    }
}

}  // namespace

Result<uint32_t> dump_mlockall(pid_t pid, const RemoteCall6& call) {
    // A hint of one page: the kernel raises it to vm.mmap_min_addr and takes
    // it if free (below every area of nearly any task: first in smaps),
    // else places the page as usual.
    auto at = call(SYS_mmap, {4096, 4096, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, ~uint64_t(0), 0});
    if (!at) return std::unexpected(at.error());
    // A locked mapping past RLIMIT_MEMLOCK is EAGAIN: def_flags has VM_LOCKED,
    // but whether with VM_LOCKONFAULT cannot be seen.
    if (*at == -EAGAIN)
        return make_error(EBUSY, strfmt("task {}: mlockall(MCL_FUTURE) at its RLIMIT_MEMLOCK: "
                                        "cannot tell its flags",
                                        pid));
    if (*at < 0 && *at > -4096)
        return sys_error(int(-*at), strfmt("mmap of a probe page in task {}", pid));
    uint64_t page = uint64_t(*at);
    auto flags = mlockall_of_area(pid, page);
    auto gone = call(SYS_munmap, {page, 4096, 0, 0, 0, 0});
    if (!flags) return std::unexpected(flags.error());
    if (!gone) return std::unexpected(gone.error());
    if (*gone != 0)
        return sys_error(int(-*gone), strfmt("munmap of the probe page in task {}", pid));
    return *flags;
}

Result<uint32_t> mlockall_of_area(pid_t pid, uint64_t addr, std::optional<int64_t> dontneed) {
    if (dontneed == 0) return 0u;  // madvise refuses MADV_DONTNEED of a VM_LOCKED area only
    auto smaps = smaps_through(pid, addr);
    if (!smaps) return std::unexpected(smaps.error());
    auto maps = parse_maps(*smaps);
    if (!maps) return std::unexpected(maps.error());
    for (const auto& m : *maps) {
        if (addr < m.start || addr >= m.end) continue;  // merged: the same flags
        uint32_t flags = 0;
        if (m.vm_flags & vm_flag_mask("lo")) flags |= MCL_FUTURE;
        if (m.vm_flags & vm_flag_mask("lf")) flags |= MCL_FUTURE | MCL_ONFAULT;
        return flags;
    }
    return make_error(EIO, strfmt("task {}: the area at {:x} is not in its smaps", pid, addr));
}

Status check_mlockall(const DecodedImage& img) {
    uint32_t f = img.mlockall.flags;
    if ((f & ~uint32_t(MCL_FUTURE | MCL_ONFAULT)) || f == MCL_ONFAULT || img.mlockall.reserved)
        return make_error(
            EINVAL, strfmt("image: mlockall flags 0x{:x} (reserved {})", f, img.mlockall.reserved));
    return {};
}

}  // namespace crfs::state
