#include "common/image_reader.h"

#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include "common/image_inet.h"
#include "common/image_memfd.h"
#include "common/page_set.h"
#include "common/strfmt.h"

namespace crfs {

using image::RecordType;

namespace {

std::unexpected<Error> bad(std::string what) {
    return make_error(EBADMSG, std::move(what));
}

std::string hex_prefix(const void* p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i)
        s += strfmt("{}{:02x}", i ? " " : "", static_cast<const unsigned char*>(p)[i]);
    return s;
}

}  // namespace

Result<size_t> FdSource::read(void* buf, size_t len) {
    char* out = static_cast<char*>(buf);
    size_t done = 0;
    while (done < len) {
        if (pos_ == end_) {
            if (eof_) break;
            ssize_t n;
            do {
                n = ::read(fd_, buf_.data(), buf_.size());
            } while (n < 0 && errno == EINTR);
            if (n < 0) return errno_error("read image");
            if (n == 0) {
                eof_ = true;
                break;
            }
            pos_ = 0;
            end_ = static_cast<size_t>(n);
        }
        size_t k = std::min(len - done, end_ - pos_);
        std::memcpy(out + done, buf_.data() + pos_, k);
        pos_ += k;
        done += k;
    }
    return done;
}

Result<size_t> MemorySource::read(void* buf, size_t len) {
    size_t k = std::min(len, size_ - pos_);
    if (k) std::memcpy(buf, data_ + pos_, k);
    pos_ += k;
    return k;
}

Result<uint64_t> ByteSource::skip(uint64_t len) {
    char buf[64 << 10];
    uint64_t done = 0;
    while (done < len) {
        auto n = read(buf, size_t(std::min<uint64_t>(len - done, sizeof buf)));
        if (!n) return std::unexpected(n.error());
        done += *n;
        if (*n == 0) break;
    }
    return done;
}

Result<uint64_t> MemorySource::skip(uint64_t len) {
    uint64_t k = std::min<uint64_t>(len, size_ - pos_);
    pos_ += size_t(k);
    return k;
}

Status ImageReader::resume_at(uint64_t offset, uint64_t index) {
    if (!header_read_ || offset < offset_) return make_error(EINVAL, "image reader: resume_at");
    auto n = src_.skip(offset - offset_);
    if (!n) return std::unexpected(n.error());
    offset_ += *n;
    if (offset_ != offset) return bad(strfmt("truncated image: no byte {}", offset));
    records_ = index;
    return {};
}

ImageReader::~ImageReader() {
    if (xxh_) XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
}

namespace {

std::string describe(const char* name, uint64_t record) {
    return record == ~uint64_t(0) ? std::string(name) : strfmt("record {} ({})", record, name);
}

}  // namespace

Status ImageReader::read_exact(void* buf, size_t len, Where where, bool hash) {
    auto n = src_.read(buf, len);
    if (!n) return std::unexpected(n.error());
    if (hash && !hashed_ && !verified_) XXH3_64bits_update(static_cast<XXH3_state_t*>(xxh_), buf, *n);
    offset_ += *n;
    if (*n < len)
        return bad(strfmt("truncated image: unexpected end of file in {} at byte {}",
                          describe(where.name, where.record), offset_));
    return {};
}

// Bulk data the caller does not keep: hashed through the scratch buffer, or,
// when the stream was hashed as it was written, passed over unread.
Status ImageReader::pass_bulk(uint64_t len, Where where) {
    if (hashed_ || verified_) {
        auto n = src_.skip(len);
        if (!n) return std::unexpected(n.error());
        offset_ += *n;
        if (*n < len)
            return bad(strfmt("truncated image: unexpected end of file in {} at byte {}",
                              describe(where.name, where.record), offset_));
        return {};
    }
    if (len && scratch_.empty()) scratch_.resize(1 << 20);
    for (uint64_t left = len; left;) {
        size_t n = size_t(std::min<uint64_t>(left, scratch_.size()));
        if (auto r = read_exact(scratch_.data(), n, where, true); !r) return r;
        left -= n;
    }
    return {};
}

Result<image::Header> ImageReader::read_header() {
    xxh_ = XXH3_createState();
    XXH3_64bits_reset(static_cast<XXH3_state_t*>(xxh_));
    image::Header h{};
    // Magic first, alone, so that a short non-image file says "bad magic", not "truncated".
    auto n = src_.read(h.magic, sizeof h.magic);
    if (!n) return std::unexpected(n.error());
    if (!hashed_) XXH3_64bits_update(static_cast<XXH3_state_t*>(xxh_), h.magic, *n);
    offset_ += *n;
    if (*n < sizeof h.magic || std::memcmp(h.magic, image::kMagic, sizeof h.magic) != 0)
        return bad(strfmt("bad magic: not a crfs image (starts with {})",
                          *n ? hex_prefix(h.magic, *n) : "nothing, empty file"));
    // version and header_size, then the rest of the header as the writer sized it.
    if (auto r = read_exact(&h.version, 8, {"header"}, true); !r) return std::unexpected(r.error());
    if (h.version < image::kMinReadableVersion || h.version > image::kFormatVersion)
        return make_error(ENOTSUP, strfmt("unsupported format version {} (this crfs reads {}"
                                          "{})",
                                          h.version, image::kMinReadableVersion,
                                          image::kFormatVersion == image::kMinReadableVersion
                                              ? std::string()
                                              : strfmt("..{}", image::kFormatVersion)));
    if (h.header_size < sizeof h || h.header_size > 4096)
        return bad(strfmt("bad header size {} (expected {}..4096)", h.header_size, sizeof h));
    if (auto r = read_exact(reinterpret_cast<char*>(&h) + 16, sizeof h - 16, {"header"}, true); !r)
        return std::unexpected(r.error());
    char skip[4096];
    if (auto r = read_exact(skip, h.header_size - sizeof h, {"header"}, true); !r)
        return std::unexpected(r.error());
    if (h.arch != image::kArchX86_64)
        return make_error(ENOTSUP, strfmt("unsupported architecture {} (this crfs reads "
                                          "x86-64, {})",
                                          h.arch, image::kArchX86_64));
    if (h.page_size != image::kPageSize)
        return make_error(ENOTSUP, strfmt("unsupported page size {} (this crfs reads {})",
                                          h.page_size, image::kPageSize));
    h.kernel_release[sizeof h.kernel_release - 1] = '\0';
    header_read_ = true;
    return h;
}

