// A removed cwd held by several members of a tree (cwdtree): a shell left in
// a removed directory and the child that inherited it, two CLONE_FS sharers,
// a parent whose cwd it is and a child that opened it ("." before the rmdir,
// or fchdir to an fd of it). Restored as each member's own, they would be
// several directories; so it is made ONCE, by the daemon in the restore of the
// first member holding it in image order (as its cwd: state/fs.cc, or as its
// fd: kind 39, state/dir_deleted.cc), and every later member reaches that
// directory:
//
//   a later member's cwd   record 132 deleted-cwd-from {member, fd}: the
//                          daemon dups the first holder's directory (its cwd's,
//                          or its fd's) above the member's fds; stage 1
//                          fchdirs to it, as to its own (step 277)
//   a later member's fd    of a first holder's cwd (that member holds no fd of
//                          it): fd kind 43 tree-cwd-dir {rdev: member}, a
//                          description of its own, opened by the daemon as the
//                          writer through /proc/self/fd of that directory with
//                          its flags, checked to be that inode, dup'd in
//                          (FdAction::prepared); its dups stay dups, a later
//                          description of its own is kind 40 naming it
//   a later member's fd    of a first holder's fd: the tree's own (share-fd
//                          end 4, docs/trees.md), unchanged
//
// The daemon holds every member's plan at once (state/tree_restore.h: each
// member's restore_image is nested in the previous one's): the first
// holder's directory is alive in the daemon when a later member is planned,
// so nothing is handed over in stage 1 and nothing waits. The dup opens
// nothing; kind 43's open is the daemon's as the writer, as kind 39's own.
//
// A kind 43 description at an offset (read before the rmdir: a getdents
// cookie, which ext4 takes no more once the directory is removed) is opened
// and seeked by the FIRST holder's plan with its directory, before the rmdir
// (make_removed_dir's `later`, as a deltwice description of one process):
// that plan decodes the later members' records (decode_tree_member: the
// spool's records, not the pages; each member once per restore, kept in it:
// later_member) to find them, and keeps them in its member (early_descs); the
// later member's plan takes its own, checked (that directory's inode, its
// flags and offset). fdshare: so is a later description of its own of a kind
// 43 (kind 40 naming it) at an offset.
//
// share39: the same for a later member's share-fd end 4 description at an
// offset (docs/trees.md) of a removed directory: one given from the first
// holder's kind 39 fd is opened by that fd's plan (state/dir_deleted.cc),
// one given from a later member's kind 43 fd by the cwd's holder's plan here
// (later_at_offset); the taker's tree_share_plan takes it (early_shared_desc)
// instead of a reopen in the giver's stage 1, whose seek the removed
// directory would refuse.
//
// Opened so, by the directory's name, a description at an offset takes
// O_NOFOLLOW too (fdshare: reopen_flags(kind, pos)).
//
// Reasons (detect_deleted_cwd_shared, the checkpoint's too): a later
// member's description of a removed directory an earlier member holds as its
// cwd only, with flags an open through /proc/self/fd cannot give (FASYNC;
// O_NOFOLLOW at offset 0).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "restorer/restore.h"
#include "state/check.h"
#include "state/dir_deleted.h"
#include "state/file_kind.h"
#include "state/fs.h"
#include "state/tree_restore.h"
#include "state/tree_share.h"
#include "state/tree_share_restore.h"

