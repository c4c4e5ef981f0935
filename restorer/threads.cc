#include "restorer/threads.h"

#include <cstring>

#include "common/strfmt.h"
#include "restorer/regs.h"

namespace crfs {

namespace {

constexpr size_t kThreadStack = 16 << 10;  // the blob's thread steps need a few hundred bytes

}  // namespace

Status check_thread_ids(const DecodedImage& img, const RestoreRequest& req) {
    if (img.threads.empty() || req.want_pid == img.task.pid) return {};
    return make_error(EPERM, strfmt("image has {} threads: threads come back only with their "
                                    "original tids (glibc keeps them in the task's memory), so "
                                    "restore it into /crfs/{} (choosing pids needs root or the "
                                    "group the administrator named)",
                                    img.threads.size() + 1, img.task.pid));
}

uint64_t threads_area_bytes(const DecodedImage& img) {
    uint64_t n = sizeof(crfs_ra_thread) * img.threads.size() + 64;
    for (const auto& t : img.threads)
        n +=
            kThreadStack + sigframe_size(t) + 128 + t.pending.size() * sizeof(crfs_ra_siginfo) + 16;
    return n;
}

Status fill_threads(const DecodedImage& img, const AreaAlloc& take, crfs_restorer_args& a) {
    if (img.main_thread) {
        a.robust_head = img.main_thread->robust_head;
        a.robust_len = img.main_thread->robust_len;
        a.clear_child_tid = img.main_thread->clear_child_tid;
    }
    if (img.threads.empty()) return {};
    auto* ts = static_cast<crfs_ra_thread*>(take(sizeof(crfs_ra_thread) * img.threads.size(), 16));
    if (!ts) return make_error(ENOMEM, "restorer area too small for the threads (internal error)");
    for (size_t i = 0; i < img.threads.size(); ++i) {
        const ThreadImage& t = img.threads[i];
        crfs_ra_thread& r = ts[i];
        std::memset(&r, 0, sizeof r);
        r.tid = t.rec.tid;
        auto* stack = static_cast<char*>(take(kThreadStack, 16));
        void* frame = take(sigframe_size(t), 64);
        if (!stack || !frame)
            return make_error(ENOMEM, "restorer area too small for the threads (internal error)");
        r.stack_top = reinterpret_cast<uint64_t>(stack) + kThreadStack;
        uint64_t at = sigframe_on_stack(img, t);
        if (auto s = build_sigframe(t, frame, at ? at : uint64_t(frame)); !s)
            return std::unexpected(s.error().context(strfmt("thread {}", t.rec.tid)));
        r.sigframe = reinterpret_cast<uint64_t>(frame);
        if (at) r.sigframe_dst = at, r.sigframe_len = sigframe_size(t);
        r.fs_base = t.regs.fs_base;
        r.gs_base = t.regs.gs_base;
        r.robust_head = t.rec.robust_head;
        r.robust_len = t.rec.robust_len;
        r.rseq_area = t.rec.rseq_addr;
        r.rseq_len = t.rec.rseq_len;
        r.rseq_sig = t.rec.rseq_sig;
        r.clear_child_tid = t.rec.clear_child_tid;
        std::memcpy(r.comm, t.rec.comm, sizeof r.comm);
        r.comm[sizeof r.comm - 1] = '\0';
        if (!t.pending.empty()) {
            auto* si =
                static_cast<crfs_ra_siginfo*>(take(t.pending.size() * sizeof(crfs_ra_siginfo), 16));
            if (!si)
                return make_error(ENOMEM,
                                  "restorer area too small for the threads (internal error)");
            for (size_t k = 0; k < t.pending.size(); ++k) {
                std::memset(&si[k], 0, sizeof si[k]);
                std::memcpy(&si[k].signo, t.pending[k].info, 4);
                std::memcpy(si[k].info, t.pending[k].info, sizeof si[k].info);
            }
            r.siginfo = reinterpret_cast<uint64_t>(si);
            r.nr_siginfo = t.pending.size();
        }
    }
    a.threads = reinterpret_cast<uint64_t>(ts);
    a.nr_threads = img.threads.size();
    return {};
}

}  // namespace crfs
