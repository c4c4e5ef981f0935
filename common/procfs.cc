#include "common/procfs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "common/io.h"
#include "common/thread_stacks.h"
#include "crfs/image_format.h"

namespace crfs {
namespace {

// Splits on runs of spaces/tabs.
std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        size_t j = i;
        while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
        if (j > i) out.push_back(line.substr(i, j - i));
        i = j;
    }
    return out;
}

template <class T>
bool to_num(std::string_view s, T& out, int base = 10) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && p == s.data() + s.size();
}

template <class Fn>
void for_each_line(std::string_view text, Fn fn) {
    while (!text.empty()) {
        size_t nl = text.find('\n');
        fn(text.substr(0, nl));
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
}

// The rows of a /proc/net table, split into fields, without its header line.
template <class Fn>
void for_each_row(std::string_view text, Fn fn) {
    bool header = true;
    for_each_line(text, [&](std::string_view line) {
        if (!std::exchange(header, false)) fn(fields(line));
    });
}

// /proc/<pid>/... of a task that exited reads as ENOENT (or ESRCH mid-read);
// callers want "no such process".
template <class T>
Result<T> task_gone_as_esrch(Result<T> r) {
    if (!r && r.error().code == ENOENT) r.error().code = ESRCH;
    return r;
}

// /proc/<pid>/<name> (at most `max` bytes) parsed by `parse`, its errors
// naming the file; the task being gone is ESRCH.
template <class Parse>
auto read_parsed(pid_t pid, const char* name, size_t max, Parse parse)
    -> decltype(parse(std::string_view())) {
    std::string path = "/proc/" + std::to_string(pid) + "/" + name;
    auto text = task_gone_as_esrch(read_file(path, max));
    if (!text) return std::unexpected(text.error());
    auto parsed = parse(*text);
    if (!parsed) return std::unexpected(parsed.error().context(path));
    return parsed;
}

}  // namespace

Result<ProcStat> parse_stat(std::string_view text) {
    // "pid (comm) state ppid pgrp session ...\n": comm may hold spaces and ')'.
    while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    size_t open = text.find('(');
    size_t close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open)
        return make_error(EIO, "parse stat: no (comm) field");
    ProcStat st;
    if (!to_num(text.substr(0, open > 0 ? open - 1 : 0), st.pid))
        return make_error(EIO, "parse stat: bad pid");
    st.comm = std::string(text.substr(open + 1, close - open - 1));
    auto f = fields(text.substr(close + 1));
    // f[0] is field 3 (state); field N is f[N - 3].
    constexpr size_t kStartTime = 22 - 3;
    if (f.size() <= kStartTime) return make_error(EIO, "parse stat: too few fields");
    if (f[0].size() != 1) return make_error(EIO, "parse stat: bad state");
    st.state = f[0][0];
    if (!to_num(f[4 - 3], st.ppid) || !to_num(f[5 - 3], st.pgrp) || !to_num(f[6 - 3], st.session) ||
        !to_num(f[7 - 3], st.tty_nr) || !to_num(f[8 - 3], st.tpgid) ||
        !to_num(f[9 - 3], st.flags) || !to_num(f[19 - 3], st.nice) ||
        !to_num(f[20 - 3], st.num_threads) || !to_num(f[kStartTime], st.starttime))
        return make_error(EIO, "parse stat: bad number");
    // Later fields, where the kernel prints them (field N is f[N - 3]).
    struct Later {
        size_t field;
        uint64_t* out;
    };
    const Later later[] = {{26, &st.start_code}, {27, &st.end_code}, {28, &st.start_stack},
                           {45, &st.start_data}, {46, &st.end_data}, {47, &st.start_brk},
                           {48, &st.arg_start},  {49, &st.arg_end},  {50, &st.env_start},
                           {51, &st.env_end},    {52, &st.exit_code}};
    for (const Later& l : later)
        if (f.size() > l.field - 3 && !to_num(f[l.field - 3], *l.out))
            return make_error(EIO, "parse stat: bad field " + std::to_string(l.field));
    constexpr size_t kExitSignal = 38 - 3;  // -1 for a thread
    if (f.size() > kExitSignal && !to_num(f[kExitSignal], st.exit_signal))
        return make_error(EIO, "parse stat: bad exit signal");
    constexpr size_t kProcessor = 39 - 3;
    if (f.size() > kProcessor && !to_num(f[kProcessor], st.processor))
        return make_error(EIO, "parse stat: bad processor");
    constexpr size_t kPolicy = 41 - 3;
    if (f.size() > kPolicy && !to_num(f[kPolicy], st.policy))
        return make_error(EIO, "parse stat: bad policy");
    return st;
}

