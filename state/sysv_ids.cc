// The id and creation rule of System V objects (state/sysv_ids.h).
#include "state/sysv_ids.h"

#include <fcntl.h>
#include <sys/shm.h>
#include <unistd.h>

#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/writer.h"
#include "state/check.h"

namespace crfs::state {

SysvMade::~SysvMade() {
    for (const auto& [k, id] : made_) k->remove(id);
}

SysvTree::~SysvTree() {
    for (void* p : pins_) shmdt(p);
}

const SysvTree::Object* SysvTree::find(const SysvKind& k, int id) const {
    for (const auto& o : objects_)
        if (o.kind == &k && o.id == id) return &o;
    return nullptr;
}

namespace {

// Asks the kernel for `id` as the next one: false when the writer may not.
Result<bool> ask_next_id(const SysvKind& k, int id) {
    std::string path = strfmt("/proc/sys/kernel/{}", k.next_id);
    auto fd = open_fd(path, O_WRONLY | O_CLOEXEC);
    if (!fd) {
        if (fd.error().code == EACCES || fd.error().code == EPERM) return false;
        return std::unexpected(fd.error());
    }
    std::string text = std::to_string(id);
    if (::write(fd->get(), text.data(), text.size()) != ssize_t(text.size())) {
        if (errno == EACCES || errno == EPERM) return false;
        return errno_error(strfmt("writing {} to {}", id, path));
    }
    return true;
}

// <kind>_next_id cannot be unset (-1 is out of its range): a creation that
// failed before taking it leaves it to the next one, which is made here and
// removed, so that no other creator on the host gets the id.
void forget_next_id(const SysvKind& k) {
    int id = k.create_private();
    if (id >= 0) k.remove(id);
}

// As the writer: `id` refused when in use, then asked of the kernel; true
// when it was (the writer may choose it).
Result<bool> claim_id(const SysvKind& k, const WriterPlan& writer, int id) {
    bool chosen = false;
    auto s = as_writer(writer, [&]() -> Status {
        if (k.in_use(id))
            return make_error(
                EBUSY, strfmt("{} id {} is in use (the original still exists?)", k.what, id));
        auto c = ask_next_id(k, id);
        if (!c) return std::unexpected(c.error());
        chosen = *c;
        return {};
    });
    if (!s) return std::unexpected(s.error());
    return chosen;
}

}  // namespace

Status sysv_make(const SysvKind& k, const WriterPlan& writer, int id, uint32_t cuid, uint32_t cgid,
                 const std::function<Status(bool chosen)>& make) {
    auto chosen = claim_id(k, writer, id);
    if (!chosen) return std::unexpected(chosen.error());
    // Created as its creator: the writer itself, or for a root writer the
    // image's cuid/cgid (the kernel then judges IPC_SET as theirs).
    WriterPlan creator = writer;
    if (!writer.as_writer && (cuid != 0 || cgid != 0)) {
        creator.as_writer = true;
        creator.uid = cuid;
        creator.gid = cgid;
        creator.groups.clear();
    }
    return as_writer(creator, [&] { return make(*chosen); });
}

Status sysv_created(const SysvKind& k, const std::string& what, int got, int want, bool chosen,
                    SysvMade& made) {
    if (got < 0) {
        int err = errno;
        if (chosen) forget_next_id(k);
        if (err == EEXIST)
            return make_error(EEXIST,
                              strfmt("{}: the key is in use (the original still exists?)", what));
        return sys_error(err, "creating " + what);
    }
    made.add(k, got);
    if (got != want)
        return make_error(EBUSY, strfmt("{}: the kernel gave id {}{}", what, got,
                                        chosen ? std::string(" (another creator raced)")
                                               : strfmt("; only root of the IPC namespace's user "
                                                        "namespace may choose it ({})",
                                                        k.next_id)));
    return {};
}

bool sysv_first_user(pid_t pid, const std::vector<pid_t>& inside,
                     const std::function<bool(pid_t)>& user) {
    for (pid_t p : inside) {
        if (p == pid) return true;
        if (user(p)) return false;
    }
    return true;
}

Status sysv_tree_once(const SysvKind& k, const SysvTree* tree, int id, const char* rec, pid_t pid) {
    const SysvTree::Object* o = tree ? tree->find(k, id) : nullptr;
    if (!o) return {};
    return check::bad_image(
        strfmt("{} {} of process {}: process {} has its record already", rec, id, pid, o->maker));
}

Status sysv_check_unique(const char* rec, const std::vector<std::pair<int32_t, int32_t>>& id_keys) {
    for (size_t i = 0; i < id_keys.size(); ++i)
        for (size_t k = 0; k < i; ++k) {
            auto [id, key] = id_keys[i];
            if (id_keys[k].first == id)
                return check::bad(strfmt("{} {}: a second record", rec, id));
            if (key != 0 && id_keys[k].second == key)
                return check::bad(strfmt("{} {}: key 0x{:x} of {} too", rec, id, uint32_t(key),
                                         id_keys[k].first));
        }
    return {};
}

Status sysv_same_creator(const std::string& what, uint32_t cuid, uint32_t cgid, uint32_t want_cuid,
                         uint32_t want_cgid) {
    if (cuid == want_cuid && cgid == want_cgid) return {};
    return make_error(
        EPERM, strfmt("{}: created by uid {} gid {}; the writer creates it as uid {} gid {}", what,
                      want_cuid, want_cgid, cuid, cgid));
}

}  // namespace crfs::state
