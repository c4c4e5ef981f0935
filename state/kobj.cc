// The dispatcher of the kernel-object kinds (state/kobj.h): one table, walked
// by every caller, so detect, dump and restore always agree on the kind.
#include "state/kobj.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include "checkpoint/files.h"
#include "common/strfmt.h"

namespace crfs::state {
namespace {

constexpr const KobjKind* kKinds[] = {&kOpathKind, &kEventfdKind, &kTimerfdKind,   &kSignalfdKind,
                                      &kEpollKind, &kPidfdKind,   &kDirectoryKind, &kInotifyKind,
                                      &kMemfdKind, &kTtyKind,     &kDevTtyKind,    &kMqueueKind,
                                      &kMqueueSecondKind};

const KobjKind* by_view(const FdView& f) {
    for (const KobjKind* k : kKinds)
        if (k->match(f)) return k;
    return nullptr;
}

const KobjKind* by_kind(uint32_t kind) {
    for (const KobjKind* k : kKinds)
        if (uint32_t(k->kind) == kind) return k;
    return nullptr;
}

}  // namespace

bool kobj_match(const FdView& f) {
    return by_view(f) != nullptr;
}

std::optional<std::string> kobj_detect(TaskView& t, const FdView& f) {
    const KobjKind* k = by_view(f);
    return k ? k->detect(t, f) : std::nullopt;
}

Status kobj_dump(pid_t pid, const FdView& f, TaskFd& t, bool& claimed) {
    const KobjKind* k = by_view(f);
    claimed = k != nullptr;
    if (!k) return {};
    t.rec.kind = uint32_t(k->kind);
    return k->dump(pid, f, t);
}

bool is_kobj(uint32_t fd_kind) {
    return by_kind(fd_kind) != nullptr;
}

bool kobj_is_pathless(uint32_t fd_kind) {
    return is_kobj(fd_kind) && fd_kind != uint32_t(image::FdKind::kOpath) &&
           fd_kind != uint32_t(image::FdKind::kDirectory);
}

Status kobj_check(const FdEntry& f, const DecodedImage& img) {
    const KobjKind* k = by_kind(f.rec.kind);
    if (!k) return kobj_bad(f, strfmt("kind {}", f.rec.kind));
    if (f.rec.same_as >= 0) return {};  // a dup: the lowest fd's records say it all
    return k->check(f, img);
}

Status kobj_plan(const FdEntry& f, KobjPlan& plan) {
    const KobjKind* k = by_kind(f.rec.kind);
    if (!k)
        return make_error(EINVAL,
                          strfmt("fd {}: kind {} is no kernel object", f.rec.fd, f.rec.kind));
    plan.kind = f.rec.kind;
    return k->plan(f, plan);
}

int kobj_make(const KobjPlan& plan, const char* path, KobjFail& fail) {
    for (const KobjKind* k : kKinds)
        if (uint32_t(k->kind) == plan.kind) return k->make(plan, path, fail);
    fail = {0, EINVAL};
    return -1;
}

bool kobj_finish(const KobjPlan& plan, int fd, KobjFail& fail) {
    for (const KobjKind* k : kKinds)
        if (uint32_t(k->kind) == plan.kind) return !k->finish || k->finish(plan, fd, fail);
    return true;
}

// Calls fn(line) for each line of `text` starting with `prefix` until it returns true.
template <class Fn>
void each_line(std::string_view text, std::string_view prefix, Fn fn) {
    size_t at = 0;
    while (at < text.size()) {
        size_t eol = text.find('\n', at);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(at, eol - at);
        at = eol + 1;
        if (line.starts_with(prefix) && fn(line)) return;
    }
}

std::vector<std::string> fdinfo_lines(std::string_view text, std::string_view prefix) {
    std::vector<std::string> out;
    each_line(text, prefix, [&](std::string_view line) {
        out.emplace_back(line);
        return false;
    });
    return out;
}

std::optional<std::string_view> fdinfo_value(std::string_view text, std::string_view key) {
    std::optional<std::string_view> out;
    each_line(text, key, [&](std::string_view line) {
        line.remove_prefix(key.size());
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
            line.remove_prefix(1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
        out = line;
        return true;
    });
    return out;
}

int kobj_open_same(const char* path, int flags, dev_t dev, ino_t ino, KobjFail& fail) {
    int fd = ::open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_OPEN_FD, errno, 0};
        return -1;
    }
    struct stat st {};
    if (fstat(fd, &st) < 0 || st.st_dev != dev || st.st_ino != ino) {
        fail = {CRFS_RA_STEP_FD_TYPE, ESTALE, 0};
        close(fd);
        return -1;
    }
    return fd;
}

std::optional<uint64_t> fdinfo_number(std::string_view text, std::string_view key, int base) {
    auto v = fdinfo_value(text, key);
    if (!v || v->empty()) return std::nullopt;
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n, base);
    if (ec != std::errc() || p != v->data() + v->size()) return std::nullopt;
    return n;
}

std::vector<const std::string*> kobj_records(const FdEntry& f, image::RecordType type) {
    std::vector<const std::string*> out;
    for (const auto& [t, payload] : f.kobj)
        if (t == type) out.push_back(&payload);
    return out;
}

std::string kobj_oct(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0%llo", static_cast<unsigned long long>(v));
    return buf;
}

std::unexpected<Error> kobj_bad(const FdEntry& f, std::string what) {
    return make_error(EINVAL, strfmt("image field out of range: fd {}: {}", f.rec.fd, what));
}

std::optional<std::string> path_still_names(const FdView& f, const char* what) {
    struct stat now {};
    int r = S_ISLNK(f.st.st_mode) ? ::lstat(f.link.c_str(), &now) : ::stat(f.link.c_str(), &now);
    if (f.link.empty() || f.link[0] != '/' || r != 0 || now.st_dev != f.st.st_dev ||
        now.st_ino != f.st.st_ino)
        return std::string(what) + " " + f.link + " is no longer the file at that path; such a " +
               what + std::string(kNotYet);
    return std::nullopt;
}

}  // namespace crfs::state
