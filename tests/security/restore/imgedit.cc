// crfs-imgedit: edits a crfs image the way an attacker would, for tests only.
// The checksum is public (XXH3-64 of the bytes before the trailer), so an
// edited image is made valid again: every field is attacker-chosen.
//
//   crfs-imgedit IN --list                 one JSON line per record
//   crfs-imgedit IN OUT EDIT...            apply the edits, fix the checksum
//
// EDIT:
//   REC[#N].FIELD=VALUE    a named field (table below) of the Nth REC record
//   REC[#N]@OFF:SIZE=VALUE raw little-endian bytes (SIZE 1, 2, 4, 8) of the payload
//   REC[#N]+=VALUE         append a little-endian u32 (e.g. a group to creds)
//   REC[#N].path=TEXT      the record's string (vma, fd, inotify-watch: path; mm: exe; fs: cwd);
//                          \xHH escapes allowed; lengths are fixed up
//   random=SEED            one random field edit (printed on stdout)
// VALUE: decimal, 0x hex or negative decimal.
#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "crfs/image_format.h"

namespace {

using namespace crfs::image;

struct Rec {
    uint32_t type;
    std::string payload;
};

struct Field {
    const char* rec;
    const char* name;
    uint32_t off, size;
};

// Named fields of the fixed part of each record (offsets from image_format.h).
constexpr Field kFields[] = {
    {"task", "pid", 0, 4},
    {"task", "ppid", 4, 4},
    {"task", "pgid", 8, 4},
    {"task", "sid", 12, 4},
    {"task", "personality", 24, 4},
    {"task", "nice", 28, 4},
    {"task", "flags", 48, 4},
    {"creds", "uid0", 0, 4},
    {"creds", "uid1", 4, 4},
    {"creds", "uid2", 8, 4},
    {"creds", "uid3", 12, 4},
    {"creds", "cap_prm", 40, 8},
    {"creds", "cap_bnd", 56, 8},
    {"fs", "umask", 0, 4},
    {"deleted-cwd", "mode", 0, 4},  // delcwd: state/fs.cc
    {"deleted-cwd", "fd", 4, 4},
    {"deleted-cwd", "mtime_nsec", 16, 8},
    {"deleted-cwd-from", "member", 0, 4},  // cwdtree: state/fs_tree.cc
    {"deleted-cwd-from", "fd", 4, 4},
    {"mm", "start_brk", 32, 8},
    {"mm", "brk", 40, 8},
    {"vma", "start", 0, 8},
    {"vma", "end", 8, 8},
    {"vma", "pgoff", 16, 8},
    {"vma", "dev", 24, 8},
    {"vma", "ino", 32, 8},
    {"vma", "kind", 40, 4},
    {"vma", "flags", 44, 4},
    {"vma", "vm_flags", 48, 8},
    {"regs", "rax", 80, 8},
    {"regs", "rip", 128, 8},
    {"regs", "cs", 136, 8},
    {"regs", "rsp", 152, 8},
    {"regs", "ss", 160, 8},
    {"regs", "fs_base", 168, 8},
    {"sigstate", "blocked", 0, 8},
    {"sigstate", "altstack_flags", 24, 4},
    {"siginfo", "queue", 0, 4},
    {"siginfo", "signo", 8, 4},
    {"fd", "fd", 0, 4},
    {"fd", "kind", 4, 4},
    {"fd", "open_flags", 8, 4},
    {"fd", "fd_flags", 12, 4},
    {"fd", "pos", 16, 8},
    {"fd", "mode", 24, 4},
    {"fd", "dev", 32, 8},
    {"fd", "ino", 40, 8},
    {"fd", "size", 48, 8},
    {"fd", "rdev", 56, 8},
    {"fd", "mtime_sec", 64, 8},
    {"fd", "mtime_nsec", 72, 8},
    {"fd", "same_as", 80, 4},
    {"fd", "reserved", 84, 4},
    {"fd-content", "fd", 0, 4},
    {"fd-content", "reserved", 4, 4},
    {"fd-content", "size", 8, 8},
    {"fd-content", "hash", 16, 8},
    {"fd-content", "ctime_nsec", 56, 8},
    {"process", "pid", 0, 4},  // trees
    {"process", "ppid", 4, 4},
    {"process", "pgid", 8, 4},
    {"process", "sid", 12, 4},
    {"process", "flags", 16, 4},
    {"member-pages", "process", 0, 4},  // streamtree
    {"member-pages", "reserved", 4, 4},
    {"share-fd", "fd", 0, 4},  // share
    {"share-fd", "owner", 4, 4},
    {"share-fd", "owner_fd", 8, 4},
    {"share-fd", "end", 12, 4},
    {"zombie", "exit_code", 0, 4},  // life
    {"zombie", "uid", 4, 4},
    {"zombie", "gid", 8, 4},
    {"vma-content", "start", 0, 8},
    {"vma-content", "bytes", 8, 8},
    {"vma-content", "hash", 16, 8},
    {"vma-content", "ctime_nsec", 56, 8},
    {"settings", "policy", 0, 4},
    {"settings", "rt_priority", 4, 4},
    {"settings", "reset_on_fork", 8, 4},
    {"settings", "oom_score_adj", 12, 4},
    {"settings", "timer_slack_ns", 16, 8},
    {"settings", "thp_disable", 24, 4},
    {"settings", "child_subreaper", 28, 4},
    {"settings", "dumpable", 32, 4},
    {"settings", "membarrier", 36, 4},
    {"settings", "cpus_len", 40, 4},
    {"settings", "reserved", 44, 4},
    {"pipe", "ino", 0, 8},
    {"pipe", "pipe_size", 8, 4},
    {"pipe", "flags", 12, 4},
    {"pipe", "nsegs", 16, 4},
    {"pipe", "reserved", 20, 4},
    {"pipe", "data_len", 24, 8},
    {"unix-socket", "ino", 0, 8},
    {"unix-socket", "peer", 8, 8},
    {"unix-socket", "type", 16, 4},
    {"unix-socket", "shutdown", 20, 4},
    {"unix-socket", "passcred", 24, 4},
    {"unix-socket", "sndbuf", 28, 4},
    {"unix-socket", "rcvbuf", 32, 4},
    {"unix-socket", "nmsgs", 36, 4},
    {"unix-socket", "rcvtimeo_usec", 40, 8},
    {"unix-socket", "sndtimeo_usec", 48, 8},
    {"unix-socket", "data_len", 56, 8},
    {"unix-bound", "ino", 0, 8},  // unix: state/unix_bound.cc
    {"unix-bound", "peer", 8, 8},
    {"unix-bound", "type", 16, 4},
    {"unix-bound", "shutdown", 20, 4},
    {"unix-bound", "sndbuf", 28, 4},
    {"unix-bound", "nmsgs", 36, 4},
    {"unix-bound", "data_len", 56, 8},
    {"unix-bound", "role", 64, 4},
    {"unix-bound", "backlog", 68, 4},
    {"unix-bound", "listener", 72, 8},
    {"unix-bound", "order", 80, 4},
    {"unix-bound", "name_len", 84, 4},
    {"unix-bound", "path_dev", 88, 8},
    {"unix-bound", "path_ino", 96, 8},
    {"unix-bound", "options", 212, 4},
    {"pidfd-target", "fd", 0, 4},  // pidfd: state/pidfd.cc
    {"pidfd-target", "pid", 4, 4},
    {"unix-sender", "ino", 0, 8},
    {"unix-sender", "first", 8, 4},
    {"unix-sender", "count", 12, 4},
    {"unix-sender", "sender", 16, 8},
    {"unix-maker", "ino", 0, 8},
    {"unix-maker", "maker", 8, 4},
    {"unix-maker", "reserved", 12, 4},
    {"unix-options", "ino", 0, 8},
    {"unix-options", "options", 8, 4},
    {"unix-options", "reserved", 12, 4},
    {"memfd", "ino", 0, 8},
    {"memfd", "size", 8, 8},
    {"memfd", "seals", 16, 4},
    {"memfd", "mode", 20, 4},
    {"memfd", "name_len", 24, 4},
    {"memfd", "reserved", 28, 4},
    {"memfd-data", "ino", 0, 8},
    {"memfd-data", "offset", 8, 8},
    {"thread", "tid", 0, 4},
    {"thread", "robust_head", 8, 8},
    {"thread", "robust_len", 16, 8},
    {"thread", "rseq_addr", 24, 8},
    {"thread", "rseq_len", 32, 4},
    {"thread", "clear_child_tid", 40, 8},
    {"thread-attrs", "tid", 0, 4},  // fid
    {"thread-attrs", "pdeathsig", 4, 4},
    {"thread-attrs", "timer_slack_ns", 8, 8},
    {"thread-attrs", "ioprio", 16, 4},
    {"thread-attrs", "securebits", 20, 4},
    {"posix-timer-thread", "id", 0, 4},  // timer
    {"posix-timer-thread", "tid", 4, 4},
};

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "crfs-imgedit: %s\n", msg.c_str());
    std::exit(2);
}

