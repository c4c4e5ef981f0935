// An image decoded to JSON (`crfs show --json`), like CRIU's crit.
#pragma once

#include "common/image_reader.h"
#include "tools/json.h"

namespace crfs::tool {

Json image_to_json(const DecodedImage& img);

// Shared with the text form.
const char* vma_kind_name(uint32_t kind);
const char* fd_kind_name(uint32_t kind);
// An inet socket (tools/inet_json.cc).
Json inet_json(const InetEntry& e);
std::string vma_perms(const image::VmaRecord& v);
uint64_t pages_in(const DecodedImage& img, const image::VmaRecord& v);

}  // namespace crfs::tool
