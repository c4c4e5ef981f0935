// crfs: the command-line tool for images.
//   crfs show [--json] FILE|-    what an image holds
//   crfs verify FILE|-           checks an image end to end; non-zero exit with the error
//   crfs checkpoint PID          (debugging) checkpoint PID directly, image to stdout,
//                                without the FUSE mount; needs the right to ptrace PID
//   crfs restore FILE|- [--pid N] [--writer UID:GID]
//                                (debugging) restore an image directly, without the
//                                mount; prints the new pid. Exit status: 0, or the errno.
#include <fcntl.h>
#include <sys/mman.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/image_reader.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/restore.h"

using namespace crfs;

namespace {

constexpr const char* kUsage =
    "usage: crfs show [--json] FILE|-   print what an image holds\n"
    "       crfs verify FILE|-          check an image end to end\n"
    "       crfs checkpoint PID         debugging: checkpoint PID to stdout without the mount\n"
    "       crfs restore FILE|- [--pid N] [--writer UID:GID]\n"
    "                                   debugging: restore an image without the mount, print\n"
    "                                   the new pid (exit status: the errno on failure);\n"
    "                                   --writer: as for that non-root FUSE writer\n";

std::string hex(uint64_t v) {
    return strfmt("0x{:x}", v);
}

std::string oct(uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0%lo", static_cast<unsigned long>(v));
    return b;
}

// JSON string escaping (paths may hold anything).
std::string jstr(std::string_view s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += char(c);
        } else if (c < 0x20 || c >= 0x7f) {
            o += strfmt("\\u{:04x}", unsigned(c));
        } else {
            o += char(c);
        }
    }
    return o + "\"";
}

