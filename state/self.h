// The daemon's own values of settings a restored task inherits from it
// (clone3 from a daemon thread): a task whose value differs would come back
// with the daemon's, so that difference is a reason.
#pragma once

#include <string>

namespace crfs::state {

// Text of /proc/self/<name> with trailing whitespace removed, or "" if unreadable.
std::string self_value(const char* name);

}  // namespace crfs::state
