// crfs show / crfs verify of a chain (docs/incremental.md): a FILE holding a
// base image and its deltas concatenated, checked as a restore checks it
// (restorer/image_chain.h): every part decoded, the chain, the composition.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "restorer/image_chain.h"

namespace crfs::tool {

// FILE opened for reading from offset 0 ("-": stdin, copied into a memfd).
Result<UniqueFd> open_input(const std::string& path);

struct ChainView {
    std::vector<ChainPart> parts;
    DecodedImage composed;  // the one image the parts compose (its first process)
};

// The chain in `fd`, or nullopt when it holds no several images (decode it as one).
Result<std::optional<ChainView>> read_chain(int fd);

void print_chain_text(const std::vector<ChainPart>& parts);
nlohmann::json chain_json(const std::vector<ChainPart>& parts);

}  // namespace crfs::tool
