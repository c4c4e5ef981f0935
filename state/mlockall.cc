#include "state/mlockall.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"

namespace crfs::state {

namespace {

uint64_t vm_flag(const char* name) {
    for (size_t i = 0; i < std::size(image::kVmFlagNames); ++i)
        if (std::string_view(image::kVmFlagNames[i]) == name) return uint64_t(1) << i;
    return 0;
}

}  // namespace

Result<uint32_t> dump_mlockall(pid_t pid, const RemoteCall6& call) {
    auto at = call(SYS_mmap, {0, 4096, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, ~uint64_t(0), 0});
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
    auto smaps = read_file(strfmt("/proc/{}/smaps", pid), 256u << 20);
    auto gone = call(SYS_munmap, {page, 4096, 0, 0, 0, 0});
    if (!smaps) return std::unexpected(smaps.error());
    if (!gone) return std::unexpected(gone.error());
    if (*gone != 0)
        return sys_error(int(-*gone), strfmt("munmap of the probe page in task {}", pid));
    auto maps = parse_maps(*smaps);
    if (!maps) return std::unexpected(maps.error());
    for (const auto& m : *maps) {
        if (m.start != page) continue;
        uint32_t flags = 0;
        if (m.vm_flags & vm_flag("lo")) flags |= MCL_FUTURE;
        if (m.vm_flags & vm_flag("lf")) flags |= MCL_FUTURE | MCL_ONFAULT;
        return flags;
    }
    return make_error(EIO,
                      strfmt("task {}: the probe page at {:x} is not in its smaps", pid, page));
}

Status check_mlockall(const DecodedImage& img) {
    uint32_t f = img.mlockall.flags;
    if ((f & ~uint32_t(MCL_FUTURE | MCL_ONFAULT)) || f == MCL_ONFAULT || img.mlockall.reserved)
        return make_error(
            EINVAL, strfmt("image: mlockall flags 0x{:x} (reserved {})", f, img.mlockall.reserved));
    return {};
}

}  // namespace crfs::state