Result<ProcStatus> parse_status(std::string_view text) {
    ProcStatus st;
    bool have_tgid = false, have_uid = false, have_gid = false;
    bool bad = false;
    uint64_t rss_anon = 0, rss_shmem = 0, swap = 0;
    for_each_line(text, [&](std::string_view line) {
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return;
        std::string_view key = line.substr(0, colon);
        auto f = fields(line.substr(colon + 1));
        auto one = [&](auto& out) { bad |= f.empty() || !to_num(f[0], out); };
        if (key == "State") {
            bad |= f.empty() || f[0].size() != 1;
            if (!f.empty()) st.state = f[0][0];
        } else if (key == "Tgid") {
            one(st.tgid);
            have_tgid = true;
        } else if (key == "TracerPid") {
            one(st.tracer_pid);
        } else if (key == "Threads") {
            one(st.threads);
        } else if (key == "CapInh") {
            bad |= f.empty() || !to_num(f[0], st.cap_inh, 16);
        } else if (key == "CapPrm") {
            bad |= f.empty() || !to_num(f[0], st.cap_prm, 16);
        } else if (key == "CapEff") {
            bad |= f.empty() || !to_num(f[0], st.cap_eff, 16);
        } else if (key == "CapBnd") {
            bad |= f.empty() || !to_num(f[0], st.cap_bnd, 16);
        } else if (key == "CapAmb") {
            bad |= f.empty() || !to_num(f[0], st.cap_amb, 16);
        } else if (key == "NoNewPrivs") {
            one(st.no_new_privs);
        } else if (key == "Umask") {
            bad |= f.empty() || !to_num(f[0], st.umask, 8);
            st.has_umask = true;
        } else if (key == "Groups") {
            st.groups.resize(f.size());
            for (size_t i = 0; i < f.size(); ++i) bad |= !to_num(f[i], st.groups[i]);
        } else if (key == "RssAnon") {
            one(rss_anon);
        } else if (key == "RssShmem") {
            one(rss_shmem);
        } else if (key == "VmSwap") {
            one(swap);
        } else if (key == "Seccomp") {
            one(st.seccomp);
        } else if (key == "Seccomp_filters") {
            one(st.seccomp_filters);
        } else if (key == "VmLck") {
            one(st.vm_lck_kb);
        } else if (key == "THP_enabled") {
            one(st.thp_enabled);
        } else if (key == "SigPnd" || key == "SigIgn" || key == "SigCgt") {
            uint64_t& set = key == "SigPnd"   ? st.sig_pnd
                            : key == "SigIgn" ? st.sig_ign
                                              : st.sig_cgt;
            bad |= f.empty() || !to_num(f[0], set, 16);
            ++st.sig_sets;
        } else if (key == "Cpus_allowed_list") {
            st.cpus_allowed = f.empty() ? std::string() : std::string(f[0]);
        } else if (key == "Uid" || key == "Gid") {
            if (f.size() != 4) {
                bad = true;
                return;
            }
            for (int i = 0; i < 4; ++i)
                bad |= key == "Uid" ? !to_num(f[i], st.uid[i]) : !to_num(f[i], st.gid[i]);
            (key == "Uid" ? have_uid : have_gid) = true;
        }
    });
    if (bad) return make_error(EIO, "parse status: malformed field");
    st.rss_bytes = (rss_anon + rss_shmem + swap) * 1024;
    if (!have_tgid || !have_uid || !have_gid)
        return make_error(EIO, "parse status: missing Tgid, Uid or Gid");
    return st;
}

Result<ProcStat> read_stat(pid_t pid) {
    return read_parsed(pid, "stat", 4096, parse_stat);
}

