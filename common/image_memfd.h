// Decoding of the memfd records (72, 73) into DecodedImage::memfds, called by
// decode_image for each such record. Structure only (one record per inode, a
// bounded name, data runs after their memfd in increasing order inside its
// size); the values a restore uses are range-checked by state/memfd.cc.
#pragma once

#include "common/image_reader.h"

namespace crfs {

Status decode_memfd(DecodedImage& img, const Record& r, const std::string& payload);

}  // namespace crfs