Result<std::optional<Record>> ImageReader::next() {
    if (!header_read_) return make_error(EINVAL, "image reader: read_header() not called");
    if (done_) return std::optional<Record>();
    image::RecordHeader rh{};
    uint64_t start = offset_;
    auto n = src_.read(&rh, sizeof rh);
    if (!n) return std::unexpected(n.error());
    offset_ += *n;
    if (*n == 0 && prefix_) {  // stream: the records before the pages, all of them
        done_ = true;
        return std::optional<Record>();
    }
    if (*n == 0)
        return bad(
            strfmt("truncated image: no trailer (stream ends after {} records at "
                   "byte {})",
                   records_, start));
    if (*n < sizeof rh)
        return bad(
            strfmt("truncated image: unexpected end of file in record {} header at "
                   "byte {}",
                   records_, offset_));
    const image::RecordTypeInfo* info = image::record_type_info(rh.type);
    if (!info) return bad(strfmt("unknown record type {} at byte {}", rh.type, start));
    if (rh.length > info->max_length)
        return bad(strfmt("record length {} exceeds limit {} for record {} ({}) at byte {}",
                          rh.length, info->max_length, records_, info->name, start));
    if (rh.length < info->min_length)
        return bad(strfmt("record length {} below minimum {} for record {} ({}) at byte {}",
                          rh.length, info->min_length, records_, info->name, start));
    bool trailer = info->type == RecordType::kTrailer;
    if (!trailer && !hashed_) XXH3_64bits_update(static_cast<XXH3_state_t*>(xxh_), &rh, sizeof rh);

    Record rec{info->type, info->name, records_, start, {}, rh.length};
    // The fixed part of a bulk record, when its data is skipped.
    uint64_t keep = rh.length;
    if (skip_bulk_ && info->type == RecordType::kPages) keep = sizeof(image::PagesRecord);
    if (skip_bulk_ && info->type == RecordType::kFdData) keep = sizeof(image::FdDataRecord);
    if (skip_bulk_ && info->type == RecordType::kMemfdData) keep = sizeof(image::MemfdDataRecord);
    rec.payload.resize(keep);
    Where where = trailer ? Where{"trailer"} : Where{info->name, records_};
    if (auto r = read_exact(rec.payload.data(), keep, where, !trailer); !r)
        return std::unexpected(r.error());
    if (auto r = pass_bulk(rh.length - keep, where); !r) return std::unexpected(r.error());
    if (!trailer) {
        ++records_;
        return std::optional<Record>(std::move(rec));
    }

    image::Trailer t;
    std::memcpy(&t, rec.payload.data(), sizeof t);
    if (std::memcmp(t.magic, image::kTrailerMagic, sizeof t.magic) != 0)
        return bad(strfmt("bad trailer magic at byte {}", start));
    if (hashed_ && hashed_->bytes != start)
        return bad(strfmt("the trailer at byte {} is not where the stream was hashed up to ({})",
                          start, hashed_->bytes));
    checksum_ = hashed_ ? hashed_->checksum : XXH3_64bits_digest(static_cast<XXH3_state_t*>(xxh_));
    if (!verified_ && t.checksum != checksum_)
        return bad(strfmt("checksum mismatch: trailer says {:016x}, stream hashes to {:016x}",
                          t.checksum, checksum_));
    if (t.record_count != records_)
        return bad(strfmt("record count mismatch: trailer says {}, stream has {}", t.record_count,
                          records_));
    char extra;
    auto e = src_.read(&extra, 1);
    if (!e) return std::unexpected(e.error());
    if (*e != 0) return bad(strfmt("trailing data after the trailer at byte {}", offset_));
    done_ = true;
    return std::optional<Record>();
}

// --- decode_image ---------------------------------------------------------------

namespace {

template <class T>
T load(const std::string& p, size_t off = 0) {
    T v;
    std::memcpy(&v, p.data() + off, sizeof v);
    return v;
}

// The variable tail after a fixed struct must be exactly `want` bytes.
Status expect_tail(const Record& r, size_t fixed, uint64_t want) {
    if (r.length - fixed != want)
        return bad(
            strfmt("record {} ({}) at byte {}: {} bytes after the fixed part, fields "
                   "say {}",
                   r.index, r.name, r.offset, r.length - fixed, want));
    return {};
}

std::unexpected<Error> inconsistent(const Record& r, std::string what) {
    return bad(strfmt("record {} ({}) at byte {}: {}", r.index, r.name, r.offset, what));
}

// The `n` u32 lengths after a record's fixed part and the `data_len` bytes
// they divide: bounded, adding up, and where the bytes lie.
Status lengths_and_bytes(const Record& r, size_t fixed, uint32_t n, uint64_t data_len,
                         uint32_t max_n, uint64_t max_bytes, const char* unit, bool keep,
                         LengthsAndBytes& out) {
    if (n > max_n || data_len > max_bytes)
        return inconsistent(r, strfmt("{} {} of {} bytes", n, unit, data_len));
    uint64_t lens = uint64_t(n) * 4;
    if (auto t = expect_tail(r, fixed, lens + data_len); !t) return t;
    out.lens.resize(n);
    if (lens) std::memcpy(out.lens.data(), r.payload.data() + fixed, lens);
    uint64_t sum = 0;
    for (uint32_t l : out.lens) sum += l;
    if (sum != data_len)
        return inconsistent(r, strfmt("{} of {} bytes hold {}", unit, sum, data_len));
    out.data_offset = r.offset + sizeof(image::RecordHeader) + fixed + lens;
    if (keep) out.data = r.payload.substr(fixed + lens);
    return {};
}
// Which thread the per-thread records (regs, xstate, sigstate, private
// siginfo) belong to: the main thread until the second thread record, then
// the thread of the last thread record. Each thread has each of the three
// exactly once; the main thread's record, if any, comes before its regs.
class ThreadSections {
  public:
    enum Part : uint8_t { kRegs = 1, kXstate = 2, kSigstate = 4 };
    explicit ThreadSections(DecodedImage& img) : img_(img) {}

