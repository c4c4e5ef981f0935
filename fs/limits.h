// Per-user bounds (issue 8, items 14-16): what one user may hold of the
// daemon's memory, descriptors and workers, so that no user can exhaust them
// for the others. docs/security-limits.md has the options, their defaults
// and what a user sees at each limit.
//
// Every bound is counted per uid (the fsuid FUSE reports). uid 0 is counted
// but never refused: root can exhaust the machine without crfs anyway.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace crfs::fs {

enum class Resource : unsigned {
    kSpoolBytes,    // bytes written into slots and not yet restored: ENOSPC
    kSlots,         // slots the user made: EMFILE
    kImageHandles,  // open handles that read an `image` (each holds a snapshot): EMFILE
    kCheckpoints,   // checkpoints running at once: EAGAIN
    kRestores,      // restores running at once: EAGAIN
};
inline constexpr size_t kResourceCount = 5;

// One row per resource: its mount option, what the log calls it, its errno.
struct ResourceInfo {
    std::string_view option;
    std::string_view unit;
    int err;
};
inline constexpr ResourceInfo kResources[kResourceCount] = {
    {"user_spool", "spool bytes", ENOSPC},
    {"user_slots", "slots", EMFILE},
    {"user_image_handles", "open image handles", EMFILE},
    {"user_checkpoints", "concurrent checkpoints", EAGAIN},
    {"user_restores", "concurrent restores", EAGAIN},
};

struct LimitConfig {
    std::array<uint64_t, kResourceCount> max{};
    // Members of this group (and root) may name slots after pids.
    std::optional<gid_t> restore_pid_group;

    // The defaults: user_spool min(RAM/2, 16 GiB), 64 slots, 8 image
    // handles, 2 checkpoints and 2 restores at once.
    static LimitConfig defaults();
    // Applies one `-o NAME=VALUE` of the options above (sizes take K, M, G
    // suffixes; restore_pid_group a group name or gid). EINVAL with words.
    Status set(std::string_view name, std::string_view value);
    // Whether NAME is one of the options above.
    static bool is_option(std::string_view name);
};

class Limits;

// A share of one resource, given back when destroyed. Move-only.
class Lease {
  public:
    Lease() = default;
    Lease(Lease&& o) noexcept { *this = std::move(o); }
    Lease& operator=(Lease&& o) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { reset(); }

    // Takes `n` more of the same resource for the same user (same errors as
    // Limits::take). A default-constructed lease cannot grow.
    Status grow(uint64_t n);
    void reset();
    uint64_t amount() const { return n_; }

  private:
    friend class Limits;
    Limits* limits_ = nullptr;
    uid_t uid_ = 0;
    Resource r_ = Resource::kSlots;
    uint64_t n_ = 0;
};

class Limits {
  public:
    explicit Limits(LimitConfig config) : config_(std::move(config)) {}
    const LimitConfig& config() const { return config_; }

    // Takes `n` of `r` for `uid`, or fails with the resource's errno and
    // words naming the limit and its option (also logged: the user's own
    // errno is all they see, the administrator needs the why).
    Result<Lease> take(uid_t uid, Resource r, uint64_t n = 1);
    // What `uid` holds of `r` now.
    uint64_t used(uid_t uid, Resource r) const;

  private:
    friend class Lease;
    Status add(uid_t uid, Resource r, uint64_t n);
    void give_back(uid_t uid, Resource r, uint64_t n);

    const LimitConfig config_;
    mutable std::mutex mu_;
    std::map<uid_t, std::array<uint64_t, kResourceCount>> used_;  // no zero rows
};

}  // namespace crfs::fs