Result<uint64_t> parse_statm_anon(std::string_view text) {
    // "size resident shared text lib data dt\n", in pages.
    while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    auto f = fields(text);
    uint64_t res = 0, sh = 0;
    if (f.size() != 7 || !to_num(f[1], res) || !to_num(f[2], sh))
        return make_error(EIO, "parse statm: \"" + std::string(text.substr(0, 100)) + "\"");
    // The two are counters summed one after the other: a task still running
    // can show more shared than resident for an instant; that is no anonymous
    // memory, not an unreadable file.
    return (sh > res ? 0 : res - sh) * uint64_t(sysconf(_SC_PAGESIZE));
}

Result<uint64_t> read_anon_bytes(pid_t pid) {
    return read_parsed(pid, "statm", 4096, parse_statm_anon);
}

bool pid_at_or_below(pid_t pid, pid_t root) {
    // Up the parents' chain to init; bounded against a chain that changes
    // under the walk (a parent that ends: its child is re-parented up).
    for (int depth = 0; pid > 1 && depth < 4096; ++depth) {
        if (pid == root) return true;
        auto st = read_stat(pid);
        if (!st) return false;
        pid = st->ppid;
    }
    return pid == root;
}

Result<ProcStatus> read_status(pid_t pid) {
    return read_parsed(pid, "status", 64 << 10, parse_status);
}

namespace {

// Bit of a VmFlags name in image::kVmFlagNames, or -1. Every name is two
// letters: compared as one 16-bit number (30,000 areas hold ~200,000 flags).
int vm_flag_bit(std::string_view name) {
    static constexpr auto kCodes = [] {
        std::array<uint16_t, std::size(image::kVmFlagNames)> c{};
        for (size_t i = 0; i < c.size(); ++i)
            c[i] = uint16_t(uint8_t(image::kVmFlagNames[i][0]) << 8 |
                            uint8_t(image::kVmFlagNames[i][1]));
        return c;
    }();
    static_assert(std::ranges::all_of(
        image::kVmFlagNames, [](const char* n) { return std::string_view(n).size() == 2; }));
    if (name.size() != 2) return -1;
    uint16_t code = uint16_t(uint8_t(name[0]) << 8 | uint8_t(name[1]));
    for (size_t i = 0; i < kCodes.size(); ++i)
        if (kCodes[i] == code) return int(i);
    return -1;
}

// The next field of `line` from `i` on (runs of spaces and tabs separate
// them), `i` moved past it; empty at the end of the line.
std::string_view next_field(std::string_view line, size_t& i) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    std::string_view f = line.substr(i, j - i);
    i = j;
    return f;
}

}  // namespace

uint64_t vm_flag_mask(std::string_view name) {
    int bit = vm_flag_bit(name);
    return bit < 0 ? 0 : uint64_t(1) << bit;
}

void MapsParser::feed(std::string_view lines) {
    for_each_line(lines, [&](std::string_view line) { parse_line(line); });
}

