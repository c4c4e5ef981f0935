#include "restorer/validate.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/kobj.h"
#include "state/threads.h"

namespace crfs {

namespace {

constexpr const char* kXsaveNames[] = {"x87",
                                       "sse",
                                       "avx",
                                       "mpx-bndregs",
                                       "mpx-bndcsr",
                                       "avx512-opmask",
                                       "avx512-zmm_hi256",
                                       "avx512-hi16_zmm",
                                       "pt",
                                       "pkru",
                                       "pasid",
                                       "cet-user",
                                       "cet-supervisor",
                                       "hdc",
                                       "uintr",
                                       "lbr",
                                       "hwp",
                                       "amx-tilecfg",
                                       "amx-tiledata"};

}  // namespace

uint64_t cpu_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}

std::string xsave_feature_names(uint64_t bits) {
    std::string out;
    for (unsigned i = 0; i < 64; ++i) {
        if (!(bits & (1ull << i))) continue;
        if (!out.empty()) out += ' ';
        out += i < std::size(kXsaveNames) ? kXsaveNames[i] : strfmt("bit{}", i);
    }
    return out;
}

Status check_cpu(const DecodedImage& img) {
    uint64_t have = cpu_xcr0();
    uint64_t missing = img.header.xsave_features & ~have;
    if (missing)
        return make_error(ENOTSUP,
                          strfmt("image needs CPU xsave features this CPU lacks: {} (image "
                                 "XCR0 0x{:x}, this CPU 0x{:x})",
                                 xsave_feature_names(missing), img.header.xsave_features, have));
    return check_cpu_state(img.xstate);
}

Status check_cpu_state(const std::string& xstate) {
    uint64_t have = cpu_xcr0();
    if (xstate.size() < 576)
        return make_error(EBADMSG, strfmt("xstate record of {} bytes is shorter than an "
                                          "xsave area (576)",
                                          xstate.size()));
    uint64_t bv;
    std::memcpy(&bv, xstate.data() + 512, 8);
    if (bv & ~have)
        return make_error(ENOTSUP, strfmt("saved registers use xsave features this CPU "
                                          "lacks: {}",
                                          xsave_feature_names(bv & ~have)));
    if (bv & (3ull << 17))
        return make_error(ENOTSUP, "saved registers hold AMX tile state: not restored yet");
    return {};
}

Status check_supported(const DecodedImage& img) {
    if (img.root != "/")
        return make_error(ENOTSUP, strfmt("task root is {}: chrooted tasks are not restored "
                                          "yet",
                                          img.root));
    // A task checkpointed in group-stop is restored and then stopped again
    // (restore.cc), so the flag needs no check here.
    return {};
}

Status check_creds(const DecodedImage& img, const RestoreRequest& req) {
    if (req.writer_is_root) return {};
    const auto& c = img.creds;
    auto deny = [&](std::string why) {
        return make_error(EPERM, strfmt("image credentials not the writer's ({}): only "
                                        "root may restore them",
                                        why));
    };
    for (int i = 0; i < 4; ++i) {
        if (c.uid[i] != req.writer_uid)
            return deny(strfmt("image uid {}, writer uid {}", c.uid[i], req.writer_uid));
        if (c.gid[i] != req.writer_gid)
            return deny(strfmt("image gid {}, writer gid {}", c.gid[i], req.writer_gid));
    }
    if (c.cap_prm || c.cap_eff || c.cap_amb || c.cap_inh)
        return deny(strfmt("image holds capabilities 0x{:x}",
                           c.cap_prm | c.cap_eff | c.cap_amb | c.cap_inh));
    if (!img.groups.empty() && req.writer_pid > 0) {
        // The writer's groups as the kernel holds them, not as passwd lists
        // them (a writer that dropped a group must not get it back).
        auto st = read_status(req.writer_pid);
        if (!st) return deny("cannot read the writer's groups: " + st.error().what);
        for (uint32_t g : img.groups)
            if (std::find(st->groups.begin(), st->groups.end(), g) == st->groups.end())
                return deny(strfmt("image group {} is not one of the writer's groups", g));
    } else if (!img.groups.empty()) {
        std::vector<gid_t> mine(256);
        int n = int(mine.size());
        struct passwd pw, *pwp = nullptr;
        char buf[4096];
        if (getpwuid_r(req.writer_uid, &pw, buf, sizeof buf, &pwp) != 0 || !pwp)
            return deny(strfmt("image has supplementary groups, uid {} has no passwd entry",
                               req.writer_uid));
        if (getgrouplist(pw.pw_name, req.writer_gid, mine.data(), &n) < 0) {
            mine.resize(size_t(n));
            if (getgrouplist(pw.pw_name, req.writer_gid, mine.data(), &n) < 0)
                return deny("cannot list the writer's groups");
        }
        mine.resize(size_t(n));
        for (uint32_t g : img.groups)
            if (std::find(mine.begin(), mine.end(), g) == mine.end())
                return deny(
                    strfmt("image group {} is not one of uid {}'s groups", g, req.writer_uid));
    }
    return {};
}

Status validate_image(const DecodedImage& img, const RestoreRequest& req) {
    if (req.want_pid > 0 && !req.may_choose_pid)
        return make_error(EPERM, strfmt("restoring into pid {} needs the right to choose pids "
                                        "(root, or the group the administrator named): use a "
                                        "slot with a name that is not a number",
                                        req.want_pid));
    if (auto s = check_fields(img); !s) return s;
    if (auto s = check_creds(img, req); !s) return s;
    if (auto s = check_cpu(img); !s) return s;
    for (const auto& t : img.threads)
        if (auto s = check_cpu_state(t.xstate); !s)
            return std::unexpected(s.error().context(strfmt("thread {}", t.rec.tid)));
    if (auto s = check_thread_ids(img, req); !s) return s;
    if (auto s = check_supported(img); !s) return s;
    return {};
}

}  // namespace crfs