const char* type_name(uint32_t t) {
    auto* info = record_type_info(t);
    return info ? info->name : "?";
}

uint32_t type_of(const std::string& name) {
    for (const auto& t : kRecordTypes)
        if (name == t.name) return uint32_t(t.type);
    die("unknown record type " + name);
}

template <class T>
T get(const std::string& p, size_t off) {
    T v{};
    if (off + sizeof v <= p.size()) std::memcpy(&v, p.data() + off, sizeof v);
    return v;
}

void put(std::string& p, size_t off, uint64_t v, uint32_t size) {
    if (off + size > p.size()) die("field beyond the record's payload");
    std::memcpy(p.data() + off, &v, size);
}

struct Image {
    std::string header;
    std::vector<Rec> recs;  // without the trailer
};

Image parse(const std::string& bytes) {
    Image img;
    if (bytes.size() < sizeof(Header)) die("short image");
    uint32_t hsize = get<uint32_t>(bytes, offsetof(Header, header_size));
    if (hsize < sizeof(Header) || hsize > bytes.size()) die("bad header size");
    img.header = bytes.substr(0, hsize);
    size_t at = hsize;
    for (;;) {
        if (at + sizeof(RecordHeader) > bytes.size()) die("truncated image");
        RecordHeader rh;
        std::memcpy(&rh, bytes.data() + at, sizeof rh);
        at += sizeof rh;
        if (rh.length > bytes.size() - at) die("truncated record");
        if (rh.type == uint32_t(RecordType::kTrailer)) break;
        img.recs.push_back({rh.type, bytes.substr(at, rh.length)});
        at += rh.length;
    }
    return img;
}