// One line of maps or smaps. The fields are taken one by one, not split
// into a vector first: tens of thousands of areas make this the
// checkpoint's hot loop (~6 lines per area read, ~20 more skipped).
void MapsParser::parse_line(std::string_view line) {
    ++lineno_;
    if (line.empty() || !err_) return;
    // An smaps detail line starts with its key's capital letter, an area's
    // line with a hex digit: details whose key cannot be one read below
    // (Pss, Private_*, KernelPageSize, ...: ~13 of an area's 25
    // lines) are skipped by their first letter.
    if (line[0] >= 'A' && line[0] <= 'Z' && line[0] != 'V' && line[0] != 'S' && line[0] != 'R' &&
        line[0] != 'A')
        return;
    size_t i = 0;
    std::string_view key = next_field(line, i);
    if (!key.empty() && key.back() == ':') {  // an smaps detail line ("Rss:   4 kB")
        if (out_.empty()) return;
        MapsEntry& e = out_.back();
        uint64_t kb = 0;
        if (key == "VmFlags:") {
            for (auto f = next_field(line, i); !f.empty(); f = next_field(line, i)) {
                if (int bit = vm_flag_bit(f); bit >= 0)
                    e.vm_flags |= 1ull << bit;
                else
                    e.unknown_flags += (e.unknown_flags.empty() ? "" : " ") + std::string(f);
            }
        } else if ((key == "Shared_Clean:" || key == "Shared_Dirty:") &&
                   to_num(next_field(line, i), kb)) {
            e.shared_kb += kb;
        } else if (key == "Rss:" && to_num(next_field(line, i), kb)) {
            e.resident_kb += kb;
            e.counted = true;
        } else if (key == "Swap:" && to_num(next_field(line, i), kb)) {
            e.resident_kb += kb;
            e.swap_kb = kb;
        } else if (key == "Anonymous:" && to_num(next_field(line, i), kb)) {
            e.anon_kb = kb;
        }
        return;
    }
    auto bad = [&] {
        err_ = make_error(EINVAL, "parse maps line " + std::to_string(lineno_) + ": \"" +
                                      std::string(line) + "\"");
    };
    // "start-end perms offset major:minor inode [path]"
    std::string_view range = key, perms = next_field(line, i), off = next_field(line, i),
                     dev = next_field(line, i), ino = next_field(line, i);
    MapsEntry e;
    size_t dash = range.find('-');
    if (ino.empty() || dash == std::string_view::npos ||
        !to_num(range.substr(0, dash), e.start, 16) || !to_num(range.substr(dash + 1), e.end, 16) ||
        e.start >= e.end || perms.size() != 4)
        return bad();
    std::memcpy(e.perms, perms.data(), 4);
    size_t colon = dev.find(':');
    if (!to_num(off, e.pgoff, 16) || colon == std::string_view::npos ||
        !to_num(dev.substr(0, colon), e.dev_major, 16) ||
        !to_num(dev.substr(colon + 1), e.dev_minor, 16) || !to_num(ino, e.ino))
        return bad();
    e.pgoff /= image::kPageSize;
    // The path is the rest of the line after the inode, spaces included.
    std::string_view rest = line.substr(i);
    size_t path = rest.find_first_not_of(" \t");
    if (path != std::string_view::npos) e.path = std::string(rest.substr(path));
    out_.push_back(std::move(e));
}

Result<std::vector<MapsEntry>> MapsParser::finish() && {
    if (!err_) return std::unexpected(err_.error());
    return std::move(out_);
}

Result<std::vector<MapsEntry>> parse_maps(std::string_view text) {
    MapsParser p;
    p.feed(text);
    return std::move(p).finish();
}

namespace {

constexpr size_t kMapsPiece = 256 << 10;  // the bytes one hand-over holds
constexpr size_t kMapsLineMax = 1 << 20;  // longer: not a line of maps
constexpr size_t kMapsPiecesAhead = 4;    // read ahead of the parse at most

// Reads of `fd` into `buf` until it holds `want` bytes or the file ends: a
// seq_file read gives one page of records at most (smaps: ~5 areas each).
// The bytes read, 0 at the end.
Result<size_t> read_piece(int fd, char* buf, size_t want, const std::string& path) {
    size_t got = 0;
    while (got < want) {
        ssize_t n = ::read(fd, buf + got, want - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + path);
        }
        if (n == 0) break;
        got += size_t(n);
    }
    return got;
}

// The whole lines of pieces read in order, fed to a MapsParser; a line cut
// between two pieces is put together first.
class WholeLines {
  public:
    WholeLines(MapsParser& p, const std::string& path) : p_(p), path_(path) {}
    Status add(std::string_view piece) {
        if (!cut_.empty()) {
            size_t nl = piece.find('\n');
            size_t upto = nl == std::string_view::npos ? piece.size() : nl + 1;
            cut_.append(piece.substr(0, upto));
            if (auto ok = check(); !ok) return ok;
            if (nl == std::string_view::npos) return {};
            p_.feed(cut_);
            cut_.clear();
            piece.remove_prefix(upto);
        }
        size_t nl = piece.rfind('\n');
        size_t whole = nl == std::string_view::npos ? 0 : nl + 1;
        p_.feed(piece.substr(0, whole));
        cut_.assign(piece.substr(whole));
        return check();
    }
    void finish() { p_.feed(cut_); }

