// Decoding of the inet socket records (40-43) into DecodedImage::inet, called
// by decode_image for each such record and once at the end. Structure only
// (each record belongs to an fd of kind kTcp/kUdp, in order, with bounded and
// complete queues); the values are range-checked by restorer/check_fields.cc.
#pragma once

#include "common/image_reader.h"

namespace crfs {

Status decode_inet(DecodedImage& img, const Record& r);
Status check_inet_complete(const DecodedImage& img);

}  // namespace crfs