std::string serialise(const Image& img) {
    std::string out = img.header;
    for (const auto& r : img.recs) {
        RecordHeader rh{r.type, 0, r.payload.size()};
        out.append(reinterpret_cast<const char*>(&rh), sizeof rh);
        out += r.payload;
    }
    Trailer t{img.recs.size(), XXH3_64bits(out.data(), out.size()), {}};
    std::memcpy(t.magic, kTrailerMagic, sizeof t.magic);
    RecordHeader rh{uint32_t(RecordType::kTrailer), 0, sizeof t};
    out.append(reinterpret_cast<const char*>(&rh), sizeof rh);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
    return out;
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\')
            o += '\\', o += char(c);
        else if (c < 0x20 || c > 0x7e) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else
            o += char(c);
    }
    return o + "\"";
}

void list(const Image& img) {
    std::vector<int> nth(256, 0);
    for (const auto& r : img.recs) {
        const auto& p = r.payload;
        std::string name = type_name(r.type);
        int n = nth[r.type & 0xff]++;
        std::string extra;
        if (name == "vma") {
            auto v = get<VmaRecord>(p, 0);
            extra = ",\"start\":" + std::to_string(v.start) + ",\"end\":" + std::to_string(v.end) +
                    ",\"kind\":" + std::to_string(v.kind) +
                    ",\"flags\":" + std::to_string(v.flags) +
                    ",\"path\":" + json_str(p.substr(sizeof v, v.path_len));
        } else if (name == "fd") {
            auto f = get<FdRecord>(p, 0);
            extra = ",\"fd\":" + std::to_string(f.fd) + ",\"kind\":" + std::to_string(f.kind) +
                    ",\"path\":" + json_str(p.substr(sizeof f, f.path_len));
        } else if (name == "pages") {  // sysvtree: whose memory the pages are
            auto g = get<PagesRecord>(p, 0);
            extra = ",\"vaddr\":" + std::to_string(g.vaddr) +
                    ",\"nr_pages\":" + std::to_string(g.nr_pages);
        } else if (name == "member-pages") {  // streamtree: whose page section
            extra = ",\"process\":" + std::to_string(get<MemberPagesRecord>(p, 0).process);
        } else if (name == "vma-content") {
            extra = ",\"start\":" + std::to_string(get<VmaContentRecord>(p, 0).start);
        } else if (name == "fd-content") {
            extra = ",\"fd\":" + std::to_string(get<FdContentRecord>(p, 0).fd);
        } else if (name == "creds") {
            extra = ",\"ngroups\":" + std::to_string(get<CredsRecord>(p, 0).ngroups);
        } else if (name == "share-fd") {  // thpidfd2: which fd each taker's is
            auto t = get<ShareFdRecord>(p, 0);
            extra = ",\"fd\":" + std::to_string(t.fd) + ",\"owner\":" + std::to_string(t.owner) +
                    ",\"owner_fd\":" + std::to_string(t.owner_fd) +
                    ",\"end\":" + std::to_string(t.end);
        } else if (name == "pidfd-target") {  // pidfd: state/pidfd.cc
            auto t = get<PidfdTargetRecord>(p, 0);
            extra = ",\"fd\":" + std::to_string(t.fd) + ",\"pid\":" + std::to_string(t.pid);
        } else if (name == "regs") {
            auto g = get<RegsRecord>(p, 0);
            extra = ",\"rip\":" + std::to_string(g.rip) + ",\"rsp\":" + std::to_string(g.rsp);
        }
        std::printf("{\"type\":\"%s\",\"n\":%d,\"len\":%zu%s}\n", name.c_str(), n, p.size(),
                    extra.c_str());
    }
}

