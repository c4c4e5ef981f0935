// names: PR_SET_VMA_ANON_NAME names of anonymous memory (state/vma_names.h).
#include "state/vma_names.h"

#include <unistd.h>

#include "common/procfs.h"
#include "common/strfmt.h"

namespace crfs::state {

namespace {

std::string_view prefix_of(image::VmaKind kind) {
    switch (kind) {
        case image::VmaKind::kAnonPrivate:
            return "[anon:";
        case image::VmaKind::kAnonShared:
        case image::VmaKind::kAnonSharedOwner:
        case image::VmaKind::kAnonSharedTaken:
            return "[anon_shmem:";
        default:
            return {};
    }
}

}  // namespace

std::string_view anon_vma_name(image::VmaKind kind, std::string_view path) {
    std::string_view prefix = prefix_of(kind);
    if (prefix.empty() || !path.starts_with(prefix) || !path.ends_with(']') ||
        path.size() < prefix.size() + 1)
        return {};
    return path.substr(prefix.size(), path.size() - prefix.size() - 1);
}

std::optional<std::string> anon_vma_name_problem(image::VmaKind kind, std::string_view path) {
    std::string_view prefix = prefix_of(kind);
    if (prefix.empty() || !path.starts_with(prefix)) return std::nullopt;
    std::string_view name = anon_vma_name(kind, path);
    if (name.empty()) return std::string("an empty or unterminated anonymous memory name");
    if (name.size() > kMaxAnonVmaName)
        return strfmt("an anonymous memory name of {} bytes (the kernel takes at most {})",
                      name.size(), kMaxAnonVmaName);
    if (name.find('\0') != std::string_view::npos)
        return std::string("an anonymous memory name holding a NUL byte");
    return std::nullopt;
}

void vma_name_reasons(TaskView& t, const MapsEntry& m, Reasons& out) {
    if (!m.path.starts_with("[anon_shmem:")) return;
    auto what = [&](std::string_view why) {
        out.push_back(strfmt("memory: {:x}-{:x} ({}) is {}; such a name{}", m.start, m.end, m.path,
                             why, kNotYet));
    };
    if (m.perms[3] != 's') {
        what("a named private mapping of a shmem file (a memfd)");
        return;
    }
    // The object of shared anonymous memory is the kernel's "dev/zero" file.
    std::string link = t.path(strfmt("map_files/{:x}-{:x}", m.start, m.end));
    char buf[256];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
    if (n < 0) return;  // not readable by the caller: the memory kind's map_files reason
    std::string_view file(buf, size_t(n));
    if (file != "/dev/zero (deleted)") what(strfmt("a named shared mapping of {}", file));
}

}  // namespace crfs::state
