#include "state/tree_shmem_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/check.h"
#include "state/tree_restore.h"

namespace crfs {
namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kUserTop = 0x7ffffffff000ull;  // no object is larger than an address space

bool is_owner(const VmaEntry& v) {
    return v.rec.kind == uint32_t(image::VmaKind::kAnonSharedOwner);
}
bool is_taken(const VmaEntry& v) {
    return v.rec.kind == uint32_t(image::VmaKind::kAnonSharedTaken);
}

// Object pages [first, end) of `v`.
std::pair<uint64_t, uint64_t> pages_of(const VmaEntry& v) {
    return {v.rec.pgoff, v.rec.pgoff + (v.rec.end - v.rec.start) / kPage};
}

bool covered(const std::vector<std::pair<uint64_t, uint64_t>>& have,
             std::pair<uint64_t, uint64_t> want) {
    uint64_t at = want.first;
    for (const auto& [s, e] : have)  // sorted
        if (s <= at && at < e) at = e;
    return at >= want.second;
}

// An empty shared anonymous object of `bytes`: an fd of its shmem file.
Result<UniqueFd> make_object(uint64_t bytes) {
    void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return errno_error("mmap of shared anonymous memory");
    auto a = reinterpret_cast<uint64_t>(p);
    auto fd = open_fd(strfmt("/proc/self/map_files/{:x}-{:x}", a, a + kPage), O_RDWR | O_CLOEXEC);
    munmap(p, kPage);
    if (!fd) return std::unexpected(fd.error());
    if (ftruncate(fd->get(), off_t(bytes)) != 0)
        return errno_error(strfmt("sizing shared anonymous memory to {} bytes", bytes));
    return fd;
}

Status copy_in(int image_fd, const PageRun& run, int fd, uint64_t at) {
    std::string buf(std::min<uint64_t>(run.nr_pages * kPage, 1 << 20), '\0');
    for (uint64_t done = 0; done < run.nr_pages * kPage;) {
        size_t n = size_t(std::min<uint64_t>(run.nr_pages * kPage - done, buf.size()));
        if (auto s = pread_exact(image_fd, buf.data(), n, run.stream_offset + done); !s)
            return std::unexpected(s.error().context("reading shared memory from the image"));
        ssize_t w = pwrite(fd, buf.data(), n, off_t(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return errno_error("writing shared anonymous memory");
        done += uint64_t(w);
    }
    return {};
}

// The owner's objects: made, filled with its pages (which leave img.pages).
Status make_owned(TreeRestore& tree, uint32_t i, DecodedImage& img, int image_fd) {
    std::map<uint64_t, std::vector<const VmaEntry*>> by_ino;
    for (const auto& v : img.vmas)
        if (is_owner(v)) by_ino[v.rec.ino].push_back(&v);
    for (auto& [ino, vmas] : by_ino) {
        for (const auto& o : tree.shm)
            if (o.ino == ino)
                return check::bad_image(
                    strfmt("shared memory object {} is owned by process {} and {}", ino,
                           tree.members[o.owner].pid, tree.members[i].pid));
        TreeShmObject obj{i, ino, {}, {}};
        uint64_t end = 0;
        for (const VmaEntry* v : vmas) {
            obj.pages.push_back(pages_of(*v));
            end = std::max(end, pages_of(*v).second);
        }
        std::sort(obj.pages.begin(), obj.pages.end());
        for (size_t k = 1; k < obj.pages.size(); ++k)  // one object mapped twice: state/shmem.cc
            if (obj.pages[k].first < obj.pages[k - 1].second)
                return check::bad_image(
                    strfmt("shared memory object {} mapped twice over one range", ino));
        if (end > kUserTop / kPage)
            return check::bad_image(strfmt("shared memory object {} of {} pages", ino, end));
        auto fd = make_object(end * kPage);
        if (!fd) return std::unexpected(fd.error());
        // Owned as the owner made it: by its fsuid and fsgid (the daemon made it).
        if (fchown(fd->get(), img.creds.uid[3], img.creds.gid[3]) != 0)
            return errno_error(strfmt("chown of shared memory object {}", ino));
        obj.fd = std::move(*fd);
        tree.shm.push_back(std::move(obj));
    }
    // Its pages: written once, into the object.
    std::vector<PageRun> rest;
    for (auto& run : img.pages) {
        // VMAs are sorted and disjoint, each run in one (common/image_reader.cc).
        auto it = std::upper_bound(img.vmas.begin(), img.vmas.end(), run.vaddr,
                                   [](uint64_t a, const VmaEntry& e) { return a < e.rec.start; });
        const VmaEntry* v = it == img.vmas.begin() ? nullptr : &*std::prev(it);
        if (v && is_taken(*v))
            return check::bad_image(strfmt(
                "pages at {:x} in a mapping of shared memory another process owns", run.vaddr));
        if (!v || !is_owner(*v)) {
            rest.push_back(std::move(run));
            continue;
        }
        for (const auto& o : tree.shm)
            if (o.ino == v->rec.ino && o.owner == i)
                if (auto s = copy_in(image_fd, run, o.fd.get(),
                                     (run.vaddr - v->rec.start) + v->rec.pgoff * kPage);
                    !s)
                    return s;
    }
    img.pages = std::move(rest);
    return {};
}

// A memfd this process maps whose record is an earlier process's (a memfd
// held or mapped by several members: made once by its first holder,
// state/memfd.cc): a dup of that process's memfd above our fds.
Status take_memfds(const TreeRestore& tree, uint32_t i, const DecodedImage& img, FdPlan& fds,
                   int min_fd) {
    std::vector<uint64_t> taken;
    for (const auto& v : img.vmas) {
        auto k = image::VmaKind(v.rec.kind);
        if (k != image::VmaKind::kMemfdShared && k != image::VmaKind::kMemfdPrivate) continue;
        uint64_t ino = v.rec.ino;
        bool own = std::any_of(img.memfds.begin(), img.memfds.end(),
                               [&](const MemfdEntry& m) { return m.rec.ino == ino; });
        if (own || std::find(taken.begin(), taken.end(), ino) != taken.end()) continue;
        std::string at = strfmt("VMA {:x}-{:x}", v.rec.start, v.rec.end);
        const MemfdEntry* rec = nullptr;
        const state::MemfdHeld* held = nullptr;
        for (uint32_t o = 0; o < i && !rec; ++o) {
            const auto& m = tree.members[o];
            if (!m.img || !m.fds) continue;
            for (const auto& e : m.img->memfds)
                if (e.rec.ino == ino) rec = &e;
            for (const auto& h : m.fds->memfds)
                if (rec && h.ino == ino) held = &h;
        }
        if (!rec || !held)
            return check::bad_image(
                strfmt("{}: memfd {} that no earlier process of the tree records", at, ino));
        int hi = fcntl(held->fd.get(), F_DUPFD_CLOEXEC, min_fd);
        if (hi < 0) return errno_error(at + ": dup of its memfd");
        fds.memfds.push_back({ino, UniqueFd(hi), 0});
        taken.push_back(ino);
    }
    return {};
}

// The seals of this process's own memfds that are sealed against writes:
// the daemon's, at the go (tree_seal_memfds).
Status defer_write_seals(TreeRestore& tree, FdPlan& fds, int min_fd) {
    for (auto& h : fds.memfds) {
        if (!(h.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))) continue;
        int d = fcntl(h.fd.get(), F_DUPFD_CLOEXEC, min_fd);
        if (d < 0) return errno_error(strfmt("dup of memfd {} to seal it", h.ino));
        tree.late_seals.push_back({h.ino, UniqueFd(d), h.seals});
        h.seals = 0;  // not the blob's
    }
    return {};
}

}  // namespace

Status tree_seal_memfds(TreeRestore& tree) {
    for (auto& h : tree.late_seals)
        if (fcntl(h.fd.get(), F_ADD_SEALS, int(h.seals)) != 0)
            return errno_error(
                strfmt("sealing memfd {} of the tree (F_ADD_SEALS 0x{:x})", h.ino, h.seals));
    tree.late_seals.clear();
    return {};
}

Status tree_shmem_plan(const RestoreRequest& req, DecodedImage& img, int image_fd, FdPlan& fds,
                       int min_fd) {
    if (req.tree) {
        if (auto s = defer_write_seals(*req.tree, fds, min_fd); !s) return s;
        if (auto s = take_memfds(*req.tree, req.tree_index, img, fds, min_fd); !s) return s;
    }
    bool any = std::any_of(img.vmas.begin(), img.vmas.end(),
                           [](const VmaEntry& v) { return is_owner(v) || is_taken(v); });
    if (!any) return {};
    if (!req.tree)
        return check::bad_image(
            "a mapping of shared memory shared with another process of a tree, but the "
            "image holds one process");
    TreeRestore& tree = *req.tree;
    uint32_t i = req.tree_index;
    for (const auto& m : img.memfds)  // "/proc/self/fd/N" is found by ino (state/memory_restore.cc)
        for (const auto& v : img.vmas)
            if ((is_owner(v) || is_taken(v)) && v.rec.ino == m.rec.ino)
                return check::bad_image(
                    strfmt("shared memory object {} is also a memfd", m.rec.ino));
    if (auto s = make_owned(tree, i, img, image_fd); !s) return s;
    std::vector<uint64_t> held;
    for (const auto& v : img.vmas) {
        if (!is_owner(v) && !is_taken(v)) continue;
        std::string at = strfmt("VMA {:x}-{:x}", v.rec.start, v.rec.end);
        if (!(v.rec.flags & image::kVmaShared))
            return check::bad_image(at + ": shared memory in a private mapping");
        const TreeShmObject* obj = nullptr;
        for (const auto& o : tree.shm)
            if (o.ino == v.rec.ino) obj = &o;
        if (!obj || (is_taken(v) && obj->owner >= i))
            return check::bad_image(
                strfmt("{}: shared memory object {} that no earlier process of the tree "
                       "owns",
                       at, v.rec.ino));
        if (is_taken(v) && !covered(obj->pages, pages_of(v)))
            return check::bad_image(
                strfmt("{}: pages {}-{} of shared memory object {}, which its owner "
                       "(process {}) does not map",
                       at, pages_of(v).first, pages_of(v).second, v.rec.ino,
                       tree.members[obj->owner].pid));
        if (std::find(held.begin(), held.end(), v.rec.ino) != held.end()) continue;
        int hi = fcntl(obj->fd.get(), F_DUPFD_CLOEXEC, min_fd);
        if (hi < 0) return errno_error(at + ": dup of its shared memory");
        fds.memfds.push_back({v.rec.ino, UniqueFd(hi), 0});
        held.push_back(v.rec.ino);
    }
    return {};
}

}  // namespace crfs
