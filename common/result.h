// One result type for all of crfs (STYLE.md 4): a value or an Error that says
// what failed and on what ("open /proc/1234/stat: No such process") and keeps
// the errno that FUSE callbacks and the C API hand back to the caller.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <string_view>

namespace crfs {

struct Error {
    int code = EIO;    // positive errno
    std::string what;  // full human-readable message, errno text included

    // Prefixes the message with more context: "checkpoint 42: " + what.
    Error context(std::string_view prefix) const& {
        return Error{code, std::string(prefix) + ": " + what};
    }
};

template <class T>
using Result = std::expected<T, Error>;

using Status = std::expected<void, Error>;

// "what: strerror(err)" with err kept as the code.
inline std::unexpected<Error> sys_error(int err, std::string_view what) {
    return std::unexpected(Error{err, std::string(what) + ": " + std::strerror(err)});
}

// Same, from the current errno.
inline std::unexpected<Error> errno_error(std::string_view what) {
    return sys_error(errno, what);
}

// An error whose message is given in full (no strerror appended).
inline std::unexpected<Error> make_error(int err, std::string what) {
    return std::unexpected(Error{err, std::move(what)});
}

}  // namespace crfs
