// The FUSE limit of the benches: a daemon set up as crfsd is (libfuse 3
// low-level API, multi-threaded loop, max_write 1 MiB so reads and writes
// come in 1 MiB requests, direct_io) that serves one file, "data", of SIZE
// bytes from memory, and takes writes into fresh memory. Reading it is the
// fastest a checkpoint through the mount can go; writing it (one copy into
// newly mapped memory, as a restore must make) is the restore's bound.
//
//   fuse_limit MOUNTPOINT SIZE_BYTES      (foreground; unmount to stop)
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

constexpr fuse_ino_t kData = 2;
char* g_data = nullptr;
size_t g_size = 0;
std::mutex g_mu;
char* g_sink = nullptr;  // fresh memory per open for writing
size_t g_sink_len = 0;

struct stat attr_of(fuse_ino_t ino) {
    struct stat st {};
    st.st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        st.st_mode = S_IFDIR | 0755;
        st.st_nlink = 2;
    } else {
        st.st_mode = S_IFREG | 0666;
        st.st_nlink = 1;
        st.st_size = 0;  // as crfs's generated files
    }
    return st;
}

void op_init(void*, fuse_conn_info* conn) {
    conn->max_write = 1u << 20;
    conn->max_read = 0;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    if (parent != FUSE_ROOT_ID || std::strcmp(name, "data") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_entry_param e{};
    e.ino = kData;
    e.attr = attr_of(kData);
    fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    struct stat st = attr_of(ino);
    fuse_reply_attr(req, &st, 0);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, fuse_file_info*) {
    struct stat st = attr_of(ino);
    fuse_reply_attr(req, &st, 0);
}

void op_open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    fi->direct_io = 1;
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        std::lock_guard l(g_mu);
        if (g_sink) munmap(g_sink, g_sink_len);
        g_sink_len = g_size;
        g_sink = static_cast<char*>(
            mmap(nullptr, g_sink_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    }
    fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
    if (off < 0 || size_t(off) >= g_size) {
        fuse_reply_buf(req, nullptr, 0);
        return;
    }
    fuse_reply_buf(req, g_data + off, std::min(size, g_size - size_t(off)));
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info*) {
    if (off < 0 || size_t(off) + size > g_sink_len) {
        fuse_reply_err(req, EFBIG);
        return;
    }
    std::memcpy(g_sink + off, buf, size);
    fuse_reply_write(req, size);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
    fuse_reply_err(req, 0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: fuse_limit MOUNTPOINT SIZE_BYTES\n");
        return 2;
    }
    g_size = std::strtoull(argv[2], nullptr, 10);
    g_data = static_cast<char*>(
        mmap(nullptr, g_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < g_size; i += 8) *reinterpret_cast<uint64_t*>(g_data + i) = i | 1;
    fuse_lowlevel_ops ops{};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.getattr = op_getattr;
    ops.setattr = op_setattr;
    ops.open = op_open;
    ops.read = op_read;
    ops.write = op_write;
    ops.release = op_release;
    char* fargv[] = {argv[0], const_cast<char*>("-oallow_other")};
    fuse_args args = FUSE_ARGS_INIT(2, fargv);
    fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return rc ? 1 : 0;
}
