// THE decoder of crfs images (docs/image-format.md), used by `crfs show`,
// `crfs verify`, the fuzzer and the restore side. It reads strictly forward,
// so it works on pipes, and bounds every length and count before using it.
// Every way an image can be wrong has its own message ("truncated image: ...",
// "bad magic ...", "unsupported format version ...", "checksum mismatch ...",
// "unknown record type ...", "record length ... exceeds limit ...").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/image_prehash.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// Forward-only byte source. read() returns fewer than `len` bytes only at end of stream.
class ByteSource {
  public:
    virtual ~ByteSource() = default;
    virtual Result<size_t> read(void* buf, size_t len) = 0;
    // Passes over up to `len` bytes unread; fewer only at end of stream.
    virtual Result<uint64_t> skip(uint64_t len);
};

// Buffered reader of a file descriptor (file, pipe, socket); does not own the fd.
class FdSource : public ByteSource {
  public:
    explicit FdSource(int fd) : fd_(fd), buf_(1 << 20) {}
    Result<size_t> read(void* buf, size_t len) override;

  private:
    int fd_;
    std::vector<char> buf_;
    size_t pos_ = 0, end_ = 0;
    bool eof_ = false;
};

class MemorySource : public ByteSource {
  public:
    MemorySource(const void* data, size_t size)
        : data_(static_cast<const char*>(data)), size_(size) {}
    Result<size_t> read(void* buf, size_t len) override;
    Result<uint64_t> skip(uint64_t len) override;

  private:
    const char* data_;
    size_t size_;
    size_t pos_ = 0;
};

struct Record {
    image::RecordType type;
    const char* name;  // from the record type table
    uint64_t index;    // 0-based position among the records
    uint64_t offset;   // stream offset of the record header
    std::string payload;
    // The payload's length in the image. payload holds all of it, except for
    // a bulk record (pages, fd-data) read with skip_bulk_data: then only its
    // fixed part, the rest hashed and skipped.
    uint64_t length = 0;
};

// Frame-level reader: header, bounded records, trailer (count + checksum + clean EOF).
class ImageReader {
  public:
    explicit ImageReader(ByteSource& src) : src_(src) {}
    ~ImageReader();
    ImageReader(const ImageReader&) = delete;
    ImageReader& operator=(const ImageReader&) = delete;

    // Must be called first.
    Result<image::Header> read_header();
    // The next record, or nullopt once the trailer was read and checked.
    Result<std::optional<Record>> next();
    // Bulk records come back as their fixed part only; their data is hashed
    // through one reused buffer instead of a fresh allocation per record (a
    // 1 GiB image is 64 records of 16 MiB).
    void skip_bulk_data(bool on) { skip_bulk_ = on; }
    // The stream was hashed as it was written (common/image_prehash.h):
    // nothing is hashed again, skipped bulk data is not even read, and only a
    // trailer starting at byte `h.bytes` is accepted (else an error: the
    // caller decodes the usual way).
    void use_stream_hash(StreamHash h) { hashed_ = h; }
    // These very bytes were checked against the trailer's checksum already
    // (a tree's restore decodes its unchanging spool once per process):
    // skipped bulk data is neither read nor hashed, the checksum not compared.
    void checksum_verified(bool on) { verified_ = on; }
    // stream: the source holds an image's records up to its first pages
    // record only (fs/slot_stream.h): its end at a record boundary ends the
    // records without a trailer; nothing is hashed (the whole image is
    // decoded and its checksum verified before the task may run).
    void prefix_only(bool on) { prefix_ = on; }
    // trees: goes on at byte `offset`, the start of record `index`, a record
    // boundary an earlier decode of these very bytes found (DecodeOptions::tree).
    Status resume_at(uint64_t offset, uint64_t index);

    uint64_t offset() const { return offset_; }
    uint64_t checksum() const { return checksum_; }

  private:
    // What a read is of, put in words only for the message of a short one.
    struct Where {
        const char* name;                // "header", "trailer", or a record type's
        uint64_t record = ~uint64_t(0);  // a record's index (none: `name` alone)
    };
    Status read_exact(void* buf, size_t len, Where where, bool hash);
    Status pass_bulk(uint64_t len, Where where);
    ByteSource& src_;
    std::optional<StreamHash> hashed_;
    void* xxh_ = nullptr;  // XXH3_state_t
    uint64_t offset_ = 0;
    uint64_t records_ = 0;
    uint64_t checksum_ = 0;
    bool header_read_ = false;
    bool done_ = false;
    bool skip_bulk_ = false;
    bool verified_ = false;
    bool prefix_ = false;        // stream
    std::vector<char> scratch_;  // skipped bulk data passes through here
};

