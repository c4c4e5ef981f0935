// Unit tests of the restore driver's pure parts: vdso/vvar placement,
// credential policy, CPU check, signal frame layout, itimer re-arm.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "restorer/validate.h"
#include "state/itimers.h"
#include "state/memory_restore.h"
#include "state/regs.h"
#include "state/signals.h"
#include "state/task_attrs.h"

using namespace crfs;

namespace {

VmaEntry vma(uint64_t s, uint64_t e, image::VmaKind k, std::string path = "") {
    VmaEntry v{};
    v.rec.start = s;
    v.rec.end = e;
    v.rec.kind = uint32_t(k);
    v.rec.flags = image::kVmaRead | image::kVmaWrite;
    v.path = std::move(path);
    return v;
}

DecodedImage image_with_specials(uint64_t vvar, uint64_t vclock, uint64_t vdso) {
    DecodedImage img;
    img.vmas.push_back(vma(0x400000, 0x401000, image::VmaKind::kAnonPrivate));
    img.vmas.push_back(vma(vvar, vvar + 0x4000, image::VmaKind::kVvar, "[vvar]"));
    if (vclock)
        img.vmas.push_back(vma(vclock, vclock + 0x2000, image::VmaKind::kVvar, "[vvar_vclock]"));
    img.vmas.push_back(vma(vdso, vdso + 0x2000, image::VmaKind::kVdso, "[vdso]"));
    return img;
}

const std::vector<SpecialMapping> kCur = {{"[vvar]", 0x7f0000000000, 0x7f0000004000},
                                          {"[vvar_vclock]", 0x7f0000004000, 0x7f0000006000},
                                          {"[vdso]", 0x7f0000006000, 0x7f0000008000}};

}  // namespace

TEST(RestoreSpecials, SameLayoutMovesEachToItsImageAddress) {
    auto img = image_with_specials(0x7e0000000000, 0x7e0000004000, 0x7e0000006000);
    auto p = plan_specials(img, kCur);
    ASSERT_TRUE(p) << p.error().what;
    ASSERT_EQ(p->moves.size(), 3u);
    EXPECT_EQ(p->moves[0].dst, 0x7e0000000000u);
    EXPECT_EQ(p->moves[1].dst, 0x7e0000004000u);
    EXPECT_EQ(p->moves[2].dst, 0x7e0000006000u);
    EXPECT_EQ(p->tmp_len, 0x8000u);
}

TEST(RestoreSpecials, DifferentLayoutKeepsThisKernelsOffsetsFromTheVdso) {
    // An older kernel: [vvar] right before [vdso], no [vvar_vclock].
    auto img = image_with_specials(0x7e0000000000, 0, 0x7e0000004000);
    auto p = plan_specials(img, kCur);
    ASSERT_TRUE(p) << p.error().what;
    ASSERT_EQ(p->moves.size(), 3u);
    EXPECT_EQ(p->moves[2].dst, 0x7e0000004000u);  // the vdso code where the task expects it
    EXPECT_EQ(p->moves[0].dst, 0x7e0000004000u - 0x6000);
}

TEST(RestoreSpecials, DifferentLayoutOverlappingAMappingIsRefused) {
    auto img = image_with_specials(0x7e0000000000, 0, 0x7e0000004000);
    img.vmas.insert(img.vmas.begin() + 1,
                    vma(0x7dffffff0000, 0x7dfffffff000, image::VmaKind::kAnonPrivate));
    auto p = plan_specials(img, kCur);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, ENOTSUP);
    EXPECT_NE(p.error().what.find("would land at"), std::string::npos) << p.error().what;
}

TEST(RestoreSpecials, VdsoOfAnotherSizeIsRefused) {
    auto img = image_with_specials(0x7e0000000000, 0x7e0000004000, 0x7e0000006000);
    img.vmas.back().rec.end += 0x1000;
    auto p = plan_specials(img, kCur);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, ENOTSUP);
    EXPECT_NE(p.error().what.find("vdso is 3 pages"), std::string::npos) << p.error().what;
}

TEST(RestoreSpecials, NoVdsoInTheImageDropsOurs) {
    DecodedImage img;
    auto p = plan_specials(img, kCur);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->moves.empty());
    EXPECT_EQ(p->drop.size(), 3u);
}

TEST(RestoreCreds, NonRootMayOnlyRestoreItsOwnCredentials) {
    DecodedImage img;
    for (int i = 0; i < 4; ++i) img.creds.uid[i] = 1000, img.creds.gid[i] = 1000;
    RestoreRequest req;
    req.writer_uid = 1000;
    req.writer_gid = 1000;
    EXPECT_TRUE(check_creds(img, req));
    img.creds.uid[2] = 0;  // saved uid 0
    auto s = check_creds(img, req);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, EPERM);
    EXPECT_NE(s.error().what.find("image uid 0, writer uid 1000"), std::string::npos);
    img.creds.uid[2] = 1000;
    img.creds.cap_amb = 1;
    EXPECT_EQ(check_creds(img, req).error().code, EPERM);
    req.writer_is_root = true;
    EXPECT_TRUE(check_creds(img, req));
}

