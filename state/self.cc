#include "state/self.h"

#include "common/io.h"

namespace crfs::state {

std::string self_value(const char* name) {
    auto text = read_file(std::string("/proc/self/") + name);
    if (!text) return "";
    while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
    return *text;
}

}  // namespace crfs::state
