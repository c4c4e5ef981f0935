#include "restorer/image_chain.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "common/image_reader.h"
#include "common/image_writer.h"
#include "common/strfmt.h"
#include "crfs/image_format.h"

namespace crfs {

namespace {

using image::RecordType;
constexpr uint64_t kPage = image::kPageSize;

struct Part {
    uint64_t begin, end;  // in the spool
};

// One record of a part, as framed.
struct Frame {
    uint32_t type;
    const char* payload;
    uint64_t len;
};

// Calls f(frame) for every record of [begin, end) up to, not including, the
// trailer; returns where the part ends (after its trailer), or nullopt if the
// bytes are not framed as an image (the decoder then says precisely why).
// `f` returns whether to go on; a walk it stops returns nullopt.
template <class F>
std::optional<uint64_t> walk(const char* d, uint64_t begin, uint64_t end, F&& f) {
    if (end - begin < sizeof(image::Header)) return std::nullopt;
    image::Header h;
    std::memcpy(&h, d + begin, sizeof h);
    if (std::memcmp(h.magic, image::kMagic, sizeof h.magic) != 0 || h.header_size < sizeof h ||
        h.header_size > end - begin)
        return std::nullopt;
    for (uint64_t pos = begin + h.header_size;;) {
        image::RecordHeader rh;
        if (end - pos < sizeof rh) return std::nullopt;
        std::memcpy(&rh, d + pos, sizeof rh);
        pos += sizeof rh;
        if (rh.length > end - pos) return std::nullopt;
        if (rh.type == uint32_t(RecordType::kTrailer)) return pos + rh.length;
        if (!f(Frame{rh.type, d + pos, rh.length})) return std::nullopt;
        pos += rh.length;
    }
}

// Parts by their framing; nullopt if the bytes are not whole images one after another.
std::optional<std::vector<Part>> split_parts(const char* d, uint64_t size) {
    std::vector<Part> parts;
    for (uint64_t pos = 0; pos < size;) {
        if (parts.size() == kMaxChainParts) return std::nullopt;
        auto end = walk(d, pos, size, [](const Frame&) { return true; });
        if (!end) return std::nullopt;
        parts.push_back({pos, *end});
        pos = *end;
    }
    return parts;
}

// The chain record of a part, if its first record is one. The walk stops
// there (a 30,000-area image has a record on every page of its spool).
std::optional<image::ChainRecord> first_chain(const char* d, const Part& p) {
    std::optional<image::ChainRecord> out;
    walk(d, p.begin, p.end, [&](const Frame& f) {
        if (f.type == uint32_t(RecordType::kChain) && f.len == sizeof(image::ChainRecord))
            out.emplace(), std::memcpy(&*out, f.payload, sizeof *out);
        return false;
    });
    return out;
}

// Pages of the state composed so far: sorted, disjoint runs, each pointing at
// its bytes in the spool.
struct Run {
    uint64_t vaddr, pages;
    const char* data;
    uint64_t end() const { return vaddr + pages * kPage; }
};

// The state after part `img`: its own pages, and from `before` the pages its
// keep records name.
Result<std::vector<Run>> apply(const std::vector<Run>& before, const DecodedImage& img,
                               const char* part, uint32_t index) {
    std::vector<Run> out;
    size_t i = 0;
    for (const image::KeepRecord& k : img.keeps) {
        uint64_t lo = k.vaddr, hi = k.vaddr + k.nr_pages * kPage;
        while (i < before.size() && before[i].end() <= lo) ++i;
        for (size_t j = i; j < before.size() && before[j].vaddr < hi; ++j) {
            uint64_t a = std::max(lo, before[j].vaddr), b = std::min(hi, before[j].end());
            if (a < b) out.push_back({a, (b - a) / kPage, before[j].data + (a - before[j].vaddr)});
        }
    }
    for (const PageRun& r : img.pages) out.push_back({r.vaddr, r.nr_pages, part + r.stream_offset});
    std::sort(out.begin(), out.end(), [](const Run& a, const Run& b) { return a.vaddr < b.vaddr; });
    // A page stored twice, or both stored and kept, is no image crfs writes.
    for (size_t j = 1; j < out.size(); ++j)
        if (out[j].vaddr < out[j - 1].end())
            return make_error(EINVAL, strfmt("image part {}: page {:x} is stored twice or both "
                                             "stored and kept",
                                             index, out[j].vaddr));
    return out;
}

// One part decoded: each live process's records (one, the task, for an
// image of one process), keyed by pid (0 for one process).
struct PartImage {
    bool tree = false;
    std::optional<image::ChainRecord> chain;
    std::vector<std::pair<int32_t, DecodedImage>> members;  // image order, zombies left out
    const DecodedImage* of(int32_t pid) const {
        for (const auto& [p, img] : members)
            if (p == pid) return &img;
        return nullptr;
    }
};

// The pids of a part's processes, for an error message.
std::string pid_list(const PartImage& p) {
    std::string out;
    for (const auto& m : p.members) out += (out.empty() ? "" : ",") + std::to_string(m.first);
    return out;
}

// Writes the image of the last part with the composed pages into a memfd:
// its records, each live process's pages (`pages[i]` for its members[i]) in
// place of its pages and keep records.
Result<UniqueFd> build(const char* d, const Part& last, const PartImage& img,
                       const std::vector<std::vector<Run>>& pages) {
    image::Header h = img.members.front().second.header;
    h.header_size = sizeof h;  // what the writer writes; a longer header's extra bytes are not kept
    ImageWriter w(h);
    // The process whose records are being copied: its index in img.members,
    // and whether its pages are written yet (a zombie has none).
    size_t at = 0;
    bool pages_done = false, zombie = false;
    uint32_t process = 0;
    auto emit_pages = [&] {
        if (pages_done || zombie) return;
        pages_done = true;
        const DecodedImage& m = img.members[at].second;
        size_t v = 0;
        for (const Run& r : pages[at]) {
            // Cut at the VMAs' ends (a pages record lies in one VMA) and the record limit.
            for (uint64_t a = r.vaddr; a < r.end();) {
                while (v < m.vmas.size() && m.vmas[v].rec.end <= a) ++v;
                uint64_t to = std::min(r.end(), v < m.vmas.size() ? m.vmas[v].rec.end : a);
                to = std::min(to, a + uint64_t(image::kMaxPagesPerRecord) * kPage);
                if (to <= a) return;  // decode checked every run lies in a VMA
                image::PagesRecord pr{a, uint32_t((to - a) / kPage), 0};
                w.add_external(RecordType::kPages, Payload().add(pr).bytes(),
                               r.data + (a - r.vaddr), to - a);
                a = to;
            }
        }
    };
    const auto& procs = img.members.front().second.processes;
    // streamtree (version 16): a tree's pages are in its page sections; each
    // live process's composed pages go into its own, right after its
    // member-pages record (zombies come after the live processes and have
    // none: a section's process is its index in img.members). A live
    // process with composed pages and no section is refused, never dropped.
    if (img.tree && h.version >= image::kFirstSectionedVersion) {
        std::vector<bool> placed(img.members.size());
        bool ok =
            walk(d, last.begin, last.end, [&](const Frame& f) {
                auto t = RecordType(f.type);
                if (t == RecordType::kPages || t == RecordType::kKeep || t == RecordType::kChain)
                    return true;
                w.add_external(t, {}, f.payload, f.len);
                if (t != RecordType::kMemberPages) return true;
                image::MemberPagesRecord m{};
                std::memcpy(&m, f.payload, sizeof m);
                if (m.process >= img.members.size() || m.process >= procs.size() ||
                    img.members[m.process].first != procs[m.process].pid)
                    return false;
                at = m.process;
                zombie = pages_done = false;
                emit_pages();
                placed[at] = true;
                return true;
            }).has_value();
        for (size_t i = 0; ok && i < placed.size(); ++i) ok = placed[i] || pages[i].empty();
        if (!ok)
            return make_error(EINVAL,
                              "bad image: its last part's page sections are not one per "
                              "live process with pages");
    } else {
        walk(d, last.begin, last.end, [&](const Frame& f) {
            auto t = RecordType(f.type);
            if (t == RecordType::kProcess) {  // the next process's section
                if (process > 0) emit_pages();
                if (process > 0 && !zombie) ++at;
                zombie = procs[process].flags & image::kProcessZombie;
                pages_done = false;
                ++process;
            } else if (t == RecordType::kPages || t == RecordType::kKeep) {
                emit_pages();
                return true;
            } else if (t == RecordType::kChain) {
                return true;
            } else if (t == RecordType::kStats) {
                emit_pages();
            }
            w.add_external(t, {}, f.payload, f.len);
            return true;
        });
        emit_pages();
    }
    ImageStream s = std::move(w).finish();
    UniqueFd out(::memfd_create("crfs-chain", MFD_CLOEXEC));
    if (!out) return errno_error("memfd for the composed image");
    if (auto r = s.write_to(out.get()); !r) return std::unexpected(r.error());
    if (::lseek(out.get(), 0, SEEK_SET) != 0) return errno_error("seek the composed image");
    return out;
}

// Decodes and verifies part `index` (1-based): framing, checksum, each live
// process's records.
Result<PartImage> decode_part(const char* d, const Part& p, size_t index) {
    PartImage out;
    MemorySource src(d + p.begin, p.end - p.begin);
    auto first = decode_image(src);
    if (!first) return std::unexpected(first.error().context(strfmt("image part {}", index)));
    out.tree = !first->processes.empty();
    out.chain = first->chain;
    std::vector<image::ProcessRecord> procs = first->processes;
    if (!out.tree) {
        out.members.emplace_back(0, std::move(*first));
        return out;
    }
    out.members.emplace_back(procs[0].pid, std::move(*first));
    for (uint32_t i = 1; i < procs.size(); ++i) {
        if (procs[i].flags & image::kProcessZombie) continue;
        MemorySource again(d + p.begin, p.end - p.begin);
        DecodeOptions opts;
        opts.process = i;
        opts.tree = &out.members.front().second;
        auto img = decode_image(again, opts);
        if (!img)
            return std::unexpected(
                img.error().context(strfmt("image part {}, process {}", index, procs[i].pid)));
        if (out.of(procs[i].pid))
            return make_error(EINVAL,
                              strfmt("image part {}: process {} twice", index, procs[i].pid));
        out.members.emplace_back(procs[i].pid, std::move(*img));
    }
    return out;
}

// A delta is of the very processes of its base (docs/incremental.md "Trees").
Status same_processes(const PartImage& base, const PartImage& delta, size_t index) {
    bool same = base.tree == delta.tree && base.members.size() == delta.members.size();
    for (const auto& m : delta.members) same = same && base.of(m.first);
    if (same) return {};
    return make_error(EINVAL, strfmt("image part {} holds processes [{}], its base (part {}) "
                                     "[{}]: a delta is of the very processes of its base",
                                     index, pid_list(delta), index - 1, pid_list(base)));
}

struct Mapping {
    void* p = MAP_FAILED;
    size_t len = 0;
    ~Mapping() {
        if (p != MAP_FAILED) ::munmap(p, len);
    }
};

}  // namespace

Result<UniqueFd> compose_chain(int fd, bool one_image, std::vector<ChainPart>* info) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno_error("stat the image");
    if (st.st_size <= 0) return UniqueFd();
    Mapping m;
    m.len = size_t(st.st_size);
    m.p = ::mmap(nullptr, m.len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m.p == MAP_FAILED) return errno_error("map the image");
    const char* d = static_cast<const char*>(m.p);
    auto parts = one_image ? std::optional<std::vector<Part>>() : split_parts(d, m.len);
    if (!parts || parts->size() == 1) {
        // One image (or bytes the decoder will name the fault of): a delta
        // without what it was taken relative to is refused.
        auto c = first_chain(d, parts ? parts->front() : Part{0, m.len});
        if (c && c->base_id != 0)
            return make_error(EINVAL, strfmt("image is a delta of image {:016x}: restore it after "
                                             "its base (cat base.img delta.img > image)",
                                             c->base_id));
        return UniqueFd();
    }
    // Every part decoded and verified (framing, checksum, consistency) first.
    std::vector<PartImage> imgs;
    for (size_t i = 0; i < parts->size(); ++i) {
        auto img = decode_part(d, (*parts)[i], i + 1);
        if (!img) return std::unexpected(img.error());
        imgs.push_back(std::move(*img));
    }
    for (size_t i = 0; i < imgs.size(); ++i) {
        const auto& c = imgs[i].chain;
        if (!c)
            return make_error(EINVAL, strfmt("image part {} is no image of a chain (read from "
                                             "/crfs/<pid>/delta)",
                                             i + 1));
        if (i == 0 && c->base_id != 0)
            return make_error(EINVAL, strfmt("image part 1 is a delta of image {:016x}: the chain "
                                             "must start with that image",
                                             c->base_id));
        if (i > 0 && c->base_id != imgs[i - 1].chain->id)
            return make_error(EINVAL,
                              strfmt("image part {} is {} of image {:016x}, not of part {} "
                                     "(image {:016x}): parts missing, swapped or of another task",
                                     i + 1, c->base_id ? "a delta" : "no delta", c->base_id, i,
                                     imgs[i - 1].chain->id));
        if (i > 0)
            if (auto s = same_processes(imgs[i - 1], imgs[i], i + 1); !s)
                return std::unexpected(s.error());
    }
    for (size_t i = 0; info && i < imgs.size(); ++i) {
        ChainPart p{*imgs[i].chain, 0, 0, 0, (*parts)[i].end - (*parts)[i].begin};
        if (imgs[i].tree) p.processes = uint32_t(imgs[i].members.front().second.processes.size());
        for (const auto& [pid, img] : imgs[i].members) {
            for (const PageRun& r : img.pages) p.pages_stored += r.nr_pages;
            for (const image::KeepRecord& k : img.keeps) p.pages_kept += k.nr_pages;
        }
        info->push_back(p);
    }
    // Each process's pages, part by part (matched by pid).
    std::vector<std::vector<Run>> state(imgs.front().members.size());
    for (size_t i = 0; i < imgs.size(); ++i) {
        std::vector<std::vector<Run>> next;
        for (const auto& [pid, img] : imgs[i].members) {
            static const std::vector<Run> none;
            const std::vector<Run>* before = &none;
            if (i > 0)
                for (size_t k = 0; k < imgs[i - 1].members.size(); ++k)
                    if (imgs[i - 1].members[k].first == pid) before = &state[k];
            auto runs = apply(*before, img, d + (*parts)[i].begin, uint32_t(i + 1));
            if (!runs) return std::unexpected(runs.error());
            next.push_back(std::move(*runs));
        }
        state = std::move(next);
    }
    return build(d, parts->back(), imgs.back(), state);
}

}  // namespace crfs
