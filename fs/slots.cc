#include "fs/slots.h"

#include <sys/mman.h>
#include <unistd.h>

#include <charconv>
#include <ctime>

#include "common/io.h"
#include "fs/log.h"
#include "restorer/restore.h"

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
    if (restored) return "restored " + std::to_string(restored) + "\n";
    if (!error.empty()) return "error: " + error + "\n";
    return "empty\n";
}

Status may_use_slot(const Caller& caller, const Slot& slot) {
    if (caller.uid == slot.owner_uid || has_cap(caller.tid, kCapSysAdmin)) return {};
    return make_error(EACCES,
                      "slot " + slot.name + " belongs to uid " + std::to_string(slot.owner_uid));
}

Result<std::shared_ptr<Slot>> SlotTable::create(std::string_view name, const Caller& caller) {
    pid_t pid = 0;
    if (auto ok = check_slot_name(name, &pid); !ok) return std::unexpected(ok.error());
    // A live pid is taken: by a process, a thread or a zombie alike.
    if (pid && ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0)
        return make_error(EEXIST, "slot " + std::string(name) + ": pid in use");
    int fd = ::memfd_create(("crfs-slot-" + std::string(name)).c_str(), MFD_CLOEXEC);
    if (fd < 0) return errno_error("memfd_create");
    auto slot = std::make_shared<Slot>();
    slot->name = std::string(name);
    slot->want_pid = pid;
    slot->owner_uid = caller.uid;
    slot->owner_gid = caller.gid;
    slot->created = ::time(nullptr);
    slot->spool.reset(fd);
    std::lock_guard lock(mu_);
    if (by_name_.count(name)) return make_error(EEXIST, "slot " + std::string(name) + " exists");
    slot->id = next_id_++;
    by_name_.emplace(slot->name, slot);
    by_id_.emplace(slot->id, slot);
    return slot;
}

Status SlotTable::remove(std::string_view name, const Caller& caller) {
    std::lock_guard lock(mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return make_error(ENOENT, "no slot " + std::string(name));
    if (auto ok = may_use_slot(caller, *it->second); !ok) return ok;
    by_id_.erase(it->second->id);
    by_name_.erase(it);
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
    if (::ftruncate(slot.spool.get(), 0) < 0) return errno_error("truncate spool");
    slot.written = 0;
    slot.pending = false;
    return {};
}

Result<size_t> slot_write(Slot& slot, const char* buf, size_t len, off_t off) {
    std::lock_guard lock(slot.mu);
    if (slot.restored)
        return make_error(EINVAL, "slot " + slot.name + " already holds restored task " +
                                      std::to_string(slot.restored));
    if (off < 0 || static_cast<uint64_t>(off) != slot.written)
        return make_error(EINVAL, "slot " + slot.name + ": write at offset " + std::to_string(off) +
                                      ", expected " + std::to_string(slot.written) +
                                      " (images are written sequentially)");
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pwrite(slot.spool.get(), buf + done, len - done,
                             static_cast<off_t>(slot.written + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("spool image of slot " + slot.name);
        done += static_cast<size_t>(n);
    }
    slot.written += len;
    slot.pending = true;
    slot.error.clear();
    return len;
}

Result<pid_t> slot_restore(Slot& slot, const Caller& caller) {
    std::lock_guard lock(slot.mu);
    if (!slot.pending || slot.restored) return 0;
    slot.pending = false;
    RestoreRequest req;
    req.image_fd = slot.spool.get();
    req.want_pid = slot.want_pid;
    req.writer_uid = caller.uid;
    req.writer_gid = caller.gid;
    // "Root" restores any credentials: uid 0 holding the capabilities needed
    // to set them (docs/decisions.md).
    req.writer_is_root = caller.uid == 0 && has_cap(caller.tid, kCapSetuid) &&
                         has_cap(caller.tid, kCapSetgid) && has_cap(caller.tid, kCapSysAdmin);
    auto pid = restore_image(req);
    if (!pid) {
        slot.error = pid.error().what;
        log_info("slot %s: restore failed: %s", slot.name.c_str(), slot.error.c_str());
        return std::unexpected(pid.error());
    }
    slot.restored = *pid;
    // The image is in the task now; give the spool's memory back.
    if (::ftruncate(slot.spool.get(), 0) < 0)
        log_error("slot %s: truncate spool", slot.name.c_str());
    log_info("slot %s: restored pid %d", slot.name.c_str(), *pid);
    return *pid;
}

}  // namespace crfs::fs
