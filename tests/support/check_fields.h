// Images built in memory for the check_fields tests (restorer/check_fields.cc
// and the kinds' checks): the smallest image that passes, and the assertion
// every hostile field makes.
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "restorer/validate.h"

namespace crfs::test {

// cwd /tmp, code r-x at 0x400000, a stack rw- at 0x600000-0x602000, rip and
// rsp inside them; no fds.
inline DecodedImage minimal_image() {
    DecodedImage img;
    img.cwd = "/tmp";
    auto vma = [&](uint64_t s, uint64_t e, uint32_t flags) {
        VmaEntry v{};
        v.rec.start = s, v.rec.end = e, v.rec.kind = uint32_t(image::VmaKind::kAnonPrivate);
        v.rec.flags = flags;
        img.vmas.push_back(v);
    };
    vma(0x400000, 0x401000, image::kVmaRead | image::kVmaExec);
    vma(0x600000, 0x602000, image::kVmaRead | image::kVmaWrite);
    img.regs.rip = 0x400010;
    img.regs.rsp = 0x601ff0;
    return img;
}

// check_fields refuses `img` with EINVAL, naming `words`.
inline void expect_einval(const DecodedImage& img, const char* words) {
    auto s = check_fields(img);
    ASSERT_FALSE(s) << words;
    EXPECT_EQ(s.error().code, EINVAL);
    EXPECT_NE(s.error().what.find(words), std::string::npos) << s.error().what;
}

}  // namespace crfs::test