// --- The decoded image: typed records, checked for consistency ----------------

struct VmaEntry {
    image::VmaRecord rec;
    std::string path;
    std::optional<image::VmaContentRecord> content;  // vma-content record, if any
};

struct PageRun {
    uint64_t vaddr;
    uint32_t nr_pages;
    uint64_t stream_offset;  // where the page bytes start in the stream
    std::string data;        // only with DecodeOptions::keep_data
};

struct FdEntry {
    image::FdRecord rec;
    std::string path;
    uint64_t data_bytes = 0;  // deleted files: content bytes in fd-data records
    // Deleted files: {stream offset, bytes} of each fd-data payload, so a
    // restore can copy the content straight from a seekable image.
    std::vector<std::pair<uint64_t, uint64_t>> data_runs;
    std::string data;                               // only with DecodeOptions::keep_data
    std::optional<image::FdContentRecord> content;  // fd-content record, if any
    // Kernel-object records naming this fd (eventfd, timerfd, epoll-watch, ...:
    // state/kobj.h reads and checks them), in stream order.
    std::vector<std::pair<image::RecordType, std::string>> kobj;
};

// A record whose bytes follow a list of u32 lengths that divide them (pipe
// buffers, socket messages), and where the bytes lie in the stream (restore
// reads them from there).
struct LengthsAndBytes {
    std::vector<uint32_t> lens;
    uint64_t data_offset = 0;
    std::string data;  // only with DecodeOptions::keep_data
};

struct PipeEntry : LengthsAndBytes {  // version 3
    image::PipeRecord rec{};
};

struct UnixSocketEntry : LengthsAndBytes {  // version 3
    image::UnixSocketRecord rec{};
};

struct UnixBoundEntry : LengthsAndBytes {  // version 5
    image::UnixBoundRecord rec{};
};

// A memfd (version 4): its record, name, and where each memfd-data payload
// lies in the stream (a restore copies it straight from a seekable image).
struct MemfdEntry {
    image::MemfdRecord rec{};
    std::string name;
    struct Run {
        uint64_t offset;         // in the memfd
        uint64_t stream_offset;  // of the bytes in the image
        uint64_t len;
    };
    std::vector<Run> runs;
};

// An inet socket (kinds kTcp, kUdp) with its options and, for an established
// TCP connection, its repair state and queue bytes (always kept in memory).
struct InetEntry {
    image::InetSocketRecord rec{};
    std::vector<image::InetOptionRecord> options;
    std::optional<image::TcpRepairRecord> repair;
    std::string recv_queue, send_queue;
    bool close = false;  // restore: aborted, not repaired (the slot's `tcp` file)
};

// A thread other than the main one (version 3): its own registers, signal
// mask, alternate stack and private pending signals.
struct ThreadImage {
    image::ThreadRecord rec{};
    image::RegsRecord regs{};
    std::string xstate;
    image::SigstateRecord sigstate{};
    std::vector<image::SiginfoRecord> pending;      // its private queue
    std::optional<image::ThreadAttrsRecord> attrs;  // fid, version 6
    // fid: inside a syscall the kernel restarts (state/restart.h), as the
    // main thread's `restart` (session 31; older images have none).
    std::optional<image::SyscallRestartRecord> restart;
};

// Version 4: one seccomp filter (state/seccomp.cc), its BPF program as bytes.
struct SeccompFilterEntry {
    image::SeccompFilterRecord rec{};
    std::string prog;  // rec.len struct sock_filter
};