// A tiny JSON writer: objects and arrays with automatic commas.
class Json {
  public:
    Json& open(char c, std::string_view key = {}) {
        sep(key);
        out_ += c;
        first_ = true;
        return *this;
    }
    Json& close(char c) {
        out_ += c;
        first_ = false;
        return *this;
    }
    Json& raw(std::string_view key, std::string_view v) {
        sep(key);
        out_ += v;
        return *this;
    }
    Json& num(std::string_view key, int64_t v) { return raw(key, std::to_string(v)); }
    Json& unum(std::string_view key, uint64_t v) { return raw(key, std::to_string(v)); }
    Json& str(std::string_view key, std::string_view v) { return raw(key, jstr(v)); }
    Json& boolean(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
    const std::string& text() const { return out_; }

  private:
    void sep(std::string_view key) {
        if (!first_) out_ += ',';
        first_ = false;
        if (!key.empty()) out_ += jstr(key) + ':';
    }
    std::string out_;
    bool first_ = true;
};

const char* vma_kind(uint32_t k) {
    switch (image::VmaKind(k)) {
        case image::VmaKind::kAnonPrivate:
            return "anon-private";
        case image::VmaKind::kFilePrivate:
            return "file-private";
        case image::VmaKind::kFileShared:
            return "file-shared";
        case image::VmaKind::kAnonShared:
            return "anon-shared";
        case image::VmaKind::kVdso:
            return "vdso";
        case image::VmaKind::kVvar:
            return "vvar";
        case image::VmaKind::kVsyscall:
            return "vsyscall";
    }
    return "?";
}

const char* fd_kind(uint32_t k) {
    switch (image::FdKind(k)) {
        case image::FdKind::kRegular:
            return "regular";
        case image::FdKind::kDeleted:
            return "deleted";
        case image::FdKind::kCharDev:
            return "chardev";
    }
    return "?";
}

std::string perms(const image::VmaRecord& v) {
    std::string p = "----";
    if (v.flags & image::kVmaRead) p[0] = 'r';
    if (v.flags & image::kVmaWrite) p[1] = 'w';
    if (v.flags & image::kVmaExec) p[2] = 'x';
    p[3] = (v.flags & image::kVmaShared) ? 's' : 'p';
    return p;
}

constexpr const char* kRlimitNames[16] = {
    "cpu",     "fsize", "data",  "stack",      "core",     "rss",  "nproc",  "nofile",
    "memlock", "as",    "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime"};

uint64_t pages_in(const DecodedImage& img, const image::VmaRecord& v) {
    uint64_t n = 0;
    for (const auto& p : img.pages)
        if (p.vaddr >= v.start && p.vaddr < v.end) n += p.nr_pages;
    return n;
}

std::string to_json(const DecodedImage& img) {
    Json j;
    j.open('{');
    const auto& h = img.header;
    j.open('{', "header")
        .unum("version", h.version)
        .str("arch", "x86_64")
        .unum("page_size", h.page_size)
        .str("kernel_release", h.kernel_release)
        .str("xsave_features", hex(h.xsave_features))
        .unum("xsave_size", h.xsave_size)
        .boolean("task_was_stopped", h.flags & image::kHeaderTaskWasStopped)
        .close('}');
    const auto& t = img.task;
    j.open('{', "task")
        .num("pid", t.pid)
        .num("ppid", t.ppid)
        .num("pgid", t.pgid)
        .num("sid", t.sid)
        .unum("starttime", t.starttime)
        .str("comm", t.comm)
        .str("personality", hex(t.personality))
        .num("nice", t.nice)
        .close('}');
    j.open('{', "creds");
    j.open('[', "uid");
    for (auto u : img.creds.uid) j.unum({}, u);
    j.close(']').open('[', "gid");
    for (auto g : img.creds.gid) j.unum({}, g);
    j.close(']').open('[', "groups");
    for (auto g : img.groups) j.unum({}, g);
    j.close(']')
        .str("cap_inh", hex(img.creds.cap_inh))
        .str("cap_prm", hex(img.creds.cap_prm))
        .str("cap_eff", hex(img.creds.cap_eff))
        .str("cap_bnd", hex(img.creds.cap_bnd))
        .str("cap_amb", hex(img.creds.cap_amb))
        .unum("no_new_privs", img.creds.no_new_privs)
        .close('}');
    j.open('{', "fs").str("cwd", img.cwd).str("root", img.root).str("umask", oct(img.fs.umask));
    j.close('}');
    const auto& m = img.mm;
    j.open('{', "mm")
        .str("start_code", hex(m.start_code))
        .str("end_code", hex(m.end_code))
        .str("start_data", hex(m.start_data))
        .str("end_data", hex(m.end_data))
        .str("start_brk", hex(m.start_brk))
        .str("brk", hex(m.brk))
        .str("start_stack", hex(m.start_stack))
        .str("arg_start", hex(m.arg_start))
        .str("arg_end", hex(m.arg_end))
        .str("env_start", hex(m.env_start))
        .str("env_end", hex(m.env_end))
        .str("exe", img.exe)
        .open('[', "auxv");
    for (size_t i = 0; i + 1 < img.auxv.size(); i += 2)
        j.open('[').unum({}, img.auxv[i]).str({}, hex(img.auxv[i + 1])).close(']');
    j.close(']').close('}');
    j.open('[', "vmas");
    for (const auto& v : img.vmas) {
        j.open('{')
            .str({"start"}, hex(v.rec.start))
            .str("end", hex(v.rec.end))
            .unum("size", v.rec.end - v.rec.start)
            .str("perms", perms(v.rec))
            .str("kind", vma_kind(v.rec.kind))
            .str("pgoff", hex(v.rec.pgoff * image::kPageSize))
            .str("dev", strfmt("{:02x}:{:02x}", (v.rec.dev >> 8) & 0xfff,
                               (v.rec.dev & 0xff) | ((v.rec.dev >> 12) & 0xfff00)))
            .unum("ino", v.rec.ino)
            .str("path", v.path)
            .boolean("growsdown", v.rec.flags & image::kVmaGrowsDown)
            .unum("pages_stored", pages_in(img, v.rec))
            .close('}');
    }
    j.close(']');
    const auto& r = img.regs;
    j.open('{', "regs")
        .str("rip", hex(r.rip))
        .str("rsp", hex(r.rsp))
        .str("rbp", hex(r.rbp))
        .str("rax", hex(r.rax))
        .str("orig_rax", hex(r.orig_rax))
        .str("eflags", hex(r.eflags))
        .str("fs_base", hex(r.fs_base))
        .str("gs_base", hex(r.gs_base))
        .unum("xstate_size", img.xstate.size());
    if (img.xstate.size() >= 520) {
        uint64_t bv;
        std::memcpy(&bv, img.xstate.data() + 512, 8);
        j.str("xstate_bv", hex(bv));
    }
    j.close('}');
    j.open('{', "signals")
        .str("blocked", hex(img.sigstate.blocked))
        .open('{', "altstack")
        .str("sp", hex(img.sigstate.altstack_sp))
        .unum("size", img.sigstate.altstack_size)
        .num("flags", img.sigstate.altstack_flags)
        .close('}')
        .open('[', "actions");
    for (int s = 1; s <= 64; ++s) {
        const auto& a = img.sigactions.action[s - 1];
        if (!a.handler && !a.flags && !a.mask && !a.restorer) continue;  // SIG_DFL, nothing else
        j.open('{')
            .num("signo", s)
            .str("handler", a.handler == 0   ? "SIG_DFL"
                            : a.handler == 1 ? "SIG_IGN"
                                             : hex(a.handler))
            .str("flags", hex(a.flags))
            .str("mask", hex(a.mask))
            .str("restorer", hex(a.restorer))
            .close('}');
    }
    j.close(']').open('[', "pending");
    for (const auto& p : img.pending) {
        siginfo_t si;
        std::memcpy(&si, p.info, sizeof si);
        j.open('{')
            .num("signo", si.si_signo)
            .num("code", si.si_code)
            .str("queue", p.queue == image::kSigqueueShared ? "shared" : "private")
            .close('}');
    }
    j.close(']').close('}');
    j.open('[', "rlimits");
    for (int i = 0; i < 16; ++i) {
        auto lim = [](uint64_t v) {
            return v == ~0ull ? std::string("\"unlimited\"") : std::to_string(v);
        };
        j.open('{')
            .str("name", kRlimitNames[i])
            .raw("cur", lim(img.rlimits.cur[i]))
            .raw("max", lim(img.rlimits.max[i]))
            .close('}');
    }
    j.close(']');
    j.open('{', "itimers");
    const char* names[3] = {"real", "virtual", "prof"};
    for (int i = 0; i < 3; ++i) {
        const auto& v = img.itimers.v[i];
        j.open('{', names[i])
            .num("interval_us", v[0] * 1000000 + v[1])
            .num("value_us", v[2] * 1000000 + v[3])
            .close('}');
    }
    j.close('}');
    j.open('[', "fds");
    for (const auto& f : img.fds) {
        j.open('{')
            .num("fd", f.rec.fd)
            .str("kind", fd_kind(f.rec.kind))
            .str("path", f.path)
            .str("flags", oct(f.rec.open_flags))
            .unum("open_flags", f.rec.open_flags)
            .unum("pos", f.rec.pos)
            .str("mode", oct(f.rec.mode))
            .boolean("cloexec", f.rec.fd_flags & image::kFdCloexec)
            .unum("dev", f.rec.dev)
            .unum("ino", f.rec.ino)
            .unum("size", f.rec.size)
            .num("mtime_sec", f.rec.mtime_sec)
            .num("mtime_nsec", f.rec.mtime_nsec)
            .unum("data_bytes", f.data_bytes)
            .close('}');
    }
    j.close(']');
    uint64_t stored = 0;
    for (const auto& p : img.pages) stored += p.nr_pages;
    j.open('{', "stats").unum("page_bytes", stored * image::kPageSize);
    if (img.stats) {
        const auto& s = *img.stats;
        j.unum("frozen_ns", s.frozen_ns)
            .unum("total_ns", s.total_ns)
            .unum("pages_scanned", s.pages_scanned)
            .unum("pages_copied", s.pages_copied)
            .unum("pages_zero", s.pages_zero)
            .unum("pages_stored", s.pages_stored)
            .unum("captured_at_ns", s.captured_at_ns);
    }
    j.close('}');
    j.open('{', "image")
        .unum("size", img.size)
        .unum("records", img.record_count)
        .str("checksum", strfmt("{:016x}", img.checksum))
        .close('}');
    j.close('}');
    return j.text();
}

void print_text(const DecodedImage& img) {
    const auto& t = img.task;
    std::printf("crfs image v%u, x86_64, kernel %s, xsave features %s (%u bytes)\n",
                img.header.version, img.header.kernel_release,
                hex(img.header.xsave_features).c_str(), img.header.xsave_size);
    std::printf("task %d (%s) ppid %d pgid %d sid %d nice %d%s\n", t.pid, t.comm, t.ppid, t.pgid,
                t.sid, t.nice,
                (img.header.flags & image::kHeaderTaskWasStopped) ? ", stopped" : "");
    std::printf("uid %u/%u/%u/%u gid %u/%u/%u/%u cap_eff %s, cwd %s, root %s, exe %s\n",
                img.creds.uid[0], img.creds.uid[1], img.creds.uid[2], img.creds.uid[3],
                img.creds.gid[0], img.creds.gid[1], img.creds.gid[2], img.creds.gid[3],
                hex(img.creds.cap_eff).c_str(), img.cwd.c_str(), img.root.c_str(), img.exe.c_str());
    std::printf("\n%zu VMAs:\n", img.vmas.size());
    for (const auto& v : img.vmas)
        std::printf("  %012lx-%012lx %s %-12s %8lu KiB  %6lu pages stored  %s\n", v.rec.start,
                    v.rec.end, perms(v.rec).c_str(), vma_kind(v.rec.kind),
                    (v.rec.end - v.rec.start) / 1024, pages_in(img, v.rec), v.path.c_str());
    std::printf("\n%zu fds:\n", img.fds.size());
    for (const auto& f : img.fds)
        std::printf("  %3d %-8s pos %-10lu flags 0%o%s  %s\n", f.rec.fd, fd_kind(f.rec.kind),
                    f.rec.pos, f.rec.open_flags,
                    (f.rec.fd_flags & image::kFdCloexec) ? " cloexec" : "", f.path.c_str());
    std::printf("\nsignals: blocked %s, altstack %s+%lu, %zu pending\n",
                hex(img.sigstate.blocked).c_str(), hex(img.sigstate.altstack_sp).c_str(),
                img.sigstate.altstack_size, img.pending.size());
    for (int s = 1; s <= 64; ++s) {
        const auto& a = img.sigactions.action[s - 1];
        if (a.handler)
            std::printf("  %2d handler %s flags %s mask %s\n", s,
                        a.handler == 1 ? "SIG_IGN" : hex(a.handler).c_str(), hex(a.flags).c_str(),
                        hex(a.mask).c_str());
    }
    std::printf("\nregisters: rip %s rsp %s fs_base %s, xstate %zu bytes\n",
                hex(img.regs.rip).c_str(), hex(img.regs.rsp).c_str(), hex(img.regs.fs_base).c_str(),
                img.xstate.size());
    uint64_t stored = 0;
    for (const auto& p : img.pages) stored += p.nr_pages;
    std::printf("pages: %lu stored (%lu KiB)", stored, stored * 4);
    if (img.stats)
        std::printf(", %lu copied, %lu zero; frozen %.3f ms, checkpoint %.3f ms",
                    img.stats->pages_copied, img.stats->pages_zero, img.stats->frozen_ns / 1e6,
                    img.stats->total_ns / 1e6);
    std::printf("\nimage: %lu bytes, %lu records, checksum %016lx\n", img.size, img.record_count,
                img.checksum);
}

Result<DecodedImage> decode_path(const std::string& path) {
    UniqueFd owned;
    int fd = 0;
    if (path != "-") {
        auto f = open_fd(path, O_RDONLY);
        if (!f) return std::unexpected(f.error());
        owned = std::move(*f);
        fd = owned.get();
    }
    FdSource src(fd);
    auto img = decode_image(src);
    if (!img) return std::unexpected(img.error().context(path == "-" ? "stdin" : path));
    return img;
}

int cmd_checkpoint(const char* arg) {
    char* end;
    long pid = std::strtol(arg, &end, 10);
    if (*end || pid <= 0) {
        std::fprintf(stderr, "crfs checkpoint: bad pid %s\n", arg);
        return 2;
    }
    auto st = read_task_stat(pid_t(pid));
    if (!st) {
        std::fprintf(stderr, "crfs checkpoint: %s\n", st.error().what.c_str());
        return 1;
    }
    auto snap = checkpoint_task(pid_t(pid), st->starttime);
    if (!snap) return 1;  // checkpoint_task logged why
    // Serve it the way the FUSE read does: by offset, in chunks.
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < (*snap)->size();) {
        auto n = (*snap)->read(off, buf.data(), buf.size());
        if (!n || *n == 0) return 1;
        if (auto w = write_full(1, buf.data(), *n); !w) {
            std::fprintf(stderr, "crfs checkpoint: %s\n", w.error().what.c_str());
            return 1;
        }
        off += *n;
    }
    return 0;
}

