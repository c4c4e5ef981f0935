// What the kinds' hostile-image checks share (restorer/check_fields.cc runs
// them all before anything is created): the error every out-of-range field
// gets, EINVAL "image field out of range: <what>", and the limits of the
// kernel that more than one kind's records are held to.
#pragma once

#include <cstdint>
#include <string>

#include "common/image_reader.h"
#include "common/result.h"

namespace crfs::check {

constexpr uint64_t kUserTop = 0x7ffffffff000ull;     // TASK_SIZE of 4-level paging
constexpr int32_t kMaxPid = 4 << 20;                 // PID_MAX_LIMIT
constexpr uint32_t kSsFlags = 1u | 2u | (1u << 31);  // SS_ONSTACK, SS_DISABLE, SS_AUTODISARM

inline Status bad(std::string what) {
    return make_error(EINVAL, "image field out of range: " + std::move(what));
}

// The tree's records that contradict each other (members, sharing, groups).
inline std::unexpected<Error> bad_image(const std::string& what) {
    return make_error(EINVAL, "bad image: " + what);
}

// A path the restore opens: absolute, no NUL.
inline bool bad_path(const std::string& p) {
    return p.empty() || p[0] != '/' || p.find('\0') != std::string::npos;
}

}  // namespace crfs::check
