#include "tools/image_json.h"

#include <signal.h>

#include <cstring>
#include <string>

#include <fmt/core.h>

namespace crfs::tool {
namespace {

std::string hex(uint64_t v) {
    return fmt::format("0x{:x}", v);
}

std::string oct(uint64_t v) {
    return fmt::format("0{:o}", v);
}

// A NUL-padded fixed-size field of the image, which may fill its array.
template <size_t N>
std::string field(const char (&a)[N]) {
    return std::string(a, strnlen(a, N));
}

constexpr const char* kRlimitNames[16] = {
    "cpu",     "fsize", "data",  "stack",      "core",     "rss",  "nproc",  "nofile",
    "memlock", "as",    "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime"};

Json header(const DecodedImage& img) {
    const auto& h = img.header;
    return {{"version", h.version},
            {"arch", "x86_64"},
            {"page_size", h.page_size},
            {"kernel_release", field(h.kernel_release)},
            {"xsave_features", hex(h.xsave_features)},
            {"xsave_size", h.xsave_size},
            {"task_was_stopped", bool(h.flags & image::kHeaderTaskWasStopped)}};
}

Json task(const DecodedImage& img) {
    const auto& t = img.task;
    Json j = {{"pid", t.pid},
              {"ppid", t.ppid},
              {"pgid", t.pgid},
              {"sid", t.sid},
              {"starttime", t.starttime}};
    put_text(j, "comm", field(t.comm));
    j["personality"] = hex(t.personality);
    j["nice"] = t.nice;
    return j;
}

Json creds(const DecodedImage& img) {
    const auto& c = img.creds;
    return {{"uid", c.uid},
            {"gid", c.gid},
            {"groups", img.groups},
            {"cap_inh", hex(c.cap_inh)},
            {"cap_prm", hex(c.cap_prm)},
            {"cap_eff", hex(c.cap_eff)},
            {"cap_bnd", hex(c.cap_bnd)},
            {"cap_amb", hex(c.cap_amb)},
            {"no_new_privs", c.no_new_privs}};
}

Json fs_state(const DecodedImage& img) {
    Json j = Json::object();
    put_text(j, "cwd", img.cwd);
    put_text(j, "root", img.root);
    j["umask"] = oct(img.fs.umask);
    return j;
}

Json mm(const DecodedImage& img) {
    const auto& m = img.mm;
    Json j = {{"start_code", hex(m.start_code)},   {"end_code", hex(m.end_code)},
              {"start_data", hex(m.start_data)},   {"end_data", hex(m.end_data)},
              {"start_brk", hex(m.start_brk)},     {"brk", hex(m.brk)},
              {"start_stack", hex(m.start_stack)}, {"arg_start", hex(m.arg_start)},
              {"arg_end", hex(m.arg_end)},         {"env_start", hex(m.env_start)},
              {"env_end", hex(m.env_end)}};
    put_text(j, "exe", img.exe);
    Json auxv = Json::array();
    for (size_t i = 0; i + 1 < img.auxv.size(); i += 2)
        auxv.push_back(Json::array({img.auxv[i], hex(img.auxv[i + 1])}));
    j["auxv"] = std::move(auxv);
    return j;
}

Json vmas(const DecodedImage& img) {
    Json out = Json::array();
    for (const auto& v : img.vmas) {
        const auto& r = v.rec;
        Json j = {{"start", hex(r.start)},
                  {"end", hex(r.end)},
                  {"size", r.end - r.start},
                  {"perms", vma_perms(r)},
                  {"kind", vma_kind_name(r.kind)},
                  {"pgoff", hex(r.pgoff * image::kPageSize)},
                  {"dev", fmt::format("{:02x}:{:02x}", (r.dev >> 8) & 0xfff,
                                      (r.dev & 0xff) | ((r.dev >> 12) & 0xfff00))},
                  {"ino", r.ino}};
        put_text(j, "path", v.path);
        j["growsdown"] = bool(r.flags & image::kVmaGrowsDown);
        j["pages_stored"] = pages_in(img, r);
        if (v.content) j["content"] = {{"bytes", v.content->bytes}, {"xxh3", hex(v.content->hash)}};
        out.push_back(std::move(j));
    }
    return out;
}

Json regs(const DecodedImage& img) {
    const auto& r = img.regs;
    Json j = {{"rip", hex(r.rip)},
              {"rsp", hex(r.rsp)},
              {"rbp", hex(r.rbp)},
              {"rax", hex(r.rax)},
              {"orig_rax", hex(r.orig_rax)},
              {"eflags", hex(r.eflags)},
              {"fs_base", hex(r.fs_base)},
              {"gs_base", hex(r.gs_base)},
              {"xstate_size", img.xstate.size()}};
    if (img.xstate.size() >= 520) {
        uint64_t bv;
        std::memcpy(&bv, img.xstate.data() + 512, 8);
        j["xstate_bv"] = hex(bv);
    }
    if (img.restart)  // fid: the syscall the task was in and its restart code
        j["syscall_restart"] = {{"nr", img.restart->nr}, {"code", img.restart->code}};
    if (img.mlockall.flags) j["mlockall_flags"] = img.mlockall.flags;  // fid
    // delcwd: the task's cwd is a removed directory (state/fs.cc)
    if (const auto& d = img.deleted_cwd)
        j["deleted_cwd"] = {{"mode", d->mode},
                            {"fd", d->fd},
                            {"mtime_sec", d->mtime_sec},
                            {"mtime_nsec", d->mtime_nsec}};
    if (const auto& f = img.deleted_cwd_from)  // cwdtree: an earlier member's (state/fs_tree.cc)
        j["deleted_cwd_from"] = {{"member", f->member}, {"fd", f->fd}};
    return j;
}

Json signals(const DecodedImage& img) {
    const auto& s = img.sigstate;
    Json actions = Json::array();
    for (int sig = 1; sig <= 64; ++sig) {
        const auto& a = img.sigactions.action[sig - 1];
        if (!a.handler && !a.flags && !a.mask && !a.restorer) continue;  // SIG_DFL, nothing else
        actions.push_back({{"signo", sig},
                           {"handler", a.handler == 0   ? "SIG_DFL"
                                       : a.handler == 1 ? "SIG_IGN"
                                                        : hex(a.handler)},
                           {"flags", hex(a.flags)},
                           {"mask", hex(a.mask)},
                           {"restorer", hex(a.restorer)}});
    }
    Json pending = Json::array();
    for (const auto& p : img.pending) {
        siginfo_t si;
        std::memcpy(&si, p.info, sizeof si);
        pending.push_back({{"signo", si.si_signo},
                           {"code", si.si_code},
                           {"queue", p.queue == image::kSigqueueShared ? "shared" : "private"}});
    }
    return {{"blocked", hex(s.blocked)},
            {"altstack",
             {{"sp", hex(s.altstack_sp)}, {"size", s.altstack_size}, {"flags", s.altstack_flags}}},
            {"actions", std::move(actions)},
            {"pending", std::move(pending)}};
}

// Version 3: the main thread's registrations, then every other thread.
Json threads(const DecodedImage& img) {
    auto thread = [](const image::ThreadRecord& t) {
        Json j = {{"tid", t.tid},
                  {"robust_head", hex(t.robust_head)},
                  {"robust_len", t.robust_len},
                  {"rseq", hex(t.rseq_addr)},
                  {"rseq_len", t.rseq_len},
                  {"rseq_sig", hex(t.rseq_sig)},
                  {"clear_child_tid", hex(t.clear_child_tid)}};
        put_text(j, "comm", t.comm);
        return j;
    };
    Json out = Json::array();
    if (img.main_thread) out.push_back(thread(*img.main_thread));
    for (const auto& t : img.threads) {
        Json j = thread(t.rec);
        j["rip"] = hex(t.regs.rip);
        j["rsp"] = hex(t.regs.rsp);
        j["fs_base"] = hex(t.regs.fs_base);
        j["blocked"] = hex(t.sigstate.blocked);
        j["altstack"] = {{"sp", hex(t.sigstate.altstack_sp)},
                         {"size", t.sigstate.altstack_size},
                         {"flags", t.sigstate.altstack_flags}};
        Json pending = Json::array();
        for (const auto& p : t.pending) {
            siginfo_t si;
            std::memcpy(&si, p.info, sizeof si);
            pending.push_back({{"signo", si.si_signo}, {"code", si.si_code}});
        }
        j["pending"] = std::move(pending);
        if (t.restart)  // fid: as the main thread's, in "regs"
            j["syscall_restart"] = {{"nr", t.restart->nr}, {"code", t.restart->code}};
        out.push_back(std::move(j));
    }
    return out;
}

Json rlimits(const DecodedImage& img) {
    auto lim = [](uint64_t v) { return v == ~0ull ? Json("unlimited") : Json(v); };
    Json out = Json::array();
    for (int i = 0; i < 16; ++i)
        out.push_back({{"name", kRlimitNames[i]},
                       {"cur", lim(img.rlimits.cur[i])},
                       {"max", lim(img.rlimits.max[i])}});
    return out;
}

Json itimers(const DecodedImage& img) {
    const char* names[3] = {"real", "virtual", "prof"};
    Json j = Json::object();
    for (int i = 0; i < 3; ++i) {
        const auto& v = img.itimers.v[i];
        j[names[i]] = {{"interval_us", v[0] * 1000000 + v[1]}, {"value_us", v[2] * 1000000 + v[3]}};
    }
    return j;
}

// The kernel-object records of one fd (state/kobj.h), field by field.
Json kobj_records(const FdEntry& f) {
    Json out = Json::array();
    for (const auto& [type, p] : f.kobj) {
        auto get = [&]<class T>(T v) {
            std::memcpy(&v, p.data(), sizeof v);
            return v;
        };
        switch (type) {
            case image::RecordType::kEventfd: {
                auto r = get(image::EventfdRecord{});
                out.push_back({{"record", "eventfd"}, {"count", r.count}, {"flags", r.flags}});
                break;
            }
            case image::RecordType::kTimerfd: {
                auto r = get(image::TimerfdRecord{});
                out.push_back({{"record", "timerfd"},
                               {"clockid", r.clockid},
                               {"settime_flags", r.settime_flags},
                               {"ticks", r.ticks},
                               {"value_ns", r.value_ns},
                               {"interval_ns", r.interval_ns},
                               {"captured_ns", r.captured_ns}});
                break;
            }
            case image::RecordType::kSignalfd: {
                auto r = get(image::SignalfdRecord{});
                out.push_back({{"record", "signalfd"}, {"mask", hex(r.mask)}});
                break;
            }
            case image::RecordType::kEpollWatch: {
                auto r = get(image::EpollWatchRecord{});
                out.push_back({{"record", "epoll-watch"},
                               {"tfd", r.tfd},
                               {"events", hex(r.events)},
                               {"data", hex(r.data)}});
                break;
            }
            case image::RecordType::kInotifyWatch: {
                auto r = get(image::InotifyWatchRecord{});
                Json j = {{"record", "inotify-watch"}, {"wd", r.wd}, {"mask", hex(r.mask)}};
                put_text(j, "path", p.substr(sizeof r));
                out.push_back(std::move(j));
                break;
            }
            case image::RecordType::kPidfdTarget: {  // pidfd: state/pidfd.cc
                auto r = get(image::PidfdTargetRecord{});
                out.push_back({{"record", "pidfd-target"}, {"pid", r.pid}});
                break;
            }
            default:
                out.push_back({{"record", image::record_type_info(uint32_t(type))->name}});
        }
    }
    return out;
}

Json fds(const DecodedImage& img) {
    Json out = Json::array();
    for (const auto& f : img.fds) {
        const auto& r = f.rec;
        Json j = {{"fd", r.fd}, {"kind", fd_kind_name(r.kind)}};
        put_text(j, "path", f.path);
        j.update(Json{{"flags", oct(r.open_flags)},
                      {"open_flags", r.open_flags},
                      {"pos", r.pos},
                      {"mode", oct(r.mode)},
                      {"cloexec", bool(r.fd_flags & image::kFdCloexec)},
                      {"same_as", r.same_as},
                      {"dev", r.dev},
                      {"ino", r.ino},
                      {"size", r.size},
                      {"mtime_sec", r.mtime_sec},
                      {"mtime_nsec", r.mtime_nsec},
                      {"data_bytes", f.data_bytes}});
        if (r.kind == uint32_t(image::FdKind::kReopened)) j["first"] = image::reopened_first(r);
        if (r.kind == uint32_t(image::FdKind::kTreeCwdDir)) j["cwd_of"] = r.rdev;  // cwdtree
        if (f.content) j["content"] = {{"size", f.content->size}, {"xxh3", hex(f.content->hash)}};
        if (!f.kobj.empty()) j["kobj"] = kobj_records(f);
        for (const auto& e : img.inet)
            if (e.rec.fd == r.fd) j["socket"] = inet_json(e);
        out.push_back(std::move(j));
    }
    return out;
}

Json pipes(const DecodedImage& img) {
    Json out = Json::array();
    for (const auto& p : img.pipes)
        out.push_back({{"ino", p.rec.ino},
                       {"pipe_size", p.rec.pipe_size},
                       {"packet", bool(p.rec.flags & image::kPipePacket)},
                       {"buffers", p.lens},
                       {"data_bytes", p.rec.data_len}});
    return out;
}

Json unix_sockets(const DecodedImage& img) {
    Json out = Json::array();
    for (const auto& u : img.unix_sockets) {
        const auto& r = u.rec;
        out.push_back({{"ino", r.ino},
                       {"peer", r.peer},
                       {"type", r.type},
                       {"shutdown", r.shutdown},
                       {"passcred", bool(r.passcred)},
                       {"sndbuf", r.sndbuf},
                       {"rcvbuf", r.rcvbuf},
                       {"rcvtimeo_usec", r.rcvtimeo_usec},
                       {"sndtimeo_usec", r.sndtimeo_usec},
                       {"messages", u.lens},
                       {"data_bytes", r.data_len}});
    }
    return out;
}

Json unix_bound(const DecodedImage& img) {  // unix: state/unix_bound.cc
    Json out = Json::array();
    for (const auto& u : img.unix_bound) {
        const auto& r = u.rec;
        std::string name(r.name, std::min<size_t>(r.name_len, sizeof r.name));
        if (!name.empty() && name[0] == '\0') name[0] = '@';
        Json senders = Json::array();
        for (const auto& s : img.unix_senders)
            if (s.ino == r.sock.ino)
                senders.push_back({{"first", s.first}, {"count", s.count}, {"sender", s.sender}});
        Json j = {{"ino", r.sock.ino},
                  {"peer", r.sock.peer},
                  {"type", r.sock.type},
                  {"role", r.role},
                  {"backlog", r.backlog},
                  {"listener", r.listener},
                  {"order", r.order},
                  {"shutdown", r.sock.shutdown},
                  {"passcred", bool(r.sock.passcred)},
                  {"messages", u.lens},
                  {"senders", senders},
                  {"data_bytes", r.sock.data_len}};
        put_text(j, "name", name);
        out.push_back(std::move(j));
    }
    return out;
}

Json stats_record(const image::StatsRecord& s) {
    return Json{{"frozen_ns", s.frozen_ns},          {"total_ns", s.total_ns},
                {"pages_scanned", s.pages_scanned},  {"pages_copied", s.pages_copied},
                {"pages_zero", s.pages_zero},        {"pages_stored", s.pages_stored},
                {"captured_at_ns", s.captured_at_ns}};
}

Json stats(const DecodedImage& img) {
    uint64_t stored = 0;
    for (const auto& p : img.pages) stored += p.nr_pages;
    Json j = {{"page_bytes", stored * image::kPageSize}};
    if (img.stats) j.update(stats_record(*img.stats));
    return j;
}

}  // namespace

const char* vma_kind_name(uint32_t k) {
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
        case image::VmaKind::kMemfdShared:
            return "memfd-shared";
        case image::VmaKind::kMemfdPrivate:
            return "memfd-private";
        case image::VmaKind::kAnonSharedOwner:
            return "anon-shared-owner";
        case image::VmaKind::kSysvShm:
            return "sysv-shm";
        case image::VmaKind::kAnonSharedTaken:
            return "anon-shared-taken";
    }
    return "?";
}

