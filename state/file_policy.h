// The file policy (docs/files.md): what a file a restore takes from the file
// system must match, one kind with its two halves next to each other:
//   dump   state/file_policy_dump.cc: fingerprint_files, after the thaw
//   check  state/file_policy_check.cc: check_files, as the writer, before
//          anything is created (restorer/restore.cc calls it)
// The rule both sides apply is common/file_hash.h's.
//
// Content fingerprints of the files a restore takes from the file system:
// the whole content of each regular file the task opened read-only, and the
// bytes of the file under each file mapping except writable shared ones (the
// task's own writes change those, like a log it appends to). Made after the
// thaw, as the caller (the crfs-ckpt worker), from the paths; a file the
// caller cannot read, that is no longer the inode the task held, that changed
// since the freeze, or that is larger than kMaxFingerprintBytes gets none,
// and the restore then checks identity (inode, size, mtime) instead:
// stricter, never laxer.
#pragma once

#include <sys/stat.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/files.h"
#include "common/image_reader.h"
#include "common/procfs.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"

namespace crfs {

struct Fingerprints {
    std::vector<image::FdContentRecord> fds;
    std::vector<image::VmaContentRecord> vmas;
};

// The files a checkpoint's fingerprints opened, by path, kept open for the
// checkpoint: a library is mapped in 4-5 areas, and a tree's members map the
// same ones (perf: one open of each per checkpoint, not one per area per
// member). A kept file is fstatted once, at its first use (perf: 15 areas
// per member of a tree of one program, each fstatted before); its identity
// then is what each of its hashes is told under.
class OpenedFiles {
  public:
    // `path` opened as the caller, or -1. `spare` holds an fd not kept (too many kept).
    int get(const std::string& path, UniqueFd& spare);
    // fstat of the fd get(path) gave: kept for a kept file (false: it failed).
    bool stat(const std::string& path, int fd, struct stat& st);

  private:
    std::map<std::string, UniqueFd, std::less<>> fds_;  // an empty UniqueFd: open failed
    std::map<std::string, std::optional<struct stat>, std::less<>> stats_;
};

// For the fds and mappings that common/file_hash.h's rules say are checked
// by content. `opened`: shared by a tree's members (null: this call's own).
Fingerprints fingerprint_files(const std::vector<TaskFd>& fds, const std::vector<MapsEntry>& maps,
                               OpenedFiles* opened = nullptr);

// Looks up every file the image names: call it with the writer's credentials
// (restorer/writer.h as_writer), so that it sees, and its errors tell, only
// what the writer could see.
Status check_files(const DecodedImage& img);

}  // namespace crfs
