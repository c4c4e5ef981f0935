#include "checkpoint/task_attrs.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "common/io.h"
#include "common/strfmt.h"

namespace crfs {

std::string proc_path(pid_t pid, std::string_view name) {
    return strfmt("/proc/{}/{}", pid, name);
}

Result<std::string> read_proc(pid_t pid, std::string_view name, size_t max) {
    auto r = read_file(proc_path(pid, name), max);
    if (!r && r.error().code == ENOENT) return make_error(ESRCH, r.error().what);
    return r;
}

Result<std::string> read_link(const std::string& path) {
    char buf[4096];
    ssize_t n = readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return errno_error("readlink " + path);
    if (size_t(n) == sizeof buf) return make_error(ENAMETOOLONG, "readlink " + path + ": too long");
    return std::string(buf, size_t(n));
}

namespace {

template <class T>
bool parse_num(std::string_view s, T& out, int base = 10) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> split_ws(std::string_view s) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
        size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

}  // namespace

Result<TaskStat> parse_task_stat(std::string_view text) {
    // comm may hold spaces and parentheses: it ends at the last ')'.
    size_t open = text.find('('), close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open)
        return make_error(EINVAL, "parse stat: no (comm)");
    TaskStat s;
    s.comm = std::string(text.substr(open + 1, close - open - 1));
    auto f = split_ws(text.substr(close + 1));
    // f[0] is field 3 (state); field n is f[n - 3].
    if (f.size() < 51 - 2) return make_error(EINVAL, "parse stat: too few fields");
    auto field = [&](int n) { return f[size_t(n - 3)]; };
    s.state = field(3)[0];
    bool ok = parse_num(field(4), s.ppid) && parse_num(field(5), s.pgrp) &&
              parse_num(field(6), s.session) && parse_num(field(19), s.nice) &&
              parse_num(field(20), s.num_threads) && parse_num(field(22), s.starttime) &&
              parse_num(field(26), s.start_code) && parse_num(field(27), s.end_code) &&
              parse_num(field(28), s.start_stack) && parse_num(field(45), s.start_data) &&
              parse_num(field(46), s.end_data) && parse_num(field(47), s.start_brk) &&
              parse_num(field(48), s.arg_start) && parse_num(field(49), s.arg_end) &&
              parse_num(field(50), s.env_start) && parse_num(field(51), s.env_end);
    if (!ok) return make_error(EINVAL, "parse stat: bad number");
    return s;
}

Result<TaskStat> read_task_stat(pid_t pid) {
    auto t = read_proc(pid, "stat");
    if (!t) return std::unexpected(t.error());
    auto s = parse_task_stat(*t);
    if (!s) return std::unexpected(s.error().context(proc_path(pid, "stat")));
    return s;
}

Result<TaskStatus> parse_task_status(std::string_view text) {
    TaskStatus s;
    uint64_t rss_anon = 0, rss_shmem = 0, swap = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon);
        auto v = split_ws(line.substr(colon + 1));
        bool ok = true;
        auto u64 = [&](uint64_t& out, int base = 10) {
            ok = !v.empty() && parse_num(v[0], out, base);
        };
        if (key == "TracerPid") {
            ok = !v.empty() && parse_num(v[0], s.tracer_pid);
        } else if (key == "Uid" || key == "Gid") {
            uint32_t* dst = key == "Uid" ? s.uid : s.gid;
            ok = v.size() == 4;
            for (size_t i = 0; ok && i < 4; ++i) ok = parse_num(v[i], dst[i]);
        } else if (key == "Groups") {
            for (auto g : v) {
                uint32_t x;
                if (!(ok = parse_num(g, x))) break;
                s.groups.push_back(x);
            }
        } else if (key == "CapInh") {
            u64(s.cap_inh, 16);
        } else if (key == "CapPrm") {
            u64(s.cap_prm, 16);
        } else if (key == "CapEff") {
            u64(s.cap_eff, 16);
        } else if (key == "CapBnd") {
            u64(s.cap_bnd, 16);
        } else if (key == "CapAmb") {
            u64(s.cap_amb, 16);
        } else if (key == "NoNewPrivs") {
            ok = !v.empty() && parse_num(v[0], s.no_new_privs);
        } else if (key == "Seccomp") {
            ok = !v.empty() && parse_num(v[0], s.seccomp);
        } else if (key == "Umask") {
            ok = !v.empty() && parse_num(v[0], s.umask, 8);
            s.has_umask = ok;
        } else if (key == "RssAnon") {
            u64(rss_anon);
        } else if (key == "RssShmem") {
            u64(rss_shmem);
        } else if (key == "VmSwap") {
            u64(swap);
        }
        if (!ok) return make_error(EINVAL, "parse status: bad " + std::string(key) + " line");
    }
    s.rss_bytes = (rss_anon + rss_shmem + swap) * 1024;
    return s;
}