// Restores as the daemon would, with the caller as the writer. A pipe on stdin
// is spooled to a memfd first (restore_image needs a seekable image).
int cmd_restore(int argc, char** argv) {
    const char* path = nullptr;
    long want = 0;
    uid_t writer_uid = getuid();
    gid_t writer_gid = getgid();
    bool writer_set = false;
    for (int i = 2; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--writer" && i + 1 < argc) {
            // Debugging: restore as the daemon would for a non-root FUSE writer.
            unsigned u, g;
            if (std::sscanf(argv[++i], "%u:%u", &u, &g) != 2) {
                std::fprintf(stderr, "crfs restore: bad --writer %s (UID:GID)\n", argv[i]);
                return 2;
            }
            writer_uid = u, writer_gid = g, writer_set = true;
        } else if (a == "--pid" && i + 1 < argc) {
            char* end;
            want = std::strtol(argv[++i], &end, 10);
            if (*end || want <= 0) {
                std::fprintf(stderr, "crfs restore: bad pid %s\n", argv[i]);
                return 2;
            }
        } else if (!path) {
            path = argv[i];
        } else {
            std::fputs(kUsage, stderr);
            return 2;
        }
    }
    if (!path) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    UniqueFd fd;
    if (std::string_view(path) == "-") {
        fd = UniqueFd(memfd_create("crfs-image", MFD_CLOEXEC));
        std::vector<char> buf(1 << 20);
        for (;;) {
            auto n = read_full(0, buf.data(), buf.size());
            if (!n) {
                std::fprintf(stderr, "crfs restore: stdin: %s\n", n.error().what.c_str());
                return EIO;
            }
            if (*n == 0) break;
            if (auto w = write_full(fd.get(), buf.data(), *n); !w) {
                std::fprintf(stderr, "crfs restore: %s\n", w.error().what.c_str());
                return EIO;
            }
        }
    } else {
        auto f = open_fd(path, O_RDONLY | O_CLOEXEC);
        if (!f) {
            std::fprintf(stderr, "crfs restore: %s\n", f.error().what.c_str());
            return f.error().code;
        }
        fd = std::move(*f);
    }
    RestoreRequest req;
    req.image_fd = fd.get();
    req.want_pid = pid_t(want);
    req.writer_uid = writer_uid;
    req.writer_gid = writer_gid;
    req.writer_is_root = !writer_set && getuid() == 0;
    auto pid = restore_image(req);
    if (!pid) {
        std::fprintf(stderr, "crfs restore: %s\n", pid.error().what.c_str());
        int code = pid.error().code;
        return code > 0 && code < 126 ? code : 1;
    }
    std::printf("%d\n", *pid);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    std::string_view cmd = argv[1];
    if (cmd == "checkpoint" && argc == 3) return cmd_checkpoint(argv[2]);
    if (cmd == "restore") return cmd_restore(argc, argv);
    if (cmd == "verify" && argc == 3) {
        auto img = decode_path(argv[2]);
        if (!img) {
            std::fprintf(stderr, "crfs verify: %s\n", img.error().what.c_str());
            return 1;
        }
        std::printf("ok: %lu records, %lu bytes, checksum %016lx\n", img->record_count, img->size,
                    img->checksum);
        return 0;
    }
    if (cmd == "show" && (argc == 3 || (argc == 4 && std::string_view(argv[2]) == "--json"))) {
        bool json = argc == 4;
        auto img = decode_path(argv[argc - 1]);
        if (!img) {
            std::fprintf(stderr, "crfs show: %s\n", img.error().what.c_str());
            return 1;
        }
        if (json)
            std::printf("%s\n", to_json(*img).c_str());
        else
            print_text(*img);
        return 0;
    }
    std::fputs(kUsage, stderr);
    return 2;
}