struct DecodedImage {
    image::Header header{};
    image::TaskRecord task{};
    image::CredsRecord creds{};
    std::vector<uint32_t> groups;
    image::FsRecord fs{};
    std::string cwd, root;
    image::MmRecord mm{};
    std::vector<uint64_t> auxv;
    std::string exe;
    std::vector<VmaEntry> vmas;
    std::vector<PageRun> pages;
    image::RegsRecord regs{};
    std::string xstate;
    image::SigactionsRecord sigactions{};
    image::SigstateRecord sigstate{};
    std::vector<image::SiginfoRecord> pending;
    image::RlimitsRecord rlimits{};
    image::ItimersRecord itimers{};
    std::vector<FdEntry> fds;
    std::vector<PipeEntry> pipes;
    std::vector<UnixSocketEntry> unix_sockets;
    std::vector<UnixBoundEntry> unix_bound;              // version 5
    std::vector<image::UnixSenderRecord> unix_senders;   // version 5
    std::vector<image::UnixMakerRecord> unix_makers;     // sock, version 10
    std::vector<image::UnixOptionsRecord> unix_options;  // sock, version 10
    std::vector<MemfdEntry> memfds;  // version 4 (kobj): state/memfd.cc checks them
    std::vector<InetEntry> inet;     // one per fd of kind kTcp/kUdp that is its own description
    // Version 3: the main thread's thread record (regs, xstate, sigstate and
    // the pending signals above are its own) and every other thread.
    std::optional<image::ThreadRecord> main_thread;
    std::vector<ThreadImage> threads;
    std::optional<image::ThreadAttrsRecord> main_attrs;  // fid, version 6 (state/thread_attrs.h)
    std::optional<image::StatsRecord> stats;
    // fid, version 5: the main thread was inside a restarted syscall.
    std::optional<image::SyscallRestartRecord> restart;
    image::MlockallRecord mlockall{};  // fid, version 5: flags 0 without the record
    std::optional<image::DeletedCwdRecord> deleted_cwd;  // delcwd, version 14 (state/fs.cc)
    // cwdtree, version 15: that cwd is an earlier member's (state/fs_tree.cc)
    std::optional<image::DeletedCwdFromRecord> deleted_cwd_from;
    std::vector<image::SysvShmRecord> sysv_shm;  // sysv, version 10 (state/sysv_shm.h)
    std::vector<std::string> sysv_msg;           // sem, version 11: payloads (state/sysv_msg.h)
    std::vector<std::string> sysv_sem;           // sem, version 11: payloads (state/sysv_sem.h)
    std::optional<image::TtyRecord> tty;  // tty, version 7: the session's terminal (state/tty.cc)
    std::optional<image::SettingsRecord> settings;  // fidelity, version 3
    std::string cpu_mask;                           // its affinity mask bytes
    // trees, version 4: every process's record, in image order (empty: one process).
    std::vector<image::ProcessRecord> processes;
    // life: every zombie of a tree, with its index in `processes`.
    std::vector<std::pair<uint32_t, image::ZombieRecord>> zombies;
    // treeperf: where each process record is (its offset, its record index).
    std::vector<std::pair<uint64_t, uint64_t>> process_starts;
    // streamtree, version 16: where each process's page section starts (its
    // member-pages record's offset and record index), {0, 0}: none (a zombie,
    // or a process without pages or stats). Empty below version 16.
    std::vector<std::pair<uint64_t, uint64_t>> section_starts;
    // overlap, version 17: the member-stats records of a tree, every
    // process's (its index and its stats: also in `stats` of its own decode).
    std::vector<std::pair<uint32_t, image::StatsRecord>> member_stats;
    // share: each process's fd table / fs sharing (state/tree_share_task.h), every process's.
    std::vector<std::pair<uint32_t, image::ShareTaskRecord>> share_tasks;
    std::vector<SeccompFilterEntry> seccomp;            // version 4, oldest first
    std::vector<image::PosixTimerRecord> posix_timers;  // version 4, in id order
    // timer, version 7, in id order: the targets of timers signalling another thread
    std::vector<image::PosixTimerThreadRecord> posix_timer_threads;
    std::vector<image::FileLockRecord> file_locks;  // version 4
    // incr, version 5 (docs/incremental.md): the image's place in a chain, and
    // a delta's pages left to its base (restorer/image_chain.h composes them).
    std::optional<image::ChainRecord> chain;
    std::vector<image::KeepRecord> keeps;
    uint64_t record_count = 0;
    uint64_t checksum = 0;
    uint64_t size = 0;
};

struct DecodeOptions {
    bool keep_data = false;  // keep page and file content in memory (restore does)
    uint32_t process = 0;    // trees: which process's records (index into processes)
    // The checksum computed as the bytes arrived (ImageReader::use_stream_hash).
    const StreamHash* hashed = nullptr;
    bool checksum_verified = false;  // trees: ImageReader::checksum_verified
    // treeperf: process 0's decode of these very bytes, which checked the
    // whole stream (framing, checksum, trailer) and do not change: only the
    // records of `process` are read, from its process record to the next
    // (one walk of the framing per tree, not one per process), and then
    // (streamtree, version 16) its page section.
    const DecodedImage* tree = nullptr;
    // stream: the source ends before the image's first pages record
    // (ImageReader::prefix_only): every check but the trailer's.
    bool prefix = false;
};

// Reads and checks a whole image: framing, checksum, and that the records make
// sense together (each singleton record once, pages inside a preceding VMA, ...).
Result<DecodedImage> decode_image(ByteSource& src, DecodeOptions opts = {});

}  // namespace crfs
