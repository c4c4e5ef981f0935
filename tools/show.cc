// crfs show [--json] FILE and crfs verify FILE: decode an image (FILE or - for
// stdin) with the one decoder the restorer uses.
#include <fcntl.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/core.h>

#include "common/escape.h"
#include "common/image_reader.h"
#include "common/io.h"
#include "tools/commands.h"
#include "tools/image_json.h"
#include "tools/show_chain.h"

namespace crfs::tool {
namespace {

std::string hex(uint64_t v) {
    return fmt::format("0x{:x}", v);
}

void print_text(const DecodedImage& img) {
    const auto& t = img.task;
    const auto& h = img.header;
    fmt::print(
        "crfs image v{}, x86_64, kernel {}, xsave features {} ({} bytes)\n", h.version,
        escape_nonprintable({h.kernel_release, strnlen(h.kernel_release, sizeof h.kernel_release)}),
        hex(h.xsave_features), h.xsave_size);
    fmt::print("task {} ({}) ppid {} pgid {} sid {} nice {}{}\n", t.pid,
               escape_nonprintable({t.comm, strnlen(t.comm, sizeof t.comm)}), t.ppid, t.pgid, t.sid,
               t.nice, (h.flags & image::kHeaderTaskWasStopped) ? ", stopped" : "");
    const auto& c = img.creds;
    fmt::print("uid {}/{}/{}/{} gid {}/{}/{}/{} cap_eff {}, cwd {}, root {}, exe {}\n", c.uid[0],
               c.uid[1], c.uid[2], c.uid[3], c.gid[0], c.gid[1], c.gid[2], c.gid[3], hex(c.cap_eff),
               img.cwd, img.root, img.exe);
    fmt::print("\n{} VMAs:\n", img.vmas.size());
    for (const auto& v : img.vmas)
        fmt::print("  {:012x}-{:012x} {} {:<12} {:8} KiB  {:6} pages stored  {}\n", v.rec.start,
                   v.rec.end, vma_perms(v.rec), vma_kind_name(v.rec.kind),
                   (v.rec.end - v.rec.start) / 1024, pages_in(img, v.rec),
                   escape_nonprintable(v.path));
    fmt::print("\n{} fds:\n", img.fds.size());
    for (const auto& f : img.fds) {
        if (f.rec.same_as >= 0) {
            fmt::print("  {:3} same as {}{}\n", f.rec.fd, f.rec.same_as,
                       (f.rec.fd_flags & image::kFdCloexec) ? " cloexec" : "");
            continue;
        }
        fmt::print("  {:3} {:<8} pos {:<10} flags 0{:o}{}  {}\n", f.rec.fd,
                   fd_kind_name(f.rec.kind), f.rec.pos, f.rec.open_flags,
                   (f.rec.fd_flags & image::kFdCloexec) ? " cloexec" : "",
                   escape_nonprintable(f.path));
    }
    const auto& s = img.sigstate;
    fmt::print("\nsignals: blocked {}, altstack {}+{}, {} pending\n", hex(s.blocked),
               hex(s.altstack_sp), s.altstack_size, img.pending.size());
    for (int sig = 1; sig <= 64; ++sig) {
        const auto& a = img.sigactions.action[sig - 1];
        if (a.handler)
            fmt::print("  {:2} handler {} flags {} mask {}\n", sig,
                       a.handler == 1 ? "SIG_IGN" : hex(a.handler), hex(a.flags), hex(a.mask));
    }
    fmt::print("\nregisters: rip {} rsp {} fs_base {}, xstate {} bytes\n", hex(img.regs.rip),
               hex(img.regs.rsp), hex(img.regs.fs_base), img.xstate.size());
    if (!img.threads.empty()) fmt::print("threads: {} besides the main one\n", img.threads.size());
    uint64_t stored = 0;
    for (const auto& p : img.pages) stored += p.nr_pages;
    fmt::print("pages: {} stored ({} KiB)", stored, stored * 4);
    if (img.stats)
        fmt::print(", {} copied, {} zero; frozen {:.3f} ms, checkpoint {:.3f} ms",
                   img.stats->pages_copied, img.stats->pages_zero, img.stats->frozen_ns / 1e6,
                   img.stats->total_ns / 1e6);
    fmt::print("\nimage: {} bytes, {} records, checksum {:016x}\n", img.size, img.record_count,
               img.checksum);
    if (img.chain)  // incr: docs/incremental.md
        fmt::print("chain: image {:016x}, {}\n", img.chain->id,
                   img.chain->base_id ? fmt::format("a delta of image {:016x}", img.chain->base_id)
                                      : std::string("complete (starts a chain)"));
    if (!img.processes.empty())  // trees: the records above are the first process's
        fmt::print("tree of {} processes (shown: the first)\n", img.processes.size());
}

// FILE as one image, or a chain (tools/show_chain.h).
struct Input {
    DecodedImage img;
    std::optional<ChainView> chain;
};

Result<Input> read_input(const std::string& path) {
    std::string name = path == "-" ? "stdin" : path;
    auto fd = open_input(path);
    if (!fd) return std::unexpected(fd.error().context(name));
    FdSource src(fd->get());
    auto img = decode_image(src);
    if (img) return Input{std::move(*img), std::nullopt};
    // Not one image: maybe several, a chain (its errors name the part).
    auto chain = read_chain(fd->get());
    if (!chain) return std::unexpected(chain.error().context(name));
    if (!*chain) return std::unexpected(img.error().context(name));
    DecodedImage composed = std::move((*chain)->composed);
    return Input{std::move(composed), std::move(*chain)};
}

}  // namespace

int cmd_show(const ShowOptions& o) {
    auto in = read_input(o.file);
    if (!in) {
        fmt::print(stderr, "crfs show: {}\n", in.error().what);
        return 1;
    }
    if (o.json) {
        auto j = image_to_json(in->img);
        if (in->chain) j["chain_parts"] = chain_json(in->chain->parts);  // incr
        fmt::print("{}\n", dump_json(j));
        return 0;
    }
    if (in->chain) print_chain_text(in->chain->parts);
    print_text(in->img);
    return 0;
}

int cmd_verify(const std::string& file) {
    auto in = read_input(file);
    if (!in) {
        fmt::print(stderr, "crfs verify: {}\n", in.error().what);
        return 1;
    }
    const DecodedImage& img = in->img;
    if (in->chain)  // incr: every part, the chain and the composition checked
        fmt::print("ok: a chain of {} images, composing {} records, {} bytes\n",
                   in->chain->parts.size(), img.record_count, img.size);
    else
        fmt::print("ok: {} records, {} bytes, checksum {:016x}{}\n", img.record_count, img.size,
                   img.checksum,
                   img.chain && img.chain->base_id
                       ? fmt::format(" (a delta of image {:016x}: restore it after its base)",
                                     img.chain->base_id)
                       : std::string());
    return 0;
}

}  // namespace crfs::tool