namespace crfs::state {
namespace {

using K = image::FdKind;
constexpr std::string_view kDeleted = " (deleted)";

// The removed directory that is /proc/PID/cwd, or nullopt.
// `target`: the link's text, read already (a view's), or null: read here.
std::optional<struct stat> removed_cwd(pid_t pid, const std::string* target = nullptr) {
    std::string link = strfmt("/proc/{}/cwd", pid);
    char buf[4096];
    std::string_view text;
    if (target) {
        text = *target;
    } else {
        ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
        if (n > 0) text = std::string_view(buf, size_t(n));
    }
    struct stat st {};
    if (text.empty() || !text.ends_with(kDeleted) || text[0] != '/' ||
        ::stat(link.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
        return std::nullopt;
    return st;
}

// The first holder of a removed directory, in image order.
struct Holder {
    dev_t dev;
    ino_t ino;
    size_t member;
    int fd;  // its fd of it (a kind 39 record of its own), or -1: its cwd
};

const Holder* holder_of(const std::vector<Holder>& hs, dev_t dev, ino_t ino) {
    for (const Holder& h : hs)
        if (h.dev == dev && h.ino == ino) return &h;
    return nullptr;
}

bool match(const FdView&) {
    return false;  // the tree's dump makes it (share_removed_cwds)
}

std::optional<std::string> detect(TaskView&, const FdView&) {
    return std::nullopt;
}

Status dump(pid_t, const FdView& f, TaskFd&) {
    return make_error(EINVAL, strfmt("fd {}: kind 43 is made by the tree's dump", f.fd));
}

Status check(const FdEntry& f, const DecodedImage&) {
    const auto& r = f.rec;
    if (!plain_path(f.path) || bad_removed_dir_mode(r.mode) ||
        (r.open_flags & ~reopen_flags(uint32_t(K::kTreeCwdDir), r.pos)) ||
        r.pos > uint64_t(LLONG_MAX) || r.rdev >= kMaxTreeRestore)
        return check::bad(
            strfmt("fd {}: a removed directory of process {}'s cwd, path, mode 0{:o}, open flags "
                   "0{:o} or offset {}",
                   r.fd, r.rdev, r.mode, r.open_flags, r.pos));
    return {};
}

Status plan(const FdEntry&, FilePlanIn&, FdAction& a) {
    a.type = S_IFDIR;  // opened by plan_deleted_cwd, which sees the tree
    a.seek = false;
    return {};
}

std::unexpected<Error> bad(pid_t pid, const std::string& what) {
    return check::bad_image(strfmt("process {}: {}", pid, what));
}

// The daemon's fd of the directory the earlier member `h` made for its cwd
// (`fd` -1) or its fd `fd`, checked against this member's path and mode.
Result<int> given_dir(const TreeRestore& tree, uint32_t me, uint32_t h, int32_t fd,
                      const std::string& path, uint32_t mode) {
    const auto& m = tree.members[me];
    if (h >= me)
        return bad(m.pid,
                   strfmt("removed cwd {} of process index {}, which is not an earlier process "
                          "of the tree",
                          path, h));
    const auto& g = tree.members[h];
    if (!g.img || !g.fds) return make_error(EIO, strfmt("process {}: not planned", g.pid));
    if (fd < 0) {
        if (!g.img->deleted_cwd || g.removed_cwd < 0 || g.img->cwd != path ||
            g.img->deleted_cwd->mode != mode)
            return bad(m.pid, strfmt("removed directory {} of mode 0{:o} is not process {}'s "
                                     "removed cwd",
                                     path, mode, g.pid));
        return g.removed_cwd;
    }
    for (const FdEntry& e : g.img->fds)
        if (e.rec.fd == fd && e.rec.same_as < 0 && e.rec.kind == uint32_t(K::kDeletedDir) &&
            e.path == path && e.rec.mode == mode)
            for (const FdAction& a : g.fds->actions)
                if (a.target == fd && a.prepared >= 0) return a.prepared;
    return bad(m.pid, strfmt("removed cwd {} of mode 0{:o} is not process {}'s fd {}", path, mode,
                             g.pid, fd));
}

int high_dup(int fd, int min_fd, FdPlan& fds) {
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
    if (hi >= 0) fds.copies.emplace_back(hi);
    return hi;
}

// A later member's own description of the directory `dir` (kind 43 at
// offset 0): opened by the daemon as the writer through /proc/self/fd of it.
Result<UniqueFd> reopened(const TreeRestore& tree, const FdEntry& e, int dir) {
    int fd = reopen_self(dir, int(e.rec.open_flags) | O_NOCTTY);
    if (fd < 0)
        return make_error(-fd, strfmt("fd {}: open of process {}'s removed cwd {}", e.rec.fd,
                                      tree.members[e.rec.rdev].pid, e.path));
    return UniqueFd(fd);
}

// cwdoffset, share39: a later member's description at an offset, opened and
// seeked by the plan of `holder` (who made the directory) before its rmdir:
// member `me`'s fd `fd`, of the directory `dir`, with flags and offset `pos`
// (each checked, else ESTALE; none opened: a bad image).
Result<UniqueFd> early_desc(const TreeRestore& tree, uint32_t holder, uint32_t me, int fd,
                            uint32_t flags, uint64_t pos, const std::string& path, int dir) {
    const auto& h = tree.members[holder];
    pid_t pid = tree.members[me].pid;
    for (const auto& d : h.early_descs) {
        if (d.member != me || d.fd != fd) continue;
        struct stat st {
        }, dst{};
        constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
        int fl = fcntl(d.daemon, F_GETFL);
        if (d.daemon < 0 || ::fstat(d.daemon, &st) != 0 || ::fstat(dir, &dst) != 0 ||
            st.st_dev != dst.st_dev || st.st_ino != dst.st_ino || fl < 0 ||
            ((uint32_t(fl) ^ flags) & ~kOLargefile) || ::lseek(d.daemon, 0, SEEK_CUR) != off_t(pos))
            return make_error(ESTALE, strfmt("process {}: fd {}: the description of process {}'s "
                                             "removed directory {} opened with it is not this one",
                                             pid, fd, h.pid, path));
        int dup = fcntl(d.daemon, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) return errno_error("dup of a removed directory's description");
        return UniqueFd(dup);
    }
    return bad(pid, strfmt("fd {}: a description of process {}'s removed directory {} at offset "
                           "{} that its restore did not open",
                           fd, h.pid, path, pos));
}

// The share-fd end 4 record of fd `e`, or nullopt.
std::optional<image::ShareFdRecord> reopen_record(const FdEntry& e) {
    image::ShareFdRecord r;
    if (e.rec.kind != uint32_t(K::kShared) || e.kobj.size() != 1 ||
        e.kobj[0].second.size() != sizeof r)
        return std::nullopt;
    std::memcpy(&r, e.kobj[0].second.data(), sizeof r);
    if (r.end != image::kShareReopen) return std::nullopt;
    return r;
}

const FdEntry* fd_of(const DecodedImage& img, int64_t fd) {
    for (const FdEntry& e : img.fds)
        if (e.rec.fd == fd && e.rec.same_as < 0) return &e;
    return nullptr;
}

// The kind 43 record (checked) whose directory the description `e` is
// opened of: its own, or, for a later description of its own at an offset
// (kind 40, fdshare: opened before the rmdir), its first's; else null.
const FdEntry* kind43_of(const DecodedImage& img, const FdEntry& e) {
    if (e.rec.same_as >= 0) return nullptr;
    if (e.rec.kind == uint32_t(K::kTreeCwdDir)) return &e;
    if (e.rec.kind != uint32_t(K::kReopened) || !e.rec.pos || !S_ISDIR(e.rec.mode)) return nullptr;
    const FdEntry* first = fd_of(img, int64_t(image::reopened_first(e.rec)));
    return first && first->rec.kind == uint32_t(K::kTreeCwdDir) ? first : nullptr;
}

// fdshare: member k's records (the spool's, not the pages), decoded once per
// restore for every earlier member's plan that looks at them.
Result<const DecodedImage*> later_member(TreeRestore& tree, uint32_t k) {
    auto& m = tree.members[k];
    if (!m.records) {
        auto d = decode_tree_member(tree, k);
        if (!d) return std::unexpected(d.error());
        m.records = std::make_shared<const DecodedImage>(std::move(*d));
    }
    return m.records.get();
}

}  // namespace

const FileKind kTreeCwdDirKind = {
    K::kTreeCwdDir, "tree cwd directory", match, detect, dump, check, plan, 0};

void detect_deleted_cwd_shared(std::span<TaskView* const> members, Reasons& out) {
    std::vector<Holder> firsts;  // by cwd (-1) or fd, in image order
    for (size_t i = 0; i < members.size(); ++i) {
        TaskView& m = *members[i];
        auto fds = m.fds();
        auto cwd = m.link("cwd");  // the view's, read once (a failure: as not removed)
        if (auto st = removed_cwd(m.pid(), cwd ? *cwd : nullptr);
            st && !holder_of(firsts, st->st_dev, st->st_ino)) {
            int fd = -1;  // held as an fd too: a later member's fd of it is the tree's (end 4)
            if (fds)
                for (const FdView& f : **fds)
                    if (f.st.st_dev == st->st_dev && f.st.st_ino == st->st_ino) fd = f.fd;
            firsts.push_back({st->st_dev, st->st_ino, i, fd});
        }
        if (!fds) continue;  // its own reasons say why
        for (const FdView& f : **fds) {
            if (!S_ISDIR(f.st.st_mode) || f.st.st_nlink != 0) continue;
            const Holder* h = holder_of(firsts, f.st.st_dev, f.st.st_ino);
            if (!h) {
                firsts.push_back({f.st.st_dev, f.st.st_ino, i, f.fd});
                continue;
            }
            if (h->member == i || h->fd >= 0) continue;  // its own, or the tree share's
            uint32_t flags = f.info.flags & ~uint32_t(O_CLOEXEC);
            // At an offset it is opened by its name before the rmdir (O_NOFOLLOW too).
            if (!(flags & ~reopen_flags(uint32_t(K::kDeletedDir), f.info.pos))) continue;
            out.push_back(strfmt(
                "pid {}: fd {}: {} is pid {}'s cwd, and this open file description of it has "
                "open flags 0{:o}, which a removed directory opened again cannot take; such a "
                "description{}",
                m.pid(), f.fd, f.link, members[h->member]->pid(), flags, kNotYet));
        }
    }
}

Status share_removed_cwds(std::span<const pid_t> pids, std::span<const MemberCwd> members) {
    std::vector<Holder> firsts;
    for (size_t i = 0; i < members.size(); ++i) {
        const MemberCwd& m = members[i];
        std::vector<TaskFd>& fds = *m.fds;
        if (*m.rec) {
            auto st = removed_cwd(pids[i]);
            if (!st) return make_error(ESRCH, strfmt("pid {}: its removed cwd is gone", pids[i]));
            if (const Holder* h = holder_of(firsts, st->st_dev, st->st_ino)) {
                (*m.rec)->fd = -1;  // its fd of it, if any, is no kind 39 of its own
                *m.from = image::DeletedCwdFromRecord{uint32_t(h->member), h->fd};
            } else {
                int fd = -1;
                for (const TaskFd& t : fds)
                    if (t.rec.kind == uint32_t(K::kDeletedDir) && t.rec.same_as < 0 &&
                        t.rec.dev == st->st_dev && t.rec.ino == st->st_ino)
                        fd = t.rec.fd;
                firsts.push_back({st->st_dev, st->st_ino, i, fd});
            }
        }
        for (TaskFd& t : fds) {
            if (t.rec.kind != uint32_t(K::kDeletedDir) || t.rec.same_as >= 0) continue;
            const Holder* h = holder_of(firsts, dev_t(t.rec.dev), ino_t(t.rec.ino));
            if (!h) {
                firsts.push_back({dev_t(t.rec.dev), ino_t(t.rec.ino), i, t.rec.fd});
                continue;
            }
            if (h->member == i || h->fd >= 0) continue;  // its own; end 4: not its kind 39
            for (TaskFd& d : fds)                        // it and its dups (which repeat its kind)
                if (d.rec.fd == t.rec.fd || d.rec.same_as == t.rec.fd) {
                    d.rec.kind = uint32_t(K::kTreeCwdDir);
                    d.rec.rdev = h->member;
                }
        }
    }
    return {};
}

Result<int> plan_deleted_cwd(const DecodedImage& img, FdPlan& fds, TreeRestore* tree,
                             uint32_t index) {
    bool kind43 = false;
    for (const FdEntry& e : img.fds) kind43 |= e.rec.kind == uint32_t(K::kTreeCwdDir);
    if (!tree && (img.deleted_cwd_from || kind43))
        return check::bad_image("a removed cwd of another process in an image of one process");
    for (const FdEntry& e : img.fds) {
        const FdEntry* of = kind43_of(img, e);  // the kind 43 it is a description of
        if (!of) continue;
        auto dir = given_dir(*tree, index, uint32_t(of->rec.rdev), -1, of->path, of->rec.mode);
        if (!dir) return std::unexpected(dir.error());
        auto fd = e.rec.pos ? early_desc(*tree, uint32_t(of->rec.rdev), index, e.rec.fd,
                                         e.rec.open_flags, e.rec.pos, of->path, *dir)
                            : reopened(*tree, e, *dir);
        if (!fd) return std::unexpected(fd.error());
        FdAction* a = nullptr;
        for (FdAction& x : fds.actions)
            if (x.target == e.rec.fd) a = &x;
        if (!a) return make_error(EINVAL, strfmt("fd {}: not planned", e.rec.fd));
        a->prepared = high_dup(fd->get(), fds.min_fd, fds);
        if (a->prepared < 0) return errno_error("dup of a removed cwd's description");
    }
    if (!img.deleted_cwd_from) {
        if (!tree || !img.deleted_cwd || img.deleted_cwd->fd >= 0)
            return plan_deleted_cwd(img, fds);
        // cwdoffset: the later members' descriptions of it at an offset, made with it.
        std::vector<std::pair<int, uint64_t>> later;
        auto keys = later_at_offset(*tree, index, img, -1, later);
        if (!keys) return std::unexpected(keys.error());
        std::vector<int> early;
        auto cwd = plan_deleted_cwd(img, fds, std::move(later), &early);
        if (!cwd) return cwd;
        keep_early(*tree, index, *keys, early);
        return cwd;
    }
    const auto& r = *img.deleted_cwd_from;
    if (img.deleted_cwd->fd != -1)
        return bad(tree->members[index].pid, "a removed cwd both its fd's and another's");
    auto dir = given_dir(*tree, index, r.member, r.fd, img.cwd, img.deleted_cwd->mode);
    if (!dir) return std::unexpected(dir.error());
    int hi = high_dup(*dir, fds.min_fd, fds);
    if (hi < 0) return errno_error("dup of the removed cwd");
    return hi;
}

Result<std::vector<std::pair<uint32_t, int>>> later_at_offset(
    TreeRestore& tree, uint32_t index, const DecodedImage& img, int fd,
    std::vector<std::pair<int, uint64_t>>& later) {
    std::vector<std::pair<uint32_t, int>> keys;
    for (uint32_t k = index + 1; k < tree.members.size(); ++k) {
        auto decoded = later_member(tree, k);
        if (!decoded) return std::unexpected(decoded.error().context("bad image"));
        const DecodedImage* other = *decoded;
        for (const FdEntry& e : other->fds) {
            if (e.rec.same_as >= 0 || !e.rec.pos) continue;
            if (e.rec.kind == uint32_t(K::kTreeCwdDir) || e.rec.kind == uint32_t(K::kReopened)) {
                // cwdoffset: its own of a cwd; fdshare: a later one of its own of that (kind 40)
                const FdEntry* of = kind43_of(*other, e);
                if (fd >= 0 || !of || of->rec.rdev != index) continue;
                auto c = kTreeCwdDirKind.check(*of, *other);
                if (c && of != &e) c = kReopenedKind.check(e, *other);
                if (!c)
                    return std::unexpected(
                        c.error().context(strfmt("process {}", tree.members[k].pid)));
            } else {  // share39: end 4 from the fd `fd`, or from a later kind 43 fd of the cwd
                auto r = reopen_record(e);
                if (!r || r->owner >= k || r->owner < index || (r->owner == index) != (fd >= 0))
                    continue;
                const DecodedImage& giver =
                    r->owner == index ? img : *tree.members[r->owner].records;  // decoded above
                const FdEntry* g = fd_of(giver, r->owner_fd);
                if (!g ||
                    (fd >= 0 ? g->rec.fd != fd || g->rec.kind != uint32_t(K::kDeletedDir)
                             : g->rec.kind != uint32_t(K::kTreeCwdDir) || g->rec.rdev != index))
                    continue;
                if (auto c = check_reopen(giver, tree.members[r->owner].pid, *r, *g, e); !c)
                    return std::unexpected(
                        c.error().context(strfmt("process {}", tree.members[k].pid)));
            }
            later.emplace_back(int(e.rec.open_flags), e.rec.pos);
            keys.emplace_back(k, e.rec.fd);
        }
    }
    return keys;
}

void keep_early(TreeRestore& tree, uint32_t index, std::span<const std::pair<uint32_t, int>> keys,
                std::span<const int> daemon) {
    for (size_t i = 0; i < keys.size() && i < daemon.size(); ++i)
        tree.members[index].early_descs.push_back({keys[i].first, keys[i].second, daemon[i]});
}

Result<int> early_shared_desc(const TreeRestore& tree, uint32_t me, const FdEntry& f,
                              uint32_t giver, const FdEntry& g, FdPlan& fds) {
    const auto& gm = tree.members[giver];
    uint32_t holder = g.rec.kind == uint32_t(K::kTreeCwdDir) ? uint32_t(g.rec.rdev) : giver;
    if (holder > giver || !gm.fds)  // kind 43: its plan checked that holder (given_dir)
        return make_error(EIO, strfmt("process {}: fd {}: not planned", gm.pid, g.rec.fd));
    int dir = -1;
    for (const FdAction& a : gm.fds->actions)
        if (a.target == g.rec.fd) dir = a.prepared;
    if (dir < 0) return make_error(EIO, strfmt("process {}: fd {}: not planned", gm.pid, g.rec.fd));
    auto d = early_desc(tree, holder, me, f.rec.fd, f.rec.open_flags, f.rec.pos, g.path, dir);
    if (!d) return std::unexpected(d.error());
    int hi = high_dup(d->get(), fds.min_fd, fds);
    if (hi < 0) return errno_error("dup of a removed directory's description");
    return hi;
}

}  // namespace crfs::state
