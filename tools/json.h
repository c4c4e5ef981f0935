// JSON output through nlohmann::json. JSON text is UTF-8; paths and names
// are bytes: valid UTF-8 goes out as is, and a string that is not valid
// UTF-8 goes out with U+FFFD for each bad byte plus its exact bytes in hex
// beside it ("path" and "path_hex"), so nothing is lost silently.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crfs::tool {

using Json = nlohmann::ordered_json;  // keeps keys in the order written

bool valid_utf8(std::string_view s);

// obj[key] = s, and obj[key + "_hex"] when s is not valid UTF-8.
void put_text(Json& obj, const std::string& key, const std::string& s);

// Compact, one line; invalid UTF-8 replaced (put_text kept the bytes).
std::string dump_json(const Json& j);

}  // namespace crfs::tool
