// escape_nonescape_nonprintable(): what crfsd logs and shows in `status`, and the crfs
// command prints, of text from images and users.
#include "common/escape.h"

#include <gtest/gtest.h>

using crfs::escape_nonprintable;

TEST(EscapeNonprintable, KeepsPrintableTextAndUtf8) {
    EXPECT_EQ(escape_nonprintable("/tmp/naïve café ☕ 𝄞.txt"), "/tmp/naïve café ☕ 𝄞.txt");
    EXPECT_EQ(escape_nonprintable(""), "");
}

TEST(EscapeNonprintable, EscapesControlsAndBackslash) {
    EXPECT_EQ(escape_nonprintable("x\033]0;pwned\007"), "x\\x1b]0;pwned\\x07");
    EXPECT_EQ(escape_nonprintable(std::string("a\0b", 3)), "a\\x00b");
    EXPECT_EQ(escape_nonprintable("\n\t\r\x7f"), "\\n\\t\\r\\x7f");
    EXPECT_EQ(escape_nonprintable("a\\x1b"),
              "a\\\\x1b");  // a literal backslash cannot fake an escape
}

TEST(EscapeNonprintable, EscapesC1ControlsEncodedInUtf8) {
    EXPECT_EQ(escape_nonprintable("\xc2\x9b"
                                  "2J"),
              "\\xc2\\x9b2J");                               // U+009B CSI
    EXPECT_EQ(escape_nonprintable("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is text
}

TEST(EscapeNonprintable, EscapesEachByteOfInvalidUtf8) {
    EXPECT_EQ(escape_nonprintable("\xff\xfe"), "\\xff\\xfe");
    EXPECT_EQ(escape_nonprintable("\xc3"), "\\xc3");                             // truncated
    EXPECT_EQ(escape_nonprintable("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
    EXPECT_EQ(escape_nonprintable("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");           // overlong
    EXPECT_EQ(escape_nonprintable("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
    EXPECT_EQ(escape_nonprintable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    EXPECT_EQ(escape_nonprintable("ok\xe2\x98"), "ok\\xe2\\x98");
}
