// Everything checked before a restore creates anything: the CPU can run the
// image (xsave features), every file it references exists and is the file it
// was, nothing asks for what this restorer cannot do yet, and the writer may
// restore its credentials. The decoder (common/image_reader) has already
// checked framing, checksum, version, architecture and page size.
#pragma once

#include <string>

#include "common/image_reader.h"
#include "common/result.h"
#include "restorer/restore.h"

namespace crfs {

// XCR0 of this CPU (which xsave components the OS enabled).
uint64_t cpu_xcr0();

// "avx512 (opmask zmm_hi256 hi16_zmm)" style names of xsave feature bits.
std::string xsave_feature_names(uint64_t bits);

Status check_cpu(const DecodedImage& img);
// One xsave area (each thread's): long enough, no feature this CPU lacks.
Status check_cpu_state(const std::string& xstate);
// Every enum and flag field in range, registers inside the image's mappings
// (rip in an executable one, rsp in a writable one): check_fields.cc.
Status check_fields(const DecodedImage& img);
Status check_supported(const DecodedImage& img);

// The pid rule, check_fields, check_creds, check_cpu, check_supported: all
// that needs no file look-up (check_files, state/file_policy.h, runs as the writer, in restore.cc).
Status validate_image(const DecodedImage& img, const RestoreRequest& req);

}  // namespace crfs