  private:
    Status check() const {
        if (cut_.size() >= kMapsLineMax)
            return make_error(EINVAL, "read " + path_ + ": a line longer than 1 MiB");
        return {};
    }
    MapsParser& p_;
    const std::string& path_;
    std::string cut_;
};

// The rest of a file read on a thread of its own, a piece at a time, while
// the caller parses the piece before: of a big smaps read (30,000 areas,
// 21 MB) the kernel's formatting and our parse each take about half, and
// while the task is frozen the other CPU has nothing else to do.
class PiecesAhead {
  public:
    PiecesAhead(int fd, const std::string& path, size_t max, size_t total)
        : fd_(fd), path_(path), max_(max), total_(total) {
        for (auto& b : bufs_) b.reset(new char[kMapsPiece]);
        thread_ = std::thread([this] { run(); });
    }
    ~PiecesAhead() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    PiecesAhead(const PiecesAhead&) = delete;
    PiecesAhead& operator=(const PiecesAhead&) = delete;

    // The next piece, empty at the end of the file, or the read's error; the
    // piece returned before is given back (read into again).
    Result<std::string_view> next() {
        std::unique_lock lock(mu_);
        if (lent_) {
            lent_ = false;
            ++parsed_;
            cv_.notify_all();
        }
        cv_.wait(lock, [&] { return read_ > parsed_ || ended_; });
        if (read_ > parsed_) {
            lent_ = true;
            size_t i = parsed_ % kMapsPiecesAhead;
            return std::string_view(bufs_[i].get(), sizes_[i]);
        }
        if (!err_) return std::unexpected(err_.error());
        return std::string_view();
    }

  private:
    void run() {
        note_thread_stack();  // a daemon thread: common/thread_stacks.h
        for (;;) {
            size_t i = 0;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || read_ - parsed_ < kMapsPiecesAhead; });
                if (stop_) return;
                i = read_ % kMapsPiecesAhead;  // neither lent nor waiting to be parsed
            }
            auto n = read_piece(fd_, bufs_[i].get(), kMapsPiece, path_);
            std::lock_guard lock(mu_);
            if (n && *n > 0 && (total_ += *n) > max_)
                n = make_error(
                    EFBIG, "read " + path_ + ": larger than " + std::to_string(max_) + " bytes");
            if (!n || *n == 0) {
                if (!n) err_ = std::unexpected(n.error());
                ended_ = true;
                cv_.notify_all();
                return;
            }
            sizes_[i] = *n;
            ++read_;
            cv_.notify_all();
        }
    }

    int fd_;
    const std::string& path_;
    size_t max_, total_;
    std::array<std::unique_ptr<char[]>, kMapsPiecesAhead> bufs_;
    std::array<size_t, kMapsPiecesAhead> sizes_{};
    std::mutex mu_;
    std::condition_variable cv_;
    size_t read_ = 0, parsed_ = 0;  // pieces read, pieces parsed and given back
    bool lent_ = false;             // the piece at parsed_ is the caller's
    bool ended_ = false, stop_ = false;
    Status err_;
    std::thread thread_;  // last: started once the rest is made
};

}  // namespace

