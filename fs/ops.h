// The FUSE low-level operations of crfsd.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "fs/tree.h"

namespace crfs::fs {

// The operation table; the userdata passed to fuse_session_new must be a Daemon*.
const fuse_lowlevel_ops& crfs_ops();

}  // namespace crfs::fs
