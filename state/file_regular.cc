// A regular file with a name: its path, open flags and offset. Restore
// reopens the path (as the task, in stage 1) with the image's flags and seeks
// it to the offset; the file found there is held to the file policy first
// (state/file_policy.h, docs/files.md). An unlinked name of a file that still
// has other links is a reason (its path names nothing, its other names are
// not known), so is a path that no longer names the file the fd holds.
#include <fcntl.h>
#include <sys/stat.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "state/file_kind.h"

namespace crfs::state {
namespace {

constexpr std::string_view kDeleted = " (deleted)";

bool match(const FdView& f) {
    return S_ISREG(f.st.st_mode) && f.st.st_nlink > 0;
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    if (f.link.ends_with(kDeleted))
        return f.link + ": an unlinked name of a file with " + std::to_string(f.st.st_nlink) +
               " other link(s)" + std::string(kNotYet);
    // Restore reopens the path: it must still name this file.
    struct stat now {};
    if (::stat(f.link.c_str(), &now) != 0 || now.st_dev != f.st.st_dev || now.st_ino != f.st.st_ino)
        return f.link + " is no longer the file at that path; such a file" + std::string(kNotYet);
    return std::nullopt;
}

Status dump(pid_t, const FdView& f, TaskFd&) {
    if (!f.link.starts_with("/"))  // detect's pathless kind refuses it first
        return make_error(EBUSY, strfmt("fd {}: regular file without a path ({}) not supported yet",
                                        f.fd, f.link));
    return {};
}

// Path, flags and offset: the fd table's fields (state/fd_check.cc), its
// fingerprint the file policy's.
Status check(const FdEntry&, const DecodedImage&) {
    return {};
}

Status plan(const FdEntry&, FilePlanIn&, FdAction& a) {
    a.seek = true;
    a.type = S_IFREG;
    return {};
}

}  // namespace

const FileKind kRegularFileKind = {
    image::FdKind::kRegular, "regular file", match, detect, dump, check, plan, 0};

}  // namespace crfs::state
