#include "fs/slots.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>

#include "common/escape.h"
#include "common/image_mapping.h"
#include "common/io.h"
#include "common/log.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "fs/slot_stream.h"
#include "restorer/image_chain.h"
#include "restorer/restore.h"
#include "state/memfd.h"

namespace crfs::fs {

std::optional<unsigned> find_slot_entry(std::string_view name) {
    for (unsigned i = 0; i < std::size(kSlotEntries); ++i)
        if (kSlotEntries[i].name == name) return i + 1;
    return std::nullopt;
}

Status check_slot_name(std::string_view name, pid_t* pid) {
    auto bad = [&](const char* why) {
        return make_error(EINVAL, "slot name \"" + std::string(name) + "\": " + why);
    };
    if (name.empty() || name.size() > kMaxSlotName) return bad("must be 1 to 64 characters");
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
            return bad("only letters, digits, '.', '_' and '-'");
    if (name == "self" || name == "." || name == "..") return bad("reserved");
    *pid = 0;
    if (name.find_first_not_of("0123456789") == std::string_view::npos) {
        uint64_t n = 0;
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
        if (name[0] == '0' || ec != std::errc() || n > 4194304)
            return bad("a numeric name must be a valid pid");
        *pid = static_cast<pid_t>(n);
    }
    return {};
}

std::string Slot::status_text() const {
    if (!ended.empty()) return ended + "\n";
    if (restored) return "restored " + std::to_string(restored) + "\n";
    // The error may quote the image (paths, names): never echo its bytes raw.
    if (!error.empty()) return "error: " + escape_nonprintable(error) + "\n";
    return "empty\n";
}

void Slot::drop_spool() {
    stream.reset();  // stream: a task still waiting for its pages is killed first
    spool.reset();
    spool_bytes.reset();
    written = 0;
    hash.reset();
    pending = false;
}

Status may_name_pid(const Caller& caller, const LimitConfig& config, std::string_view name) {
    if (caller.uid == 0 && has_cap(caller.tid, kCapSysAdmin)) return {};
    if (config.restore_pid_group) {
        gid_t group = *config.restore_pid_group;
        auto st = read_status(caller.tid);
        if (st && (st->gid[3] == group ||
                   std::find(st->groups.begin(), st->groups.end(), group) != st->groups.end()))
            return {};
    }
    std::string why = "slot " + std::string(name) +
                      ": a numeric name restores into that pid, which needs root or " +
                      (config.restore_pid_group
                           ? "membership of group " + std::to_string(*config.restore_pid_group) +
                                 " (restore_pid_group)"
                           : "a group named with -o restore_pid_group (none is)") +
                      "; uid " + std::to_string(caller.uid) + " may use a name with a letter";
    log_info("%s", why.c_str());
    return make_error(EPERM, why);
}

Status may_use_slot(const Caller& caller, const Slot& slot) {
    if (caller.uid == slot.owner_uid || has_cap(caller.tid, kCapSysAdmin)) return {};
    return make_error(EACCES,
                      "slot " + slot.name + " belongs to uid " + std::to_string(slot.owner_uid));
}

Result<std::shared_ptr<Slot>> SlotTable::create(std::string_view name, const Caller& caller) {
    pid_t pid = 0;
    if (auto ok = check_slot_name(name, &pid); !ok) return std::unexpected(ok.error());
    if (pid) {
        if (auto ok = may_name_pid(caller, limits_.config(), name); !ok)
            return std::unexpected(ok.error());
        // A live pid is taken: by a process, a thread or a zombie alike.
        if (::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0)
            return make_error(EEXIST, "slot " + std::string(name) + ": pid in use");
    }
    auto counted = limits_.take(caller.uid, Resource::kSlots);
    if (!counted) return std::unexpected(counted.error());
    auto slot = std::make_shared<Slot>();
    slot->name = std::string(name);
    slot->want_pid = pid;
    slot->owner_uid = caller.uid;
    slot->owner_gid = caller.gid;
    slot->created = ::time(nullptr);
    slot->counted = std::move(*counted);
    std::lock_guard lock(mu_);
    if (by_name_.count(name)) return make_error(EEXIST, "slot " + std::string(name) + " exists");
    slot->id = next_id_++;
    by_name_.emplace(slot->name, slot);
    by_id_.emplace(slot->id, slot);
    return slot;
}

Status SlotTable::remove(std::string_view name, const Caller& caller) {
    std::shared_ptr<Slot> slot;
    {
        std::lock_guard lock(mu_);
        auto it = by_name_.find(name);
        if (it == by_name_.end()) return make_error(ENOENT, "no slot " + std::string(name));
        if (auto ok = may_use_slot(caller, *it->second); !ok) return ok;
        slot = it->second;
        by_id_.erase(slot->id);
        by_name_.erase(it);
        // Open handles may keep the object; its share of the limits goes now.
        slot->counted.reset();
    }
    std::lock_guard lock(slot->mu);
    slot->removed = true;
    slot->drop_spool();
    return {};
}

std::shared_ptr<Slot> SlotTable::find(std::string_view name) const {
    std::lock_guard lock(mu_);
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<Slot> SlotTable::find(uint64_t id) const {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Slot>> SlotTable::list() const {
    std::lock_guard lock(mu_);
    std::vector<std::shared_ptr<Slot>> out;
    for (auto& [name, slot] : by_name_) out.push_back(slot);
    return out;
}

Status slot_truncate(Slot& slot) {
    std::lock_guard lock(slot.mu);
    if (slot.restored)
        return make_error(EINVAL, "slot " + slot.name + " already holds restored task " +
                                      std::to_string(slot.restored));
    slot.drop_spool();
    slot.refused.reset();
    return {};
}

namespace {

// The restore as `caller` asks it, of the image in the slot's spool.
RestoreRequest writer_request(Limits& limits, const Slot& slot, const Caller& caller) {
    RestoreRequest req;
    req.image_fd = slot.spool->image_fd();
    req.want_pid = slot.want_pid;
    req.writer_uid = caller.uid;
    req.writer_gid = caller.gid;
    // "Root" restores any credentials: uid 0 holding the capabilities needed
    // to set them (docs/decisions.md).
    req.writer_is_root = caller.uid == 0 && has_cap(caller.tid, kCapSetuid) &&
                         has_cap(caller.tid, kCapSetgid) && has_cap(caller.tid, kCapSysAdmin);
    req.writer_pid = caller.tid;
    req.tcp_close = slot.tcp_close;
    // The kernel reserves choosing pids to CAP_CHECKPOINT_RESTORE: re-checked
    // for this writer (root or restore_pid_group), not only at mkdir.
    req.may_choose_pid = slot.want_pid > 0 && may_name_pid(caller, limits.config(), slot.name);
    return req;
}

// stream: a restore that starts at the image's first pages record, for a
// writer crfsd can see (fs/slot_stream.h). CRFS_RESTORE_NO_STREAM=1 in
// crfsd's environment: spooled as before (benches: the "before").
void offer_stream(Limits& limits, Slot& slot, const Caller& writer) {
    static const bool off = getenv("CRFS_RESTORE_NO_STREAM") != nullptr;
    if (off || writer.tid <= 0 || !slot.spool->split()) return;
    auto running = limits.take(writer.uid, Resource::kRestores);
    if (!running) return;  // the close says so
    slot.stream =
        std::make_unique<SlotStream>(writer_request(limits, slot, writer), std::move(*running));
    slot.spool->divert(slot.stream.get());
}

// Appends to the spool, made at the first write.
Status spool_append(Limits& limits, Slot& slot, const Caller& writer, const char* buf, size_t len) {
    if (!slot.spool) {
        auto bytes = limits.take(slot.owner_uid, Resource::kSpoolBytes, 0);
        if (!bytes) return std::unexpected(bytes.error());
        // CRFS_RESTORE_PLAIN_SPOOL=1 in crfsd's environment: the spool of
        // before, page data in place (benches: the "before" of the same build).
        static const bool plain = getenv("CRFS_RESTORE_PLAIN_SPOOL") != nullptr;
        auto spool = ImageSpool::create(slot.name, !plain);
        if (!spool) return std::unexpected(spool.error());
        slot.spool.emplace(std::move(*spool));
        slot.spool_bytes = std::move(*bytes);
        offer_stream(limits, slot, writer);
    }
    if (auto ok = slot.spool_bytes.grow(len); !ok)
        return std::unexpected(ok.error().context("slot " + slot.name));
    if (auto ok = slot.spool->append(buf, len); !ok)
        return std::unexpected(ok.error().context("slot " + slot.name));
    slot.hash.update(buf, len);
    slot.written += len;
    return {};
}

}  // namespace

Result<size_t> slot_write(Limits& limits, Slot& slot, const Caller& writer, const char* buf,
                          size_t len, off_t off, const std::function<void()>& answer) {
    std::lock_guard lock(slot.mu);
    if (slot.removed) return make_error(ENOENT, "slot " + slot.name + " was removed");
    if (slot.restored)
        return make_error(EINVAL, "slot " + slot.name + " already holds restored task " +
                                      std::to_string(slot.restored));
    // After a refused write the image cannot be whole: the rest of it gets
    // the same error, until a new image starts at offset 0.
    if (slot.refused && off != 0) return std::unexpected(*slot.refused);
    slot.refused.reset();
    if (off < 0 || static_cast<uint64_t>(off) != slot.written)
        return make_error(EINVAL, "slot " + slot.name + ": write at offset " + std::to_string(off) +
                                      ", expected " + std::to_string(slot.written) +
                                      " (images are written sequentially)");
    static const bool late = getenv("CRFS_SLOT_ANSWER_LATE") != nullptr;
    if (answer && !late && slot.spool && slot.spool->diverted()) answer();
    Status ok;
    try {
        ok = spool_append(limits, slot, writer, buf, len);
    } catch (const std::exception& e) {  // bad_alloc: the image cannot be whole
        ok = make_error(ENOMEM, "slot " + slot.name + ": " + e.what());
    }
    if (!ok) {
        slot.drop_spool();
        slot.refused = ok.error();
        slot.error = ok.error().what;
        return std::unexpected(ok.error());
    }
    slot.pending = true;
    slot.error.clear();
    return len;
}

namespace {

// stream: the whole image, decoded hashed as written (its page data was
// copied into the task and not kept: only the records' fixed parts are
// read), verifies, or the task is killed (fs/slot_stream.h).
Result<pid_t> finish_stream(Slot& slot) {
    auto verify = [&]() -> Status {
        auto hash = slot.hash.result();
        auto& spool = *slot.spool;
        ImageMapping mapped(spool.image_fd(), size_t(spool.size()), false);
        if (!mapped.data()) return errno_error("restore: mapping the image");
        auto decode = [&](DecodeOptions o) {
            ImageSpool::Source src(spool, mapped.data(), mapped.size());
            return decode_image(src, o);
        };
        auto img = hash ? decode({.hashed = &*hash})
                        : Result<DecodedImage>(std::unexpected(Error{EBADMSG, "no trailer"}));
        if (!img) {
            // What the spooled restore's full decode would name first: the
            // framing and the records (page data unread), then the checksum.
            auto framing = decode({.checksum_verified = true});
            return std::unexpected((framing ? img.error() : framing.error()).context("bad image"));
        }
        // streamtree: a tree's other live processes, each decoded from the
        // root's walk with its page section, as a spooled restore does.
        std::vector<std::pair<uint32_t, DecodedImage>> members;
        for (uint32_t i = 1; i < img->processes.size(); ++i) {
            if (img->processes[i].flags & image::kProcessZombie) continue;
            auto m = decode({.process = i, .checksum_verified = true, .tree = &*img});
            if (!m) return std::unexpected(m.error().context("bad image"));
            members.emplace_back(i, std::move(*m));
        }
        members.emplace(members.begin(), 0, std::move(*img));
        // The validation's checks of the page runs (restore.cc validate_image
        // ran on the records before them), then what the stream refused.
        for (const auto& [i, m] : members)
            if (auto c = state::check_memfds(m); !c) return c;
        if (slot.stream->refusal()) return std::unexpected(*slot.stream->refusal());
        // The code before a restart_syscall's rip was read from its file; a
        // run holding it whole would have been read instead (state/regs.h).
        auto holds = [](const DecodedImage& m, uint64_t at) {
            return std::any_of(m.pages.begin(), m.pages.end(), [&](const auto& p) {
                return at >= p.vaddr && at + 7 <= p.vaddr + uint64_t(p.nr_pages) * 4096;
            });
        };
        for (const auto& [process, at] : slot.stream->restart_code())
            for (const auto& [i, m] : members)
                if (i == process && holds(m, at))
                    return make_error(ENOTSUP,
                                      strfmt("restore: a thread sleeps in a system call whose "
                                             "code at {:x} is in the image's pages; a streamed "
                                             "restore reads it from the file (write the image "
                                             "with CRFS_RESTORE_NO_STREAM=1 in crfsd's "
                                             "environment)",
                                             at));
        return {};
    };
    return slot.stream->finish(verify());
}

// The slot's record of a restore's outcome (`how`: words after the pid).
Result<pid_t> restore_outcome(Slot& slot, Result<pid_t> pid, const char* how) {
    if (!pid) {
        slot.error = pid.error().what;
        log_info("slot %s: restore failed: %s", slot.name.c_str(), slot.error.c_str());
        return std::unexpected(pid.error());
    }
    slot.restored = *pid;
    // Its start time, while the pid is still its own: a restored task is
    // reaped only in the reaper's sweep, once this slot was told of its end
    // (slot_task_ended, which waits for slot.mu); one that ended before its
    // adoption is held a zombie until then (restore.h).
    auto stat = read_stat(*pid);
    slot.restored_start = stat ? stat->starttime : 0;
    log_info("slot %s: restored pid %d%s", slot.name.c_str(), *pid, how);
    return *pid;
}

}  // namespace

Result<pid_t> slot_restore(Limits& limits, Slot& slot, const Caller& caller, bool wrote) {
    std::lock_guard lock(slot.mu);
    if (slot.restored || slot.removed) return 0;
    if (slot.refused) return std::unexpected(*slot.refused);  // close says why, too
    if (!slot.pending) {
        // A later close of a handle whose bytes were restored (or refused) already.
        if (wrote) return 0;
        std::string why = "slot " + slot.name + ": image closed with nothing written";
        if (slot.error.empty()) slot.error = why;
        log_debug("%s", why.c_str());
        return make_error(ENODATA, why);
    }
    // Whatever happens now, the bytes were used: the next image starts afresh.
    struct DropSpool {
        Slot& s;
        ~DropSpool() { s.drop_spool(); }
    } drop{slot};
    // The new task takes the writer's limits, cgroups and terminal from
    // /proc/<writer>: a writer whose pid crfsd cannot see (a pid namespace
    // that is not below crfsd's: FUSE reports pid 0) would get crfsd's own.
    if (caller.tid <= 0) {
        slot.error = "slot " + slot.name +
                     ": the writer's process is not visible to crfsd (FUSE gave no pid: a pid "
                     "namespace crfsd cannot see); write the image from one it can";
        log_info("%s", slot.error.c_str());
        return make_error(EPERM, slot.error);
    }
    if (slot.stream && slot.spool->diverted())  // stream: the task waits for the go
        return restore_outcome(slot, finish_stream(slot), " (streamed)");
    if (slot.stream && slot.stream->failed())  // streamtree: its processes were made and failed
        return restore_outcome(slot, std::unexpected(*slot.stream->failed()), "");
    slot.stream.reset();  // not streamed (fs/slot_stream.h): restored from the spool
    auto running = limits.take(caller.uid, Resource::kRestores);
    if (!running) {
        slot.error = running.error().what;
        log_info("slot %s: restore failed: %s", slot.name.c_str(), slot.error.c_str());
        return std::unexpected(running.error());
    }
    // incr: base and deltas concatenated become one image (restorer/image_chain.h).
    auto composed = compose_chain(slot.spool->image_fd(), slot.spool->split());
    if (!composed) {
        slot.error = composed.error().what;
        log_info("slot %s: restore failed: %s", slot.name.c_str(), slot.error.c_str());
        return std::unexpected(composed.error());
    }
    RestoreRequest req = writer_request(limits, slot, caller);
    if (*composed) req.image_fd = composed->get();
    if (!*composed) req.spool = &*slot.spool;  // page data page-aligned
    req.image_hash = slot.hash.result();
    return restore_outcome(slot, restore_image(req), "");
}

void slot_task_ended(Slot& slot, pid_t pid, int code, int status) {
    std::lock_guard lock(slot.mu);
    if (slot.restored != pid) return;
    // The reaper tells only an end waitid saw (si_pid set): CLD_EXITED, or
    // CLD_KILLED / CLD_DUMPED with the signal.
    if (code == CLD_EXITED) {
        slot.ended = "exited " + std::to_string(status);
    } else {
        const char* name = ::sigabbrev_np(status);
        slot.ended = std::string("killed by ") +
                     (name ? "SIG" + std::string(name) : "signal " + std::to_string(status));
    }
    log_info("slot %s: restored pid %d %s", slot.name.c_str(), pid, slot.ended.c_str());
}

Status slot_set_tcp(Slot& slot, std::string_view text) {
    if (text.ends_with('\n')) text.remove_suffix(1);
    if (text != "keep" && text != "close")
        return make_error(EINVAL, "slot " + slot.name + ": tcp is \"keep\" or \"close\"");
    std::lock_guard lock(slot.mu);
    slot.tcp_close = text == "close";
    return {};
}

}  // namespace crfs::fs