const char* fd_kind_name(uint32_t k) {
    switch (image::FdKind(k)) {
        case image::FdKind::kRegular:
            return "regular";
        case image::FdKind::kShared:  // share: given by an earlier process of the tree
            return "shared";
        case image::FdKind::kDeleted:
            return "deleted";
        case image::FdKind::kReopened:  // deltwice: state/file_reopen.cc
            return "reopened";
        case image::FdKind::kTreeCwdDir:  // cwdtree: state/fs_tree.cc
            return "tree-cwd-dir";
        case image::FdKind::kCharDev:
            return "chardev";
        case image::FdKind::kEventfd:
            return "eventfd";
        case image::FdKind::kTimerfd:
            return "timerfd";
        case image::FdKind::kSignalfd:
            return "signalfd";
        case image::FdKind::kEpoll:
            return "epoll";
        case image::FdKind::kOpath:
            return "O_PATH";
        case image::FdKind::kDirectory:
            return "directory";
        case image::FdKind::kPidfd:
            return "pidfd";
        case image::FdKind::kInotify:
            return "inotify";
        case image::FdKind::kPipe:
            return "pipe";
        case image::FdKind::kUnixSocket:
            return "unix-socket";
        case image::FdKind::kUnixBound:
            return "unix-bound";
        case image::FdKind::kMqueue:  // unix: state/mqueue.cc
            return "mqueue";
        case image::FdKind::kMqueueSecond:  // mq2: state/mqueue_second.cc
            return "mqueue-second";
        case image::FdKind::kFifo:
            return "fifo";
        case image::FdKind::kDeletedDir:  // deldir: state/dir_deleted.cc
            return "deleted-directory";
        case image::FdKind::kFifoJoin:  // fifo: docs/trees.md "FIFOs between members"
            return "fifo-join";
        case image::FdKind::kTcp:
            return "tcp";
        case image::FdKind::kUdp:
            return "udp";
        case image::FdKind::kMemfd:
            return "memfd";
        case image::FdKind::kTty:  // tty: state/tty.h
            return "tty";
        case image::FdKind::kDevTty:
            return "/dev/tty";
    }
    return "?";
}

