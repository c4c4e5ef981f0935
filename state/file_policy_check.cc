// The file policy at restore (docs/files.md, state/file_policy.h): every
// file the image takes from the file system is looked up as the writer
// (restore.cc runs this inside as_writer) and checked by the rule
// common/file_hash.h states for both sides:
//
//   regular fd open for writing or appending   a regular file at the path: it
//                                              may have grown or shrunk; the fd
//                                              is restored at its recorded offset
//   regular fd open read-only                  the same content (size + XXH3)
//   mapping of a file (not writable shared)    the same bytes under the mapping
//   writable shared mapping of a file          a regular file at the path
//   character device                           the same device number
//
// An fd or mapping checked by content whose image holds no fingerprint (an
// older image, a file over kMaxFingerprintBytes, one the checkpointing user
// could not read) gets the identity check instead: same inode, size and mtime
// for an fd, same inode for a mapping. Nothing is relaxed: a missing or edited
// fingerprint record only makes the check stricter or fail.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <optional>

#include "common/file_hash.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "state/file_policy.h"

namespace crfs {

namespace {

Status changed(const std::string& what, const std::string& path, const std::string& why) {
    return make_error(ESTALE, strfmt("{}: {} changed since the checkpoint: {}", what, path, why));
}

// The file a fingerprint is compared with, opened as the caller (the writer)
// before anything about it is compared, so that a file the writer may not
// read is refused for that, whatever its size. Only a regular file is opened
// (a FIFO or a device must not see an open).
struct Opened {
    UniqueFd fd;
    uint64_t size;
    struct stat st;
};
Result<Opened> open_regular(const std::string& what, const std::string& path, const char* not_reg) {
    struct stat pre;
    if (::stat(path.c_str(), &pre) != 0) return errno_error(strfmt("{}: {}", what, path));
    if (!S_ISREG(pre.st_mode)) return make_error(ESTALE, strfmt("{}: {} {}", what, path, not_reg));
    auto f = open_fd(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (!f) return std::unexpected(f.error().context(what));
    struct stat st;
    if (fstat(f->get(), &st) != 0) return errno_error(strfmt("{}: fstat {}", what, path));
    if (!S_ISREG(st.st_mode)) return make_error(ESTALE, strfmt("{}: {} {}", what, path, not_reg));
    return Opened{std::move(*f), uint64_t(st.st_size), st};
}

// The file the fingerprint was taken of, not written since (image_format.h
// FileIdentity): no need to read it.
bool unchanged(const struct stat& st, const image::FileIdentity& id) {
    return st.st_dev == id.dev && st.st_ino == id.ino && uint64_t(st.st_size) == id.size &&
           st.st_ctim.tv_sec == id.ctime_sec && st.st_ctim.tv_nsec == id.ctime_nsec;
}

Status same_hash(const std::string& what, const std::string& path, int fd, uint64_t off,
                 uint64_t len, uint64_t want, const char* differs) {
    auto h = hash_file_range(fd, off, len);
    if (!h) return std::unexpected(h.error().context(strfmt("{}: read {}", what, path)));
    if (*h != want) return changed(what, path, differs);
    return {};
}

Status check_fd(const FdEntry& f) {
    auto kind = image::FdKind(f.rec.kind);
    std::string what = strfmt("fd {}", f.rec.fd);
    if (f.content && fd_content_checked(f.rec)) {
        auto o = open_regular(what, f.path, "is no longer a regular file");
        if (!o) return std::unexpected(o.error());
        if (o->size != f.content->size)
            return changed(what, f.path, strfmt("size {}, image has {}", o->size, f.content->size));
        if (unchanged(o->st, f.content->id)) return {};
        return same_hash(what, f.path, o->fd.get(), 0, o->size, f.content->hash,
                         "its content differs");
    }
    struct stat st;
    if (::stat(f.path.c_str(), &st) != 0) return errno_error(strfmt("{}: {}", what, f.path));
    if (kind == image::FdKind::kCharDev) {
        if (!S_ISCHR(st.st_mode) || st.st_rdev != f.rec.rdev)
            return make_error(ESTALE, strfmt("{}: {} is no longer the device it was ({}:{})", what,
                                             f.path, major(f.rec.rdev), minor(f.rec.rdev)));
        return {};
    }
    if (!S_ISREG(st.st_mode))
        return make_error(ESTALE, strfmt("{}: {} is no longer a regular file", what, f.path));
    if (f.rec.same_as >= 0 || (f.rec.open_flags & O_ACCMODE) != O_RDONLY)
        return {};  // written to: may have changed (a shared description: checked at its lead)
    uint64_t size = uint64_t(st.st_size);
    if (st.st_ino != f.rec.ino || st.st_dev != f.rec.dev)
        return changed(what, f.path,
                       strfmt("inode {} on {:x}, image has {} on {:x} (and no content "
                              "fingerprint)",
                              st.st_ino, st.st_dev, f.rec.ino, f.rec.dev));
    if (size != f.rec.size)
        return changed(what, f.path, strfmt("size {}, image has {}", size, f.rec.size));
    if (st.st_mtim.tv_sec != f.rec.mtime_sec || st.st_mtim.tv_nsec != f.rec.mtime_nsec)
        return changed(what, f.path, "modified (mtime differs, and no content fingerprint)");
    return {};
}

// The file the last mapping checked by content was opened as (one library
// is mapped four or five times in a row: opened once for them all).
struct LastOpened {
    std::string path;
    Opened file;
};

Status check_vma(const VmaEntry& v, std::optional<LastOpened>& last) {
    auto kind = image::VmaKind(v.rec.kind);
    if (kind != image::VmaKind::kFilePrivate && kind != image::VmaKind::kFileShared) return {};
    std::string what = strfmt("mapping {:x}-{:x}", v.rec.start, v.rec.end);
    if (v.rec.flags & image::kVmaDeleted) {
        // Private: the image holds every page up to the file's end.
        if (kind == image::VmaKind::kFilePrivate) return {};
        return make_error(ENOTSUP, strfmt("{}: shared mapping of deleted file {}: not "
                                          "restorable yet",
                                          what, v.path));
    }
    if (v.content && vma_content_checked(v.rec)) {
        if (!last || last->path != v.path) {
            last.reset();
            auto opened = open_regular(what, v.path, "is not a regular file");
            if (!opened) return std::unexpected(opened.error());
            last.emplace(LastOpened{v.path, std::move(*opened)});
        }
        const Opened* o = &last->file;
        uint64_t off = v.rec.pgoff * image::kPageSize;
        uint64_t bytes = mapped_file_bytes(o->size, off, v.rec.end - v.rec.start);
        if (bytes != v.content->bytes)
            return changed(
                what, v.path,
                strfmt("{} bytes of it under the mapping, image has {}", bytes, v.content->bytes));
        if (unchanged(o->st, v.content->id)) return {};
        return same_hash(what, v.path, o->fd.get(), off, bytes, v.content->hash,
                         "the mapped content differs (overwritten in place?)");
    }
    struct stat st;
    if (::stat(v.path.c_str(), &st) != 0) return errno_error(strfmt("{}: {}", what, v.path));
    if (!S_ISREG(st.st_mode))
        return make_error(ESTALE, strfmt("{}: {} is not a regular file", what, v.path));
    if (!vma_content_checked(v.rec)) return {};  // writable shared: the task's own file
    if (st.st_ino != v.rec.ino)
        return make_error(ESTALE, strfmt("{}: {} was replaced since the checkpoint "
                                         "(inode {}, image has {}, and no content fingerprint)",
                                         what, v.path, st.st_ino, v.rec.ino));
    return {};
}

}  // namespace

Status check_files(const DecodedImage& img) {
    for (const auto& f : img.fds)
        // Only files reopened by path; the other kinds check their own records.
        if (image::FdKind(f.rec.kind) == image::FdKind::kRegular ||
            image::FdKind(f.rec.kind) == image::FdKind::kCharDev)
            if (auto s = check_fd(f); !s) return s;
    std::optional<LastOpened> last;
    for (const auto& v : img.vmas)
        if (auto s = check_vma(v, last); !s) return s;
    return {};
}

}  // namespace crfs
