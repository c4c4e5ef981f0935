// The one copy loop of dump and restore: sequential reads into sequential
// writes, counted by a Progress line.
#pragma once

#include <string>

#include "common/result.h"
#include "tools/progress.h"

namespace crfs::tool {

// Copies in to out until in's end. Errors keep the errno of the call that
// failed and name its side ("read NAME", "write NAME").
Status copy_stream(int in, const std::string& in_name, int out, const std::string& out_name,
                   Progress& progress);

}  // namespace crfs::tool
