// A small stand-in for std::format, which g++ 12 lacks: "{}" inserts an
// argument, "{:x}" / "{:016x}" insert an integer in hex (zero-padded to a width).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>

namespace crfs {

namespace detail {

inline void fmt_arg(std::string& out, std::string_view spec, std::string_view v) {
    (void)spec;
    out.append(v);
}
inline void fmt_arg(std::string& out, std::string_view spec, const char* v) {
    fmt_arg(out, spec, std::string_view(v));
}
inline void fmt_arg(std::string& out, std::string_view spec, const std::string& v) {
    fmt_arg(out, spec, std::string_view(v));
}
template <class T>
requires std::is_arithmetic_v<T>
void fmt_arg(std::string& out, std::string_view spec, T v) {
    char buf[64];
    if constexpr (std::is_floating_point_v<T>) {
        std::snprintf(buf, sizeof buf, "%g", double(v));
    } else if (!spec.empty() && spec.back() == 'x') {
        int width = 0;
        for (char c : spec.substr(0, spec.size() - 1))
            if (c >= '0' && c <= '9' && width < 32) width = width * 10 + (c - '0');
        width = width > 32 ? 32 : width;
        std::snprintf(buf, sizeof buf, "%0*llx", width, static_cast<unsigned long long>(v));
    } else if (spec == ":o" || spec == "o") {
        std::snprintf(buf, sizeof buf, "%llo", static_cast<unsigned long long>(v));
    } else if constexpr (std::is_signed_v<T>) {
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    } else {
        std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    }
    out.append(buf);
}

inline void fmt_rest(std::string& out, std::string_view f) {
    out.append(f);
}

template <class A, class... Rest>
void fmt_rest(std::string& out, std::string_view f, const A& a, const Rest&... rest) {
    size_t open = f.find('{');
    if (open == std::string_view::npos) {
        out.append(f);
        return;
    }
    size_t close = f.find('}', open);
    out.append(f.substr(0, open));
    std::string_view spec = f.substr(open + 1, close - open - 1);
    if (!spec.empty() && spec[0] == ':') spec.remove_prefix(1);
    fmt_arg(out, spec, a);
    fmt_rest(out, f.substr(close + 1), rest...);
}

}  // namespace detail

template <class... A>
std::string strfmt(std::string_view f, const A&... args) {
    std::string out;
    detail::fmt_rest(out, f, args...);
    return out;
}

}  // namespace crfs
