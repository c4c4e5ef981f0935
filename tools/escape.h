// Text from images and from other users (paths, names, reasons) printed for
// a person: control characters and bytes that are not UTF-8 are shown as
// \xNN, so that no one can write escape sequences to a reader's terminal.
#pragma once

#include <string>
#include <string_view>

namespace crfs::tool {

// C0 controls, DEL, C1 controls (U+0080..U+009F) and invalid UTF-8 become
// \xNN (per byte); a backslash becomes \\; everything else is kept.
std::string printable(std::string_view s);

}  // namespace crfs::tool