Result<TaskStatus> read_task_status(pid_t pid) {
    auto t = read_proc(pid, "status");
    if (!t) return std::unexpected(t.error());
    auto s = parse_task_status(*t);
    if (!s) return std::unexpected(s.error().context(proc_path(pid, "status")));
    return s;
}

Result<int32_t> read_tracer_pid(pid_t pid) {
    auto s = read_task_status(pid);
    if (!s) return std::unexpected(s.error());
    return s->tracer_pid;
}

Result<TaskAttrs> read_task_attrs(pid_t pid) {
    TaskAttrs a;
    auto st = read_task_stat(pid);
    if (!st) return std::unexpected(st.error());
    a.stat = std::move(*st);
    auto status = read_task_status(pid);
    if (!status) return std::unexpected(status.error());
    a.status = std::move(*status);
    if (!a.status.has_umask)
        return make_error(ENOTSUP, "no Umask in /proc/<pid>/status (kernel < 4.7)");

    auto pers = read_proc(pid, "personality");
    if (!pers) return std::unexpected(pers.error());
    if (!parse_num(std::string_view(*pers).substr(0, pers->find('\n')), a.personality, 16))
        return make_error(EINVAL, "parse " + proc_path(pid, "personality"));

    for (auto [name, dst] : {std::pair{"cwd", &a.cwd}, {"root", &a.root}, {"exe", &a.exe}}) {
        auto l = read_link(proc_path(pid, name));
        if (!l)
            return std::unexpected(l.error().code == ENOENT ? Error{ESRCH, l.error().what}
                                                            : l.error());
        *dst = std::move(*l);
    }

    auto auxv = read_proc(pid, "auxv", 4096);
    if (!auxv) return std::unexpected(auxv.error());
    a.auxv.resize(auxv->size() / 8);
    std::memcpy(a.auxv.data(), auxv->data(), a.auxv.size() * 8);
    // Trim after AT_NULL: the kernel pads the saved vector with zero pairs.
    for (size_t i = 0; i + 1 < a.auxv.size(); i += 2)
        if (a.auxv[i] == 0) {
            a.auxv.resize(i + 2);
            break;
        }

    auto limits_text = read_proc(pid, "limits", 8192);
    if (!limits_text) return std::unexpected(limits_text.error());
    auto limits = parse_limits(*limits_text);
    if (!limits) return std::unexpected(limits.error().context(proc_path(pid, "limits")));
    for (int r = 0; r < 16; ++r) {
        a.rlimits.cur[r] = limits->cur[r];
        a.rlimits.max[r] = limits->max[r];
    }
    return a;
}

Result<Limits> parse_limits(std::string_view text) {
    // "Limit  Soft Limit  Hard Limit  Units" then one row per resource, in
    // RLIMIT_* order, formatted "%-25s %-20s %-20s %-10s": the name has spaces,
    // the values sit in fixed columns.
    auto value = [](std::string_view field, uint64_t& out) {
        while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
        while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
        if (field == "unlimited") {
            out = RLIM64_INFINITY;
            return true;
        }
        auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), out);
        return ec == std::errc() && p == field.data() + field.size() && !field.empty();
    };
    Limits l{};
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos || !text.starts_with("Limit"))
        return make_error(EIO, "parse limits: no header");
    text.remove_prefix(nl + 1);
    for (int r = 0; r < 16; ++r) {
        nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (nl == std::string_view::npos || line.size() < 67 ||
            !value(line.substr(26, 20), l.cur[r]) || !value(line.substr(47, 20), l.max[r]))
            return make_error(EIO, strfmt("parse limits: bad row {}", r));
        text.remove_prefix(nl + 1);
    }
    return l;
}

}  // namespace crfs
