// printable(): what the crfs command prints of text from images and users.
#include "tools/escape.h"

#include <gtest/gtest.h>

using crfs::tool::printable;

TEST(Printable, KeepsPrintableTextAndUtf8) {
    EXPECT_EQ(printable("/tmp/naïve café ☕ 𝄞.txt"), "/tmp/naïve café ☕ 𝄞.txt");
    EXPECT_EQ(printable(""), "");
}

TEST(Printable, EscapesControlsAndBackslash) {
    EXPECT_EQ(printable("x\033]0;pwned\007"), "x\\x1b]0;pwned\\x07");
    EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
    EXPECT_EQ(printable("\n\t\x7f"), "\\x0a\\x09\\x7f");
    EXPECT_EQ(printable("a\\x1b"), "a\\\\x1b");  // a literal backslash cannot fake an escape
}

TEST(Printable, EscapesC1ControlsEncodedInUtf8) {
    EXPECT_EQ(printable("\xc2\x9b"
                        "2J"),
              "\\xc2\\x9b2J");                     // U+009B CSI
    EXPECT_EQ(printable("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is text
}

TEST(Printable, EscapesEachByteOfInvalidUtf8) {
    EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");
    EXPECT_EQ(printable("\xc3"), "\\xc3");                             // truncated
    EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
    EXPECT_EQ(printable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");           // overlong
    EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
    EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    EXPECT_EQ(printable("ok\xe2\x98"), "ok\\xe2\\x98");
}