Result<std::vector<MapsEntry>> read_maps(const std::string& path, size_t max) {
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::unexpected(fd.error());
    // Read and parsed a piece at a time (never the whole text at once: smaps
    // of 30,000 areas is 21 MB, which a string of it all would fault in and
    // copy as it grows). The first piece is read here; a file longer than
    // that (smaps of more than ~350 areas) is read on by a thread of its own
    // while this one parses (PiecesAhead).
    MapsParser p;
    WholeLines lines(p, path);
    std::unique_ptr<char[]> first(new char[kMapsPiece]);
    auto n = read_piece(fd->get(), first.get(), kMapsPiece, path);
    if (!n) return std::unexpected(n.error());
    auto too_big = [&] {
        return make_error(EFBIG,
                          "read " + path + ": larger than " + std::to_string(max) + " bytes");
    };
    if (*n > max) return too_big();
    std::optional<PiecesAhead> ahead;
    if (*n == kMapsPiece) {  // perhaps more
        try {
            ahead.emplace(fd->get(), path, max, *n);
        } catch (const std::system_error&) {
            // No thread (the caller at its RLIMIT_NPROC, say): the same reads,
            // on this thread, one piece after the other.
        }
    }
    if (auto ok = lines.add(std::string_view(first.get(), *n)); !ok)
        return std::unexpected(ok.error());
    for (size_t total = *n; *n == kMapsPiece;) {
        std::string_view piece;
        if (ahead) {
            auto next = ahead->next();
            if (!next) return std::unexpected(next.error());
            piece = *next;
        } else {
            auto more = read_piece(fd->get(), first.get(), kMapsPiece, path);
            if (!more) return std::unexpected(more.error());
            if ((total += *more) > max) return too_big();
            piece = std::string_view(first.get(), *more);
        }
        if (piece.empty()) break;
        if (auto ok = lines.add(piece); !ok) return std::unexpected(ok.error());
    }
    lines.finish();
    auto m = std::move(p).finish();
    if (!m) return std::unexpected(m.error().context(path));
    return m;
}

Result<FdInfo> parse_fdinfo(std::string_view text) {
    FdInfo info;
    bool have_pos = false, have_flags = false, bad = false;
    for_each_line(text, [&](std::string_view line) {
        auto f = fields(line);
        if (f.size() < 2) return;
        if (f[0] == "pos:") {
            have_pos = true;
            bad |= !to_num(f[1], info.pos);
        } else if (f[0] == "flags:") {
            have_flags = true;
            bad |= !to_num(f[1], info.flags, 8);
        }
    });
    if (bad) return make_error(EINVAL, "parse fdinfo: bad pos or flags");
    if (!have_pos || !have_flags) return make_error(EINVAL, "parse fdinfo: no pos or flags");
    return info;
}

std::string_view tcp_state_name(unsigned state) {
    static constexpr std::string_view kNames[] = {
        "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
        "CLOSE",   "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
    return state < std::size(kNames) ? kNames[state] : kNames[0];
}

std::vector<SocketInfo> parse_net_inet(std::string_view text, std::string_view family, bool tcp) {
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
    std::vector<SocketInfo> out;
    for_each_row(text, [&](const std::vector<std::string_view>& f) {
        unsigned st = 0;
        SocketInfo si;
        if (f.size() < 10 || !to_num(f[3], st, 16) || !to_num(f[9], si.inode)) return;
        si.description = std::string(family) + " socket";
        if (tcp) {
            si.description += " in state ";
            si.description += tcp_state_name(st);
        }
        out.push_back(std::move(si));
    });
    return out;
}

std::vector<SocketInfo> parse_net_unix(std::string_view text) {
    // "Num RefCount Protocol Flags Type St Inode Path"
    std::vector<SocketInfo> out;
    for_each_row(text, [&](const std::vector<std::string_view>& f) {
        unsigned type = 0, st = 0;
        SocketInfo si;
        if (f.size() < 7 || !to_num(f[4], type, 16) || !to_num(f[5], st, 16) ||
            !to_num(f[6], si.inode))
            return;
        std::string_view tname = type == 1   ? "stream"
                                 : type == 2 ? "datagram"
                                 : type == 5 ? "seqpacket"
                                             : "raw";
        std::string_view sname = st == 1   ? "unconnected"
                                 : st == 2 ? "connecting"
                                 : st == 3 ? "connected"
                                 : st == 4 ? "disconnecting"
                                           : "unknown";
        si.description = "unix " + std::string(tname) + " socket (" + std::string(sname) + ")";
        if (f.size() >= 8) si.description += " at " + std::string(f[7]);
        out.push_back(std::move(si));
    });
    return out;
}

std::vector<SocketInfo> parse_net_simple(std::string_view text, std::string_view family,
                                         size_t inode_column) {
    std::vector<SocketInfo> out;
    for_each_row(text, [&](const std::vector<std::string_view>& f) {
        SocketInfo si;
        if (f.size() <= inode_column || !to_num(f[inode_column], si.inode)) return;
        si.description = std::string(family) + " socket";
        out.push_back(std::move(si));
    });
    return out;
}

}  // namespace crfs
