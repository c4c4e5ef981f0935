// Range checks of the inet socket records of a hostile image (the rest of
// check_fields.cc's job for kinds kTcp and kUdp): every value restore hands
// to socket, bind, listen, connect, setsockopt or TCP repair.
#pragma once

#include <cstdint>

#include "common/image_reader.h"
#include "common/result.h"

namespace crfs {

bool is_socket_kind(uint32_t kind);
// The fd record of a socket (its description fields; same_as already checked).
Status check_socket_fd(const FdEntry& f);
Status check_inet(const DecodedImage& img);

}  // namespace crfs
