#include "tools/show_chain.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/core.h>

#include "common/io.h"

namespace crfs::tool {

Result<UniqueFd> open_input(const std::string& path) {
    if (path != "-") return open_fd(path, O_RDONLY);
    UniqueFd out(::memfd_create("crfs-stdin", MFD_CLOEXEC));
    if (!out) return errno_error("memfd for stdin");
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("read stdin");
        if (n == 0) break;
        if (auto r = write_full(out.get(), buf, size_t(n)); !r) return std::unexpected(r.error());
    }
    if (::lseek(out.get(), 0, SEEK_SET) != 0) return errno_error("seek the copy of stdin");
    return out;
}

Result<std::optional<ChainView>> read_chain(int fd) {
    ChainView v;
    auto composed = compose_chain(fd, false, &v.parts);
    if (!composed) return std::unexpected(composed.error());
    if (!*composed) return std::nullopt;
    FdSource src(composed->get());
    auto img = decode_image(src);
    if (!img) return std::unexpected(img.error().context("the composed image"));
    v.composed = std::move(*img);
    return std::optional<ChainView>(std::move(v));
}

void print_chain_text(const std::vector<ChainPart>& parts) {
    fmt::print("chain of {} images:\n", parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
        const ChainPart& p = parts[i];
        fmt::print(
            "  {:3} image {:016x} {:<27} {:3} process{} {:8} pages stored {:8} kept  {} "
            "bytes\n",
            i + 1, p.chain.id,
            p.chain.base_id ? fmt::format("delta of {:016x}", p.chain.base_id)
                            : std::string("complete"),
            p.processes ? p.processes : 1, p.processes > 1 ? "es" : "", p.pages_stored,
            p.pages_kept, p.size);
    }
    fmt::print("\ncomposed:\n");
}

nlohmann::json chain_json(const std::vector<ChainPart>& parts) {
    auto out = nlohmann::json::array();
    for (const ChainPart& p : parts)
        out.push_back({{"id", p.chain.id},
                       {"base_id", p.chain.base_id},
                       {"processes", p.processes ? p.processes : 1},
                       {"pages_stored", p.pages_stored},
                       {"pages_kept", p.pages_kept},
                       {"size", p.size}});
    return out;
}

}  // namespace crfs::tool
