// Text from outside the daemon's control (image fields, file names, slot
// errors that quote them) is escaped before it reaches a log line or a file
// people read with `cat`, so no byte of it is a terminal control sequence.
#pragma once

#include <string>
#include <string_view>

namespace crfs {

// Copies `s`, replacing what a terminal would act on: C0 controls and DEL
// become \n, \t, \r or \xNN; a backslash becomes "\\" (so the escaping is
// unambiguous); bytes that are not valid UTF-8, and UTF-8 encodings of C1
// controls (U+0080..U+009F), become \xNN per byte. Printable ASCII and valid
// UTF-8 of printable code points pass through, so non-English names stay
// readable.
std::string escape_nonprintable(std::string_view s);

}  // namespace crfs
