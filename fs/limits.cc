#include "fs/limits.h"

#include <grp.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <charconv>
#include <vector>

#include "common/log.h"

namespace crfs::fs {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

std::optional<size_t> index_of(std::string_view option) {
    for (size_t i = 0; i < kResourceCount; ++i)
        if (kResources[i].option == option) return i;
    return std::nullopt;
}

// "123", "64K", "4M", "16G" (powers of 1024).
std::optional<uint64_t> parse_count(std::string_view v, bool size) {
    uint64_t shift = 0;
    if (size && !v.empty()) {
        switch (v.back()) {
            case 'K':
            case 'k':
                shift = 10;
                break;
            case 'M':
            case 'm':
                shift = 20;
                break;
            case 'G':
            case 'g':
                shift = 30;
                break;
            default:
                break;
        }
        if (shift) v.remove_suffix(1);
    }
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
    if (shift && n > (UINT64_MAX >> shift)) return std::nullopt;
    return n << shift;
}

Result<gid_t> parse_group(std::string_view v) {
    std::string name(v);
    if (auto n = parse_count(v, false); n && *n < UINT32_MAX) return static_cast<gid_t>(*n);
    std::vector<char> buf(16384);
    group gr, *found = nullptr;
    int err = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (!found)
        return make_error(EINVAL, "restore_pid_group=" + name + ": " +
                                      (err ? std::strerror(err) : "no such group"));
    return gr.gr_gid;
}

}  // namespace

LimitConfig LimitConfig::defaults() {
    LimitConfig c;
    struct sysinfo si {};
    uint64_t ram = ::sysinfo(&si) == 0 ? uint64_t{si.totalram} * si.mem_unit : 2 * kGiB;
    c.max[static_cast<size_t>(Resource::kSpoolBytes)] = std::min(ram / 2, 16 * kGiB);
    c.max[static_cast<size_t>(Resource::kSlots)] = 64;
    c.max[static_cast<size_t>(Resource::kImageHandles)] = 8;
    c.max[static_cast<size_t>(Resource::kCheckpoints)] = 2;
    c.max[static_cast<size_t>(Resource::kRestores)] = 2;
    return c;
}

bool LimitConfig::is_option(std::string_view name) {
    return name == "restore_pid_group" || index_of(name).has_value();
}

Status LimitConfig::set(std::string_view name, std::string_view value) {
    if (name == "restore_pid_group") {
        auto gid = parse_group(value);
        if (!gid) return std::unexpected(gid.error());
        restore_pid_group = *gid;
        return {};
    }
    auto i = index_of(name);
    if (!i) return make_error(EINVAL, "unknown option " + std::string(name));
    auto n = parse_count(value, *i == static_cast<size_t>(Resource::kSpoolBytes));
    if (!n)
        return make_error(EINVAL, std::string(name) + "=" + std::string(value) +
                                      ": expected a non-negative number" +
                                      (*i == 0 ? " of bytes (K, M, G suffixes)" : ""));
    max[*i] = *n;
    return {};
}

Lease& Lease::operator=(Lease&& o) noexcept {
    if (this != &o) {
        reset();
        limits_ = o.limits_;
        uid_ = o.uid_;
        r_ = o.r_;
        n_ = o.n_;
        o.limits_ = nullptr;
        o.n_ = 0;
    }
    return *this;
}

Status Lease::grow(uint64_t n) {
    if (!limits_) return make_error(EINVAL, "lease: nothing to grow");
    if (auto ok = limits_->add(uid_, r_, n); !ok) return ok;
    n_ += n;
    return {};
}

void Lease::reset() {
    if (limits_ && n_) limits_->give_back(uid_, r_, n_);
    n_ = 0;
}

Result<Lease> Limits::take(uid_t uid, Resource r, uint64_t n) {
    if (auto ok = add(uid, r, n); !ok) return std::unexpected(ok.error());
    Lease l;
    l.limits_ = this;
    l.uid_ = uid;
    l.r_ = r;
    l.n_ = n;
    return l;
}

uint64_t Limits::used(uid_t uid, Resource r) const {
    std::lock_guard lock(mu_);
    auto it = used_.find(uid);
    return it == used_.end() ? 0 : it->second[static_cast<size_t>(r)];
}

Status Limits::add(uid_t uid, Resource r, uint64_t n) {
    auto i = static_cast<size_t>(r);
    {
        std::lock_guard lock(mu_);
        uint64_t& have = used_[uid][i];
        if (uid == 0 || (n <= config_.max[i] && have <= config_.max[i] - n)) {
            have += n;
            return {};
        }
        if (std::all_of(used_[uid].begin(), used_[uid].end(), [](uint64_t v) { return !v; }))
            used_.erase(uid);
    }
    const ResourceInfo& info = kResources[i];
    std::string why = "uid " + std::to_string(uid) + ": at its limit of " +
                      std::to_string(config_.max[i]) + " " + std::string(info.unit) + " (" +
                      std::string(info.option) + ")";
    log_info("%s", why.c_str());
    return make_error(info.err, why);
}

void Limits::give_back(uid_t uid, Resource r, uint64_t n) {
    std::lock_guard lock(mu_);
    auto it = used_.find(uid);
    if (it == used_.end()) return;
    uint64_t& have = it->second[static_cast<size_t>(r)];
    have -= std::min(have, n);
    if (std::all_of(it->second.begin(), it->second.end(), [](uint64_t v) { return !v; }))
        used_.erase(it);
}

}  // namespace crfs::fs