    Status start(const image::ThreadRecord& t) {
        if (!img_.main_thread) {
            if (main_parts_) return make_error(EBADMSG, "the main thread's record after its regs");
            img_.main_thread = t;
            return {};
        }
        if (auto s = complete(); !s) return s;
        if (img_.threads.size() + 1 >= image::kMaxThreads)
            return make_error(EBADMSG, strfmt("more than {} threads", image::kMaxThreads));
        img_.threads.push_back(ThreadImage{t, {}, {}, {}, {}, {}, {}});
        cur_parts_ = 0;
        return {};
    }
    Status take(Part p) {
        uint8_t& parts = img_.threads.empty() ? main_parts_ : cur_parts_;
        if (parts & p)
            return make_error(EBADMSG, img_.threads.empty()
                                           ? std::string("duplicate record")
                                           : strfmt("duplicate record for thread {}",
                                                    img_.threads.back().rec.tid));
        parts |= p;
        return {};
    }
    // fid, version 6: the attributes of the thread whose record came last.
    Status attrs(const image::ThreadAttrsRecord& a) {
        const image::ThreadRecord* t = cur() ? &cur()->rec : nullptr;
        if (!cur() && img_.main_thread) t = &*img_.main_thread;
        auto& slot = cur() ? cur()->attrs : img_.main_attrs;
        if (!t || t->tid != a.tid || slot)
            return make_error(EBADMSG, strfmt("thread {}: not after its thread record", a.tid));
        slot = a;
        return {};
    }
    image::RegsRecord& regs() { return cur() ? cur()->regs : img_.regs; }
    std::string& xstate() { return cur() ? cur()->xstate : img_.xstate; }
    image::SigstateRecord& sigstate() { return cur() ? cur()->sigstate : img_.sigstate; }
    std::vector<image::SiginfoRecord>& pending() { return cur() ? cur()->pending : img_.pending; }

    // At the end of the stream: every thread complete, tids distinct.
    Status finish() {
        if (auto s = complete(); !s) return s;
        if (main_parts_ != 7)
            return bad("incomplete image: no regs, xstate or sigstate record for the main thread");
        if (img_.header.version >= 3 && !img_.main_thread)
            return bad("incomplete image: no thread record for the main thread");
        if (img_.main_thread && img_.main_thread->tid != img_.task.pid)
            return bad(strfmt("the main thread's tid {} is not the task's pid {}",
                              img_.main_thread->tid, img_.task.pid));
        std::vector<int32_t> tids{img_.task.pid};
        for (const auto& t : img_.threads) tids.push_back(t.rec.tid);
        std::sort(tids.begin(), tids.end());
        if (auto d = std::adjacent_find(tids.begin(), tids.end()); d != tids.end())
            return bad(strfmt("thread {} twice", *d));
        return {};
    }

  private:
    ThreadImage* cur() { return img_.threads.empty() ? nullptr : &img_.threads.back(); }
    Status complete() const {
        if (!img_.threads.empty() && cur_parts_ != 7)
            return make_error(EBADMSG, strfmt("thread {} has no regs, xstate or sigstate record",
                                              img_.threads.back().rec.tid));
        return {};
    }
    DecodedImage& img_;
    uint8_t main_parts_ = 0, cur_parts_ = 0;
};

}  // namespace