TEST(RestoreCpu, FeaturesThisCpuLacksAreNamed) {
    DecodedImage img;
    img.xstate.assign(576, '\0');
    img.header.xsave_features = cpu_xcr0();
    EXPECT_TRUE(check_cpu(img));
    img.header.xsave_features |= 1ull << 62;
    auto s = check_cpu(img);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ENOTSUP);
    EXPECT_NE(s.error().what.find("bit62"), std::string::npos) << s.error().what;
    EXPECT_EQ(xsave_feature_names(0xe0), "avx512-opmask avx512-zmm_hi256 avx512-hi16_zmm");
}

TEST(RestoreFrame, RegistersMaskAndXstateMarkers) {
    DecodedImage img;
    img.xstate.assign(576, '\0');
    uint64_t bv = 3;
    std::memcpy(img.xstate.data() + 512, &bv, 8);
    img.regs.rip = 0x401000;
    img.regs.rsp = 0x7ffd0000;
    img.regs.rax = 42;
    img.regs.cs = 0x33;
    img.regs.ss = 0x2b;
    img.sigstate.blocked = (1ull << 8) | (1ull << 1);  // SIGKILL (bit 8) and SIGINT (bit 1)
    std::vector<char> mem(sigframe_size(img) + 64);
    char* at = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~63ul);
    ASSERT_TRUE(build_sigframe(img, at, reinterpret_cast<uint64_t>(at)));
    uint64_t w[64];
    std::memcpy(w, at, sizeof w);
    // pretcode, uc_flags, uc_link, uc_stack(3), then sigcontext r8..r15 rdi rsi rbp rbx rdx rax rcx
    // rsp rip
    EXPECT_EQ(w[6 + 13], 42u);          // rax
    EXPECT_EQ(w[6 + 15], 0x7ffd0000u);  // rsp
    EXPECT_EQ(w[6 + 16], 0x401000u);    // rip
    uint64_t mask;
    std::memcpy(&mask, at + 8 + 296, 8);
    EXPECT_EQ(mask, 1ull << 1);  // SIGKILL never blocked
    uint32_t magic1;
    std::memcpy(&magic1, at + 448 + 464, 4);
    EXPECT_EQ(magic1, 0x46505853u);
    uint32_t magic2;
    std::memcpy(&magic2, at + 448 + 576, 4);
    EXPECT_EQ(magic2, 0x46505845u);
}

TEST(RestoreFrame, CompatSegmentsAreRefused) {
    DecodedImage img;
    img.xstate.assign(576, '\0');
    img.regs.cs = 0x23;
    img.regs.ss = 0x2b;
    std::vector<char> mem(sigframe_size(img) + 64);
    auto s = build_sigframe(img, mem.data(), 0);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, ENOTSUP);
}

TEST(RestoreSignals, ExpiredRealTimerIsRearmedOneIntervalOut) {
    DecodedImage img;
    img.itimers.v[0][0] = 0;
    img.itimers.v[0][1] = 10000;  // interval 10 ms, value 0: expired while frozen
    crfs_restorer_args a{};
    fill_itimers(img, a);
    EXPECT_EQ(a.itimers[0][2], 0);
    EXPECT_EQ(a.itimers[0][3], 10000);
    EXPECT_EQ(a.itimers[1][3], 0);  // disarmed stays disarmed
}

// treeperf: a tree's later processes' blob areas leave out the earlier ones'
// from the start (`taken`, whether or not they are still mapped), with the
// scratch bytes that follow each, and every image mapping.
TEST(RestoreBlobArea, LeavesOutTakenRangesAndTheImagesMappings) {
    auto cur = current_specials();
    ASSERT_TRUE(cur) << cur.error().what;
    DecodedImage img;
    img.vmas.push_back(vma(0x400000, 0x800000, image::VmaKind::kAnonPrivate));
    img.vmas.push_back(vma(0x10000000000, 0x10000100000, image::VmaKind::kAnonPrivate));
    constexpr uint64_t kLen = 64 << 10, kTmp = 16 << 10;
    std::vector<std::pair<uint64_t, uint64_t>> taken;
    std::vector<BlobArea> made;
    // Taken but not mapped: the top of every gap a first area would use.
    auto first = map_blob_area(img, *cur, kLen, kTmp);
    ASSERT_TRUE(first) << first.error().what;
    munmap(reinterpret_cast<void*>(first->start), first->len);
    taken.push_back({first->start, first->tmp + kTmp});
    for (int i = 0; i < 40; ++i) {
        auto a = map_blob_area(img, *cur, kLen, kTmp, taken);
        ASSERT_TRUE(a) << a.error().what;
        EXPECT_EQ(a->len, kLen);
        EXPECT_EQ(a->tmp, a->start + kLen);
        made.push_back(*a);
        taken.push_back({a->start, a->tmp + kTmp});
    }
    for (size_t i = 0; i < taken.size(); ++i) {
        for (size_t k = 0; k < i; ++k)
            EXPECT_TRUE(taken[i].second <= taken[k].first || taken[k].second <= taken[i].first)
                << std::hex << taken[i].first << " " << taken[k].first;
        for (const auto& v : img.vmas)
            EXPECT_TRUE(taken[i].second <= v.rec.start || v.rec.end <= taken[i].first);
    }
    for (const auto& a : made) munmap(reinterpret_cast<void*>(a.start), a.len);
}