std::string unescape(const std::string& s) {
    std::string o;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() + 0 && s[i + 1] == 'x') {
            o += char(std::stoi(s.substr(i + 2, 2), nullptr, 16));
            i += 3;
        } else {
            o += s[i];
        }
    }
    return o;
}

Rec& find(Image& img, const std::string& sel) {
    std::string name = sel;
    int n = 0;
    if (auto h = sel.find('#'); h != std::string::npos) {
        name = sel.substr(0, h);
        n = std::stoi(sel.substr(h + 1));
    }
    uint32_t t = type_of(name);
    for (auto& r : img.recs)
        if (r.type == t && n-- == 0) return r;
    die("no record " + sel);
}

// The string of a record: where it is, and which length field counts it.
void set_string(Rec& r, const std::string& text) {
    auto& p = r.payload;
    size_t at = 0, len_field = 0, old_len = 0;
    std::string name = type_name(r.type);
    if (name == "vma") {
        at = sizeof(VmaRecord), len_field = offsetof(VmaRecord, path_len);
        old_len = get<uint32_t>(p, len_field);
    } else if (name == "fd") {
        at = sizeof(FdRecord), len_field = offsetof(FdRecord, path_len);
        old_len = get<uint32_t>(p, len_field);
    } else if (name == "mm") {
        at = sizeof(MmRecord) + get<uint32_t>(p, offsetof(MmRecord, auxv_len));
        len_field = offsetof(MmRecord, exe_len);
        old_len = get<uint32_t>(p, len_field);
    } else if (name == "inotify-watch") {
        at = sizeof(InotifyWatchRecord), len_field = offsetof(InotifyWatchRecord, path_len);
        old_len = get<uint32_t>(p, len_field);
    } else if (name == "fs") {
        at = sizeof(FsRecord), len_field = offsetof(FsRecord, cwd_len);
        old_len = get<uint32_t>(p, len_field);
    } else {
        die("record " + name + " has no string");
    }
    p.replace(at, old_len, text);
    put(p, len_field, text.size(), 4);
}

