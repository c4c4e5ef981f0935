#include "tools/json.h"

#include <fmt/core.h>

namespace crfs::tool {

bool valid_utf8(std::string_view s) {
    try {
        (void)nlohmann::json(std::string(s)).dump();
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}

void put_text(Json& obj, const std::string& key, const std::string& s) {
    obj[key] = s;
    if (valid_utf8(s)) return;
    std::string hex;
    for (unsigned char c : s) hex += fmt::format("{:02x}", c);
    obj[key + "_hex"] = hex;
}

std::string dump_json(const Json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace crfs::tool