std::string vma_perms(const image::VmaRecord& v) {
    std::string p = "----";
    if (v.flags & image::kVmaRead) p[0] = 'r';
    if (v.flags & image::kVmaWrite) p[1] = 'w';
    if (v.flags & image::kVmaExec) p[2] = 'x';
    p[3] = (v.flags & image::kVmaShared) ? 's' : 'p';
    return p;
}

uint64_t pages_in(const DecodedImage& img, const image::VmaRecord& v) {
    uint64_t n = 0;
    for (const auto& p : img.pages)
        if (p.vaddr >= v.start && p.vaddr < v.end) n += p.nr_pages;
    return n;
}

Json image_to_json(const DecodedImage& img) {
    Json j;
    j["header"] = header(img);
    j["task"] = task(img);
    j["creds"] = creds(img);
    j["fs"] = fs_state(img);
    j["mm"] = mm(img);
    j["vmas"] = vmas(img);
    j["regs"] = regs(img);
    j["signals"] = signals(img);
    j["threads"] = threads(img);
    j["rlimits"] = rlimits(img);
    j["itimers"] = itimers(img);
    j["fds"] = fds(img);
    if (!img.pipes.empty()) j["pipes"] = pipes(img);
    if (!img.unix_sockets.empty()) j["unix_sockets"] = unix_sockets(img);
    if (!img.unix_bound.empty()) j["unix_bound"] = unix_bound(img);
    j["stats"] = stats(img);
    if (const auto& t = img.tty) {  // tty: the shell job's terminal (state/tty.h)
        j["tty"] = {{"index", t->index},   {"sid", t->sid},      {"fg_pgid", t->fg_pgid},
                    {"iflag", t->iflag},   {"oflag", t->oflag},  {"cflag", t->cflag},
                    {"lflag", t->lflag},   {"rows", t->rows},    {"cols", t->cols},
                    {"ispeed", t->ispeed}, {"ospeed", t->ospeed}};
    }
    for (size_t i = 0; i < img.processes.size(); ++i) {  // trees
        const auto& p = img.processes[i];
        Json pj = {
            {"pid", p.pid}, {"ppid", p.ppid}, {"pgid", p.pgid}, {"sid", p.sid}, {"flags", p.flags}};
        for (const auto& [process, st] : img.member_stats)  // overlap: version 17
            if (process == i) pj["stats"] = stats_record(st);
        j["processes"].push_back(std::move(pj));
    }
    if (img.chain) {  // incr: docs/incremental.md
        uint64_t kept = 0;
        for (const auto& k : img.keeps) kept += k.nr_pages;
        j["chain"] = {{"id", img.chain->id},
                      {"base_id", img.chain->base_id},
                      {"keeps", img.keeps.size()},
                      {"pages_kept", kept}};
    }
    j["image"] = {{"size", img.size},
                  {"records", img.record_count},
                  {"checksum", fmt::format("{:016x}", img.checksum)}};
    return j;
}

}  // namespace crfs::tool