Result<DecodedImage> decode_image(ByteSource& src, DecodeOptions opts) {
    DecodedImage img;
    ImageReader reader(src);
    reader.skip_bulk_data(!opts.keep_data);
    if (opts.hashed) reader.use_stream_hash(*opts.hashed);
    reader.checksum_verified(opts.checksum_verified || opts.prefix);
    reader.prefix_only(opts.prefix);
    auto h = reader.read_header();
    if (!h) return std::unexpected(h.error());
    img.header = *h;
    if (opts.tree) {  // treeperf: only this process's records, from its process record on
        const DecodedImage& t = *opts.tree;
        if (opts.process >= t.process_starts.size() ||
            t.processes.size() != t.process_starts.size())
            return bad(strfmt("no process {} in the tree", opts.process));
        reader.checksum_verified(true);
        if (auto s = reader.resume_at(t.process_starts[opts.process].first,
                                      t.process_starts[opts.process].second);
            !s)
            return std::unexpected(s.error());
        img.processes.assign(t.processes.begin(), t.processes.begin() + opts.process);
        img.chain = t.chain;  // incr: record 0, before the first process
    }

    // Records that must appear exactly once.
    constexpr RecordType kSingletons[] = {
        RecordType::kTask,       RecordType::kCreds,   RecordType::kFs,     RecordType::kMm,
        RecordType::kSigactions, RecordType::kRlimits, RecordType::kItimers};
    // Registers, xstate and sigstate: once per thread (ThreadSections).
    ThreadSections threads(img);
    uint32_t seen[std::size(image::kRecordTypes)] = {};
    // streamtree (version 16): the process whose records these are (its
    // process record's, or its page section's), whether the page sections
    // began, the last section's process, and (a member decoded from the
    // root's walk) whether its own section was reached.
    uint32_t cur = uint32_t(img.processes.size());
    bool in_sections = false, own_section = false;
    int64_t last_section = -1;
    // overlap (version 17): the processes whose section held a stats record,
    // and whether the member-stats records after the last section began.
    std::vector<char> section_stats;
    bool in_member_stats = false;
    const bool sectioned_version = img.header.version >= image::kFirstSectionedVersion;
    // A member decoded from the root's walk: at the end of its records, on to
    // its page section once (true), or done (false).
    auto to_own_section = [&]() -> Result<bool> {
        if (!opts.tree || own_section || opts.process >= opts.tree->section_starts.size())
            return false;
        auto at = opts.tree->section_starts[opts.process];
        if (at.first == 0) return false;
        own_section = true;
        if (auto s = reader.resume_at(at.first, at.second); !s) return std::unexpected(s.error());
        return true;
    };
    uint64_t pending_total = 0;
    size_t vma_hint = 0;  // the VMA of the last pages record
    PageSet given;        // the pages the pages records gave: none twice
    auto seen_slot = [&](RecordType t) -> uint32_t& {
        for (size_t i = 0; i < std::size(image::kRecordTypes); ++i)
            if (image::kRecordTypes[i].type == t) return seen[i];
        __builtin_unreachable();
    };

    for (;;) {
        auto next = reader.next();
        if (!next) return std::unexpected(next.error());
        if (!*next) break;
        Record& r = **next;
        // overlap (version 17): after the last section's pages, the stats of
        // the processes whose sections went out before the tree was thawed.
        if (r.type == RecordType::kMemberStats) {
            auto m = load<image::MemberStatsRecord>(r.payload);
            if (opts.tree) continue;  // the whole walk checked and kept them
            bool sectioned =
                m.process < img.section_starts.size() && img.section_starts[m.process].first != 0;
            if (img.header.version < image::kFirstMemberStatsVersion || !in_sections ||
                m.reserved != 0 || !sectioned ||
                (!img.member_stats.empty() && m.process <= img.member_stats.back().first) ||
                (m.process < section_stats.size() && section_stats[m.process]))
                return inconsistent(r,
                                    "member-stats record out of place, out of order, or of no "
                                    "process with a page section and no stats record");
            in_member_stats = true;
            img.member_stats.emplace_back(m.process, m.stats);
            if (m.process == opts.process) img.stats = m.stats;
            continue;
        }
        if (in_member_stats)
            return inconsistent(r, "only member-stats records follow the first of them");
        // streamtree (version 16): a tree's page sections come after every
        // process's records; each holds one process's pages and stats only.
        if (r.type == RecordType::kMemberPages) {
            auto m = load<image::MemberPagesRecord>(r.payload);
            if (opts.tree && m.process != opts.process) {  // past this member's records or section
                auto on = to_own_section();
                if (!on) return std::unexpected(on.error());
                if (*on) continue;
                break;
            }
            if (!sectioned_version || img.processes.empty() || m.reserved != 0 ||
                m.process >= img.processes.size() ||
                (img.processes[m.process].flags & image::kProcessZombie) ||
                int64_t(m.process) <= last_section)
                return inconsistent(r,
                                    "member-pages record out of place or of no live process "
                                    "after the last section's");
            in_sections = true;
            own_section = own_section || m.process == opts.process;
            last_section = m.process;
            cur = m.process;
            img.section_starts.resize(img.processes.size());
            img.section_starts[m.process] = {r.offset, r.index};
            continue;
        }
        if (in_sections && r.type != RecordType::kPages && r.type != RecordType::kStats)
            return inconsistent(r, "a page section holds only pages and stats records");
        if (sectioned_version && !img.processes.empty() && !in_sections &&
            (r.type == RecordType::kPages || r.type == RecordType::kStats))
            return inconsistent(r, "a tree's pages and stats records are in its page sections");
        if (in_sections && r.type == RecordType::kStats) {  // overlap: no member-stats for it
            section_stats.resize(img.processes.size());
            section_stats[cur] = 1;
        }
        // trees: a process record starts the next process's records; only
        // those of process opts.process are decoded (docs/trees.md).
        if (r.type == RecordType::kProcess) {
            if (opts.tree && img.processes.size() > opts.process) {  // treeperf: the next
                auto on = to_own_section();
                if (!on) return std::unexpected(on.error());
                if (*on) continue;
                break;
            }
            // incr (version 10): a tree's image of a chain has its chain record first.
            uint32_t first = img.chain && img.header.version >= 10 ? 1 : 0;
            if (img.header.version < 4 || (img.processes.empty() && r.index != first) ||
                img.processes.size() >= image::kMaxProcesses)
                return inconsistent(r, "process record out of place");
            img.processes.push_back(load<image::ProcessRecord>(r.payload));
            img.process_starts.emplace_back(r.offset, r.index);
            cur = uint32_t(img.processes.size()) - 1;
            continue;
        }
        if (r.type == RecordType::kZombie) {  // life: every process's (state/tree_restore.cc)
            uint32_t at = uint32_t(img.processes.size()) - 1;
            if (img.header.version < 5 || img.processes.empty() ||
                !(img.processes.back().flags & image::kProcessZombie) ||
                (!img.zombies.empty() && img.zombies.back().first == at))
                return inconsistent(r, "zombie record out of place");
            img.zombies.emplace_back(at, load<image::ZombieRecord>(r.payload));
            continue;
        }
        if (r.type == RecordType::kShareTask) {  // share: every process's (state/tree_share_task.h)
            uint32_t at = uint32_t(img.processes.size()) - 1;
            if (img.header.version < 9 || img.processes.empty() ||
                (img.processes.back().flags & image::kProcessZombie) ||
                (!img.share_tasks.empty() && img.share_tasks.back().first == at))
                return inconsistent(r, "share-task record out of place");
            img.share_tasks.emplace_back(at, load<image::ShareTaskRecord>(r.payload));
            continue;
        }
        if (!img.processes.empty() && cur != opts.process) continue;
        uint32_t& count = seen_slot(r.type);
        if (++count > 1 && std::find(std::begin(kSingletons), std::end(kSingletons), r.type) !=
                               std::end(kSingletons))
            return inconsistent(r, "duplicate record");
        if ((r.type == RecordType::kStats || r.type == RecordType::kSettings) && count > 1)
            return inconsistent(r, "duplicate record");
        const std::string& p = r.payload;
        switch (r.type) {
            case RecordType::kTask:
                img.task = load<image::TaskRecord>(p);
                img.task.comm[sizeof img.task.comm - 1] = '\0';
                break;
            case RecordType::kCreds: {
                img.creds = load<image::CredsRecord>(p);
                if (img.creds.ngroups > 65536) return inconsistent(r, "too many groups");
                if (auto t = expect_tail(r, sizeof img.creds, uint64_t(img.creds.ngroups) * 4); !t)
                    return std::unexpected(t.error());
                img.groups.resize(img.creds.ngroups);
                if (!img.groups.empty())
                    std::memcpy(img.groups.data(), p.data() + sizeof img.creds,
                                img.groups.size() * 4);
                break;
            }
            case RecordType::kFs: {
                img.fs = load<image::FsRecord>(p);
                if (auto t =
                        expect_tail(r, sizeof img.fs, uint64_t(img.fs.cwd_len) + img.fs.root_len);
                    !t)
                    return std::unexpected(t.error());
                img.cwd = p.substr(sizeof img.fs, img.fs.cwd_len);
                img.root = p.substr(sizeof img.fs + img.fs.cwd_len, img.fs.root_len);
                break;
            }
            case RecordType::kMm: {
                img.mm = load<image::MmRecord>(p);
                if (img.mm.auxv_len % 16 != 0) return inconsistent(r, "auxv length not a pair");
                if (auto t =
                        expect_tail(r, sizeof img.mm, uint64_t(img.mm.auxv_len) + img.mm.exe_len);
                    !t)
                    return std::unexpected(t.error());
                img.auxv.resize(img.mm.auxv_len / 8);
                if (!img.auxv.empty())
                    std::memcpy(img.auxv.data(), p.data() + sizeof img.mm, img.mm.auxv_len);
                img.exe = p.substr(sizeof img.mm + img.mm.auxv_len, img.mm.exe_len);
                break;
            }
            case RecordType::kVma: {
                VmaEntry v{load<image::VmaRecord>(p), {}, {}};
                if (auto t = expect_tail(r, sizeof v.rec, v.rec.path_len); !t)
                    return std::unexpected(t.error());
                v.path = p.substr(sizeof v.rec);
                if (v.rec.start >= v.rec.end || v.rec.start % image::kPageSize ||
                    v.rec.end % image::kPageSize)
                    return inconsistent(r, strfmt("bad range {:x}-{:x}", v.rec.start, v.rec.end));
                if (!img.vmas.empty() && v.rec.start < img.vmas.back().rec.end)
                    return inconsistent(r, "VMAs overlap or are out of order");
                bool shm = img.header.version >= 6 &&  // shm: state/tree_shmem_restore.h
                           (v.rec.kind == uint32_t(image::VmaKind::kAnonSharedOwner) ||
                            v.rec.kind == uint32_t(image::VmaKind::kAnonSharedTaken));
                shm = shm || (img.header.version >= 10 &&  // sysv: state/sysv_shm.cc
                              v.rec.kind == uint32_t(image::VmaKind::kSysvShm));
                if (!shm && (v.rec.kind < uint32_t(image::VmaKind::kAnonPrivate) ||
                             v.rec.kind > uint32_t(image::VmaKind::kMemfdPrivate)))
                    return inconsistent(r, strfmt("unknown VMA kind {}", v.rec.kind));
                img.vmas.push_back(std::move(v));
                break;
            }
            case RecordType::kPages: {
                auto pr = load<image::PagesRecord>(p);
                if (pr.nr_pages == 0 || pr.nr_pages > image::kMaxPagesPerRecord)
                    return inconsistent(r, strfmt("bad page count {}", pr.nr_pages));
                if (auto t = expect_tail(r, sizeof pr, uint64_t(pr.nr_pages) * image::kPageSize);
                    !t)
                    return std::unexpected(t.error());
                if (pr.vaddr % image::kPageSize)
                    return inconsistent(r, strfmt("unaligned address {:x}", pr.vaddr));
                uint64_t end = pr.vaddr + uint64_t(pr.nr_pages) * image::kPageSize;
                // VMAs are sorted and disjoint (checked above): the last one
                // starting at or below vaddr is the only candidate. Runs come in
                // address order: it is the last run's or a few after it (a
                // search otherwise, which at 60,000 VMAs of 168 bytes missed
                // the cache on every step: a third of the decode).
                size_t nv = img.vmas.size(), i = std::min(vma_hint, nv), lim = std::min(nv, i + 8);
                while (i < lim && img.vmas[i].rec.start <= pr.vaddr) ++i;
                if ((i < nv && img.vmas[i].rec.start <= pr.vaddr) ||
                    (i > 0 && img.vmas[i - 1].rec.start > pr.vaddr))
                    i = size_t(std::upper_bound(
                                   img.vmas.begin(), img.vmas.end(), pr.vaddr,
                                   [](uint64_t a, const VmaEntry& v) { return a < v.rec.start; }) -
                               img.vmas.begin());
                auto vma = img.vmas.begin() + ptrdiff_t(i);  // the first VMA starting above vaddr
                vma_hint = i ? i - 1 : 0;
                if (vma == img.vmas.begin() || end <= pr.vaddr || end > std::prev(vma)->rec.end)
                    return inconsistent(r,
                                        strfmt("pages {:x}-{:x} outside every VMA", pr.vaddr, end));
                if (!given.add(pr.vaddr, end)) return inconsistent(r, page_twice(pr.vaddr, end));
                PageRun run{
                    pr.vaddr, pr.nr_pages, r.offset + sizeof(image::RecordHeader) + sizeof pr, {}};
                if (opts.keep_data) run.data = p.substr(sizeof pr);
                img.pages.push_back(std::move(run));
                break;
            }
            case RecordType::kThread: {
                if (img.header.version < 3)
                    return inconsistent(
                        r, strfmt("thread record in a version {} image", img.header.version));
                auto t = load<image::ThreadRecord>(p);
                t.comm[sizeof t.comm - 1] = '\0';
                if (auto s = threads.start(t); !s) return inconsistent(r, s.error().what);
                break;
            }
            case RecordType::kRegs:
                if (auto s = threads.take(ThreadSections::kRegs); !s)
                    return inconsistent(r, s.error().what);
                threads.regs() = load<image::RegsRecord>(p);
                break;
            case RecordType::kXstate:
                if (auto s = threads.take(ThreadSections::kXstate); !s)
                    return inconsistent(r, s.error().what);
                threads.xstate() = p;
                break;
            case RecordType::kSigactions:
                img.sigactions = load<image::SigactionsRecord>(p);
                break;
            case RecordType::kSigstate:
                if (auto s = threads.take(ThreadSections::kSigstate); !s)
                    return inconsistent(r, s.error().what);
                threads.sigstate() = load<image::SigstateRecord>(p);
                break;
            case RecordType::kSiginfo: {
                auto si = load<image::SiginfoRecord>(p);
                if (si.queue > image::kSigqueueShared)
                    return inconsistent(r, strfmt("unknown signal queue {}", si.queue));
                if (++pending_total > 1u << 20) return inconsistent(r, "too many signals");
                // A thread's private queue; the process queue is the task's.
                (si.queue == image::kSigqueuePrivate ? threads.pending() : img.pending)
                    .push_back(si);
                break;
            }
            case RecordType::kRlimits:
                img.rlimits = load<image::RlimitsRecord>(p);
                break;
            case RecordType::kItimers:
                img.itimers = load<image::ItimersRecord>(p);
                break;
            case RecordType::kFd: {
                // Version 1's record is the version-2 one without same_as.
                size_t fixed =
                    img.header.version >= 2 ? sizeof(image::FdRecord) : image::kFdRecordV1Size;
                if (p.size() < fixed)
                    return inconsistent(
                        r, strfmt("{} bytes, an fd record has at least {}", p.size(), fixed));
                FdEntry f{};
                f.rec.same_as = -1;
                std::memcpy(&f.rec, p.data(), fixed);
                if (auto t = expect_tail(r, fixed, f.rec.path_len); !t)
                    return std::unexpected(t.error());
                f.path = p.substr(fixed);
                if (f.rec.fd < 0) return inconsistent(r, strfmt("bad fd {}", f.rec.fd));
                auto known = [&img](uint32_t k) {
                    using K = image::FdKind;
                    return (k >= uint32_t(K::kRegular) && k <= uint32_t(K::kInotify)) ||
                           (k >= uint32_t(K::kPipe) && k <= uint32_t(K::kFifo)) ||
                           k == uint32_t(K::kTcp) || k == uint32_t(K::kUdp) ||
                           k == uint32_t(K::kMemfd) || k == uint32_t(K::kUnixBound) ||
                           (k == uint32_t(K::kMqueue) && img.header.version >= 8) ||
                           (k == uint32_t(K::kMqueueSecond) && img.header.version >= 11) ||
                           (k == uint32_t(K::kFifoJoin) && img.header.version >= 12) ||
                           (k == uint32_t(K::kDeletedDir) && img.header.version >= 13) ||
                           (k == uint32_t(K::kReopened) && img.header.version >= 14) ||
                           (k == uint32_t(K::kTreeCwdDir) && img.header.version >= 15) ||
                           (k == uint32_t(K::kShared) && img.header.version >= 5) ||
                           ((k == uint32_t(K::kTty) || k == uint32_t(K::kDevTty)) &&
                            img.header.version >= 7);  // tty: state/tty.cc
                };
                if (!known(f.rec.kind))
                    return inconsistent(r, strfmt("unknown fd kind {}", f.rec.kind));
                for (const auto& o : img.fds)
                    if (o.rec.fd == f.rec.fd)
                        return inconsistent(r, strfmt("fd {} twice", f.rec.fd));
                img.fds.push_back(std::move(f));
                break;
            }
            case RecordType::kFdData: {
                auto d = load<image::FdDataRecord>(p);
                auto f = std::find_if(img.fds.begin(), img.fds.end(),
                                      [&](const FdEntry& e) { return e.rec.fd == d.fd; });
                if (f == img.fds.end() || f->rec.kind != uint32_t(image::FdKind::kDeleted) ||
                    f->rec.same_as >= 0)
                    return inconsistent(r, strfmt("data for fd {}, which is no deleted "
                                                  "file or shares another fd's",
                                                  d.fd));
                if (d.offset != f->data_bytes)
                    return inconsistent(r, strfmt("fd {} data at offset {}, expected {}", d.fd,
                                                  d.offset, f->data_bytes));
                f->data_runs.push_back(
                    {r.offset + sizeof(image::RecordHeader) + sizeof d, r.length - sizeof d});
                f->data_bytes += r.length - sizeof d;
                if (opts.keep_data) f->data.append(p, sizeof d);
                break;
            }
            case RecordType::kEventfd:
            case RecordType::kTimerfd:
            case RecordType::kSignalfd:
            case RecordType::kEpollWatch:
            case RecordType::kInotifyWatch:
            case RecordType::kMqueue:        // unix: state/mqueue.cc
            case RecordType::kMqueueSecond:  // mq2: state/mqueue_second.cc
            case RecordType::kPidfdTarget:   // pidfd: state/pidfd.cc checks it
            case RecordType::kShareFd: {     // share: state/tree_share_restore.cc checks it
                // Each starts with the fd it belongs to: an earlier fd record of its own
                // description (its kind checks the rest: state/kobj.h).
                int32_t fd = load<int32_t>(p);
                auto f = std::find_if(img.fds.begin(), img.fds.end(),
                                      [&](const FdEntry& e) { return e.rec.fd == fd; });
                if (f == img.fds.end() || f->rec.same_as >= 0)
                    return inconsistent(r, strfmt("for fd {}, which has no record of its own "
                                                  "before it",
                                                  fd));
                if (f->kobj.size() >= image::kMaxKobjRecordsPerFd)
                    return inconsistent(r, strfmt("more than {} records for fd {}",
                                                  image::kMaxKobjRecordsPerFd, fd));
                f->kobj.emplace_back(r.type, p);
                break;
            }
            case RecordType::kPipe: {
                PipeEntry e;
                e.rec = load<image::PipeRecord>(p);
                if (auto s = lengths_and_bytes(r, sizeof e.rec, e.rec.nsegs, e.rec.data_len,
                                               image::kMaxPipeSegments, image::kMaxPipeBytes,
                                               "buffers", opts.keep_data, e);
                    !s)
                    return std::unexpected(s.error());
                img.pipes.push_back(std::move(e));
                break;
            }
            case RecordType::kUnixSocket: {
                UnixSocketEntry e;
                e.rec = load<image::UnixSocketRecord>(p);
                if (auto s = lengths_and_bytes(r, sizeof e.rec, e.rec.nmsgs, e.rec.data_len,
                                               image::kMaxUnixMessages, image::kMaxUnixQueueBytes,
                                               "messages", opts.keep_data, e);
                    !s)
                    return std::unexpected(s.error());
                img.unix_sockets.push_back(std::move(e));
                break;
            }
            case RecordType::kUnixBound: {  // state/unix_bound.cc checks the fields
                UnixBoundEntry e;
                e.rec = load<image::UnixBoundRecord>(p);
                if (auto s =
                        lengths_and_bytes(r, sizeof e.rec, e.rec.sock.nmsgs, e.rec.sock.data_len,
                                          image::kMaxUnixMessages, image::kMaxUnixQueueBytes,
                                          "messages", opts.keep_data, e);
                    !s)
                    return std::unexpected(s.error());
                img.unix_bound.push_back(std::move(e));
                break;
            }
            case RecordType::kUnixSender:
                img.unix_senders.push_back(load<image::UnixSenderRecord>(p));
                break;
            case RecordType::kUnixMaker:  // sock: state/unix_socket.cc checks it
                if (img.header.version < 10)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                img.unix_makers.push_back(load<image::UnixMakerRecord>(p));
                break;
            case RecordType::kUnixOptions:  // sock: state/unix_socket.cc checks it
                if (img.header.version < 10)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                img.unix_options.push_back(load<image::UnixOptionsRecord>(p));
                break;
            case RecordType::kMemfd:
            case RecordType::kMemfdData:
                if (auto s = decode_memfd(img, r, p); !s) return std::unexpected(s.error());
                break;
            case RecordType::kInetSocket:
            case RecordType::kInetOption:
            case RecordType::kTcpRepair:
            case RecordType::kTcpQueue:
                if (auto s = decode_inet(img, r); !s) return std::unexpected(s.error());
                break;
            case RecordType::kStats:
                img.stats = load<image::StatsRecord>(p);
                break;
            case RecordType::kSettings: {
                img.settings = load<image::SettingsRecord>(p);
                if (auto t = expect_tail(r, sizeof(image::SettingsRecord), img.settings->cpus_len);
                    !t)
                    return std::unexpected(t.error());
                img.cpu_mask = p.substr(sizeof(image::SettingsRecord));
                break;
            }
            case RecordType::kSeccompFilter: {  // fid-exact (state/seccomp.cc)
                SeccompFilterEntry e{load<image::SeccompFilterRecord>(p), {}};
                if (img.header.version < 4)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (e.rec.index != img.seccomp.size())
                    return inconsistent(r, strfmt("filter {} out of order", e.rec.index));
                if (e.rec.len == 0 || e.rec.len > image::kMaxSeccompInsns)
                    return inconsistent(r, strfmt("bad BPF length {}", e.rec.len));
                if (auto t = expect_tail(r, sizeof e.rec, uint64_t(e.rec.len) * 8); !t)
                    return std::unexpected(t.error());
                e.prog = p.substr(sizeof e.rec);
                img.seccomp.push_back(std::move(e));
                break;
            }
            case RecordType::kPosixTimer: {  // fid-exact (state/timers.cc)
                auto t = load<image::PosixTimerRecord>(p);
                if (img.header.version < 4)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (!img.posix_timers.empty() && t.id <= img.posix_timers.back().id)
                    return inconsistent(r, strfmt("timer {} out of order", t.id));
                if (img.posix_timers.size() >= image::kMaxPosixTimers)
                    return inconsistent(r, "too many timers");
                img.posix_timers.push_back(t);
                break;
            }
            case RecordType::kPosixTimerThread: {  // timer (state/timers.cc)
                auto t = load<image::PosixTimerThreadRecord>(p);
                if (img.header.version < 7)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.posix_timers.empty() || img.posix_timers.back().id != t.id ||
                    (!img.posix_timer_threads.empty() && img.posix_timer_threads.back().id == t.id))
                    return inconsistent(r, strfmt("not right after the posix-timer {}", t.id));
                img.posix_timer_threads.push_back(t);
                break;
            }
            case RecordType::kFileLock: {  // fid-exact (state/locks.cc)
                auto l = load<image::FileLockRecord>(p);
                if (img.header.version < 4)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.file_locks.size() >= image::kMaxFileLocks)
                    return inconsistent(r, "too many locks");
                auto f = std::find_if(img.fds.begin(), img.fds.end(),
                                      [&](const FdEntry& e) { return e.rec.fd == l.fd; });
                if (f == img.fds.end() || f->rec.same_as >= 0)
                    return inconsistent(r, strfmt("lock on fd {}, which is no earlier fd of a "
                                                  "description of its own",
                                                  l.fd));
                img.file_locks.push_back(l);
                break;
            }
            case RecordType::kSyscallRestart: {  // fid (state/restart.cc)
                if (img.header.version < 5)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                // The main thread's, or (session 31) the last thread record's.
                auto& restart = img.threads.empty() ? img.restart : img.threads.back().restart;
                if (restart)
                    return inconsistent(
                        r, img.threads.empty()
                               ? std::string("not the main thread's first one")
                               : strfmt("a second one for thread {}", img.threads.back().rec.tid));
                restart = load<image::SyscallRestartRecord>(p);
                break;
            }
            case RecordType::kThreadAttrs:  // fid (state/thread_attrs.cc)
                if (img.header.version < 6)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (auto s = threads.attrs(load<image::ThreadAttrsRecord>(p)); !s)
                    return inconsistent(r, s.error().what);
                break;
            case RecordType::kTty:  // tty (state/tty.cc checks its fields)
                if (img.header.version < 7)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (seen_slot(RecordType::kTty) > 1) return inconsistent(r, "a second one");
                img.tty = load<image::TtyRecord>(p);
                break;
            case RecordType::kSysvShm:  // sysv (state/sysv_shm.cc checks its fields)
                if (img.header.version < 10)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.sysv_shm.size() >= image::kMaxSysvShm) return inconsistent(r, "too many");
                img.sysv_shm.push_back(load<image::SysvShmRecord>(p));
                break;
            case RecordType::kSysvMsg:  // sem (state/sysv_msg.cc checks it)
                if (img.header.version < 11)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.sysv_msg.size() >= image::kMaxSysvMsg) return inconsistent(r, "too many");
                img.sysv_msg.push_back(p);
                break;
            case RecordType::kSysvSem:  // sem (state/sysv_sem.cc checks it)
                if (img.header.version < 11)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.sysv_sem.size() >= image::kMaxSysvSem) return inconsistent(r, "too many");
                img.sysv_sem.push_back(p);
                break;
            case RecordType::kMlockall:  // fid (state/mlockall.cc)
                if (img.header.version < 5)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (seen_slot(RecordType::kMlockall) > 1) return inconsistent(r, "a second one");
                img.mlockall = load<image::MlockallRecord>(p);
                break;
            case RecordType::kDeletedCwd:  // delcwd (state/fs.cc checks its fields)
                if (img.header.version < 14)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (img.deleted_cwd) return inconsistent(r, "a second one");
                img.deleted_cwd = load<image::DeletedCwdRecord>(p);
                break;
            case RecordType::kDeletedCwdFrom:  // cwdtree (state/fs_tree.cc checks it)
                if (img.header.version < 15)
                    return inconsistent(r, strfmt("in a version {} image", img.header.version));
                if (!img.deleted_cwd || img.deleted_cwd_from)
                    return inconsistent(r, "not after one deleted-cwd record");
                img.deleted_cwd_from = load<image::DeletedCwdFromRecord>(p);
                break;
            case RecordType::kFdContent: {
                auto c = load<image::FdContentRecord>(p);
                auto f = std::find_if(img.fds.begin(), img.fds.end(),
                                      [&](const FdEntry& e) { return e.rec.fd == c.fd; });
                if (f == img.fds.end() || f->rec.kind != uint32_t(image::FdKind::kRegular) ||
                    f->rec.same_as >= 0 || f->content)
                    return inconsistent(r, strfmt("content of fd {}, which is no earlier "
                                                  "regular file of its own or has one already",
                                                  c.fd));
                f->content = c;
                break;
            }
            case RecordType::kVmaContent: {
                auto c = load<image::VmaContentRecord>(p);
                // VMAs are sorted with distinct starts: a search, not a scan
                // (a scan per file mapping was the decode's largest cost at 30,000 VMAs).
                auto v = std::lower_bound(
                    img.vmas.begin(), img.vmas.end(), c.start,
                    [](const VmaEntry& e, uint64_t start) { return e.rec.start < start; });
                if (v != img.vmas.end() && v->rec.start != c.start) v = img.vmas.end();
                if (v == img.vmas.end() ||
                    (v->rec.kind != uint32_t(image::VmaKind::kFilePrivate) &&
                     v->rec.kind != uint32_t(image::VmaKind::kFileShared)) ||
                    (v->rec.flags & image::kVmaDeleted) || v->content)
                    return inconsistent(r, strfmt("content of the mapping at {:x}, which is no "
                                                  "earlier mapping of a file or has one already",
                                                  c.start));
                v->content = c;
                break;
            }
            case RecordType::kChain: {  // incr
                auto c = load<image::ChainRecord>(p);
                if (img.header.version < 5 || r.index != 0 || c.id == 0 || c.id == c.base_id)
                    return inconsistent(r, "chain record out of place or naming itself");
                img.chain = c;
                break;
            }
            case RecordType::kKeep: {  // incr: inside one VMA, sorted, disjoint
                auto k = load<image::KeepRecord>(p);
                if (!img.chain || img.chain->base_id == 0)
                    return inconsistent(r, "keep record in an image that is no delta");
                uint64_t end = k.vaddr + k.nr_pages * image::kPageSize;
                auto vma =
                    std::upper_bound(img.vmas.begin(), img.vmas.end(), k.vaddr,
                                     [](uint64_t a, const VmaEntry& v) { return a < v.rec.start; });
                if (k.vaddr % image::kPageSize || k.nr_pages == 0 ||
                    k.nr_pages > (uint64_t(1) << 52) / image::kPageSize || end <= k.vaddr ||
                    vma == img.vmas.begin() || end > std::prev(vma)->rec.end)
                    return inconsistent(
                        r, strfmt("kept pages {:x}+{} outside every VMA", k.vaddr, k.nr_pages));
                if (!img.keeps.empty() &&
                    k.vaddr < img.keeps.back().vaddr + img.keeps.back().nr_pages * image::kPageSize)
                    return inconsistent(r, "keep records overlap or are out of order");
                img.keeps.push_back(k);
                break;
            }
            case RecordType::kProcess:  // taken above
            case RecordType::kMemberPages:
            case RecordType::kMemberStats:
            case RecordType::kZombie:
            case RecordType::kShareTask:
            case RecordType::kTrailer:
                break;  // never returned by next()
        }
    }
    for (RecordType t : kSingletons)
        if (seen_slot(t) == 0)
            for (const auto& info : image::kRecordTypes)
                if (info.type == t) return bad(strfmt("incomplete image: no {} record", info.name));
    if (auto s = check_inet_complete(img); !s) return std::unexpected(s.error());
    if (auto s = threads.finish(); !s) return std::unexpected(s.error());
    for (const auto& f : img.fds)
        if (f.rec.kind == uint32_t(image::FdKind::kDeleted) && f.rec.same_as < 0 &&
            f.data_bytes != f.rec.size)
            return bad(strfmt("incomplete image: deleted file of fd {} has {} of {} bytes",
                              f.rec.fd, f.data_bytes, f.rec.size));
    img.record_count = 0;
    for (uint32_t c : seen) img.record_count += c;
    img.checksum = reader.checksum();
    img.size = reader.offset();
    if (opts.tree) {  // treeperf: what the whole walk gave
        img.processes = opts.tree->processes;
        img.process_starts = opts.tree->process_starts;
        img.section_starts = opts.tree->section_starts;
        img.zombies = opts.tree->zombies;
        img.share_tasks = opts.tree->share_tasks;
        img.member_stats = opts.tree->member_stats;  // overlap
        for (const auto& [process, stats] : img.member_stats)
            if (process == opts.process) img.stats = stats;
        img.checksum = opts.tree->checksum;
        img.size = opts.tree->size;
    }
    return img;
}

}  // namespace crfs
