// Test only: a hold a test asks for through crfsd's environment
// (CRFS_TEST_..._HOLD=PATH), so it can look at a window that is otherwise
// milliseconds long. The process announces it is in the window (PATH.held)
// and stays until the test makes PATH.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>

namespace crfs {

// Makes PATH.held, then waits until PATH exists, at most 60 s. Nothing for
// a null `path` (the variable unset).
inline void test_hold_until_made(const char* path) {
    if (!path) return;
    ::close(::open((std::string(path) + ".held").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    for (int i = 0; i < 12000 && ::access(path, F_OK) != 0; ++i) ::usleep(5000);
}

}  // namespace crfs
