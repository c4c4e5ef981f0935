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

}  // namespace

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
