#include "checkpoint/creds.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "checkpoint/task_attrs.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

template <class T>
std::string join(const T* v, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out;
}

// Comma-separated unsigned numbers in `base`.
Result<std::vector<uint64_t>> split_numbers(std::string_view s, int base) {
    std::vector<uint64_t> out;
    while (!s.empty()) {
        size_t comma = s.find(',');
        std::string_view w = s.substr(0, comma);
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v, base);
        if (ec != std::errc() || p != w.data() + w.size() || w.empty())
            return make_error(EINVAL, "bad number '" + std::string(w) + "' in credentials");
        out.push_back(v);
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

Status capset_caps(uint64_t eff, uint64_t prm) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    for (int i = 0; i < 2; ++i) {
        d[i].effective = uint32_t(eff >> (32 * i));
        d[i].permitted = uint32_t(prm >> (32 * i));
    }
    if (::syscall(SYS_capset, &hdr, d) != 0) return errno_error("capset");
    return {};
}

std::vector<gid_t> sorted(std::vector<gid_t> v) {
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

Result<Creds> creds_of_thread(pid_t tid, uid_t fsuid, gid_t fsgid, bool in_our_userns) {
    auto st = read_task_status(tid);
    if (!st) return sys_error(EACCES, strfmt("credentials of caller thread {}", tid));
    Creds c;
    std::copy(st->uid, st->uid + 4, c.uid);
    std::copy(st->gid, st->gid + 4, c.gid);
    c.groups.assign(st->groups.begin(), st->groups.end());
    if (in_our_userns) c.cap_eff = st->cap_eff, c.cap_prm = st->cap_prm;
    if (c.uid[3] != fsuid || c.gid[3] != fsgid)
        return make_error(EACCES, strfmt("caller thread {} changed its credentials", tid));
    return c;
}

std::string encode_creds(const Creds& c) {
    return join(c.uid, 4) + ":" + join(c.gid, 4) + ":" + join(c.groups.data(), c.groups.size()) +
           ":" + strfmt("{:x}:{:x}", c.cap_eff, c.cap_prm);
}

Result<Creds> decode_creds(std::string_view text) {
    std::vector<std::string_view> parts;
    for (size_t start = 0;;) {
        size_t colon = text.find(':', start);
        parts.push_back(text.substr(start, colon - start));
        if (colon == std::string_view::npos) break;
        start = colon + 1;
    }
    if (parts.size() != 5) return make_error(EINVAL, "credentials: expected 5 fields");
    auto uids = split_numbers(parts[0], 10);
    auto gids = split_numbers(parts[1], 10);
    auto groups = split_numbers(parts[2], 10);
    auto eff = split_numbers(parts[3], 16);
    auto prm = split_numbers(parts[4], 16);
    if (!uids || !gids || !groups || !eff || !prm || uids->size() != 4 || gids->size() != 4 ||
        eff->size() != 1 || prm->size() != 1)
        return make_error(EINVAL, "credentials: malformed");
    Creds c;
    for (int i = 0; i < 4; ++i) c.uid[i] = uid_t((*uids)[i]), c.gid[i] = gid_t((*gids)[i]);
    for (uint64_t g : *groups) c.groups.push_back(gid_t(g));
    c.cap_eff = (*eff)[0];
    c.cap_prm = (*prm)[0];
    return c;
}

Status assume_creds(const Creds& c) {
    // Raw syscalls: they change this thread only; the worker has no other.
    if (::prctl(PR_SET_KEEPCAPS, 1) != 0) return errno_error("PR_SET_KEEPCAPS");
    if (::syscall(SYS_setgroups, c.groups.size(), c.groups.data()) != 0)
        return errno_error("setgroups");
    if (::syscall(SYS_setresgid, c.gid[0], c.gid[1], c.gid[2]) != 0)
        return errno_error("setresgid");
    ::syscall(SYS_setfsgid, c.gid[3]);  // returns the old fsgid; checked below
    if (::syscall(SYS_setresuid, c.uid[0], c.uid[1], c.uid[2]) != 0)
        return errno_error("setresuid");
    // Leaving euid 0 cleared the effective set; raise what is still permitted
    // for setfsuid, then settle on the caller's sets.
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct now[2]{};
    if (::syscall(SYS_capget, &hdr, now) != 0) return errno_error("capget");
    uint64_t permitted = now[0].permitted | uint64_t(now[1].permitted) << 32;
    if (auto r = capset_caps(permitted, permitted); !r) return r;
    ::syscall(SYS_setfsuid, c.uid[3]);  // checked below
    if (auto r = capset_caps(c.cap_eff, c.cap_prm); !r) return r;
    if (::prctl(PR_SET_KEEPCAPS, 0) != 0) return errno_error("PR_SET_KEEPCAPS");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return errno_error("clear ambient capabilities");
    if (::prctl(PR_SET_DUMPABLE, 0) != 0) return errno_error("PR_SET_DUMPABLE");

    auto st = read_task_status(::getpid());
    if (!st) return std::unexpected(st.error().context("credentials of the worker"));
    bool same = std::equal(c.uid, c.uid + 4, st->uid) && std::equal(c.gid, c.gid + 4, st->gid) &&
                sorted(c.groups) == sorted({st->groups.begin(), st->groups.end()}) &&
                st->cap_eff == c.cap_eff && st->cap_prm == c.cap_prm && st->cap_inh == 0;
    if (!same)
        return make_error(EPERM, "the worker could not take on the caller's credentials exactly");
    return {};
}

}  // namespace crfs
