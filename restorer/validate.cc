#include "restorer/validate.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/kobj.h"
#include "state/task_attrs.h"
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