uint64_t parse_value(const std::string& v) {
    if (!v.empty() && v[0] == '-') return uint64_t(std::stoll(v, nullptr, 0));
    return std::stoull(v, nullptr, 0);
}

void edit(Image& img, const std::string& e) {
    auto eq = e.find('=');
    if (eq == std::string::npos) die("edit without '=': " + e);
    std::string lhs = e.substr(0, eq), value = e.substr(eq + 1);
    if (!lhs.empty() && lhs.back() == '+') {  // REC[#N]+=VALUE: append a u32
        Rec& r = find(img, lhs.substr(0, lhs.size() - 1));
        uint32_t v = uint32_t(parse_value(value));
        r.payload.append(reinterpret_cast<const char*>(&v), sizeof v);
        return;
    }
    if (auto at = lhs.find('@'); at != std::string::npos) {
        Rec& r = find(img, lhs.substr(0, at));
        auto colon = lhs.find(':', at);
        if (colon == std::string::npos) die("raw edit needs @OFF:SIZE");
        put(r.payload, std::stoul(lhs.substr(at + 1, colon - at - 1), nullptr, 0),
            parse_value(value), uint32_t(std::stoul(lhs.substr(colon + 1))));
        return;
    }
    auto dot = lhs.find('.');
    if (dot == std::string::npos) die("edit needs REC.FIELD: " + e);
    Rec& r = find(img, lhs.substr(0, dot));
    std::string field = lhs.substr(dot + 1);
    if (field == "path") return set_string(r, unescape(value));
    for (const auto& f : kFields)
        if (type_name(r.type) == std::string(f.rec) && field == f.name)
            return put(r.payload, f.off, parse_value(value), f.size);
    die("unknown field " + lhs);
}

// One random edit of a record's fixed part (page bytes and the xsave area are
// data, not fields: left alone so the edit hits something the restorer reads).
void random_edit(Image& img, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<size_t> cand;
    for (size_t i = 0; i < img.recs.size(); ++i) {
        auto t = RecordType(img.recs[i].type);
        if (t != RecordType::kXstate && t != RecordType::kStats) cand.push_back(i);
    }
    Rec& r = img.recs[cand[rng() % cand.size()]];
    size_t limit = r.payload.size();
    if (RecordType(r.type) == RecordType::kPages) limit = sizeof(PagesRecord);
    static constexpr uint32_t kSizes[] = {1, 2, 4, 8};
    uint32_t size = kSizes[rng() % 4];
    if (limit < size) size = 1;
    size_t off = (rng() % (limit - size + 1)) & ~size_t(size - 1);
    uint64_t old = 0;
    std::memcpy(&old, r.payload.data() + off, size);
    uint64_t v;
    switch (rng() % 6) {
        case 0:
            v = 0;
            break;
        case 1:
            v = ~0ull;
            break;
        case 2:
            v = old ^ (1ull << (rng() % (size * 8)));
            break;
        case 3:
            v = old + 1;
            break;
        case 4:
            v = rng() % 64;
            break;
        default:
            v = rng();
            break;
    }
    std::memcpy(r.payload.data() + off, &v, size);
    std::printf("%s@%zu:%u=0x%llx (was 0x%llx)\n", type_name(r.type), off, size,
                (unsigned long long)v, (unsigned long long)old);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) die("usage: crfs-imgedit IN --list | IN OUT EDIT...");
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) die(std::string("cannot read ") + argv[1]);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Image img = parse(bytes);
    if (std::string(argv[2]) == "--list") {
        list(img);
        return 0;
    }
    for (int i = 3; i < argc; ++i) {
        std::string e = argv[i];
        if (e.rfind("random=", 0) == 0)
            random_edit(img, std::stoull(e.substr(7)));
        else
            edit(img, e);
    }
    std::string out = serialise(img);
    std::ofstream o(argv[2], std::ios::binary | std::ios::trunc);
    o.write(out.data(), std::streamsize(out.size()));
    if (!o) die(std::string("cannot write ") + argv[2]);
    return 0;
}
