// Pieces of the small images the unit tests write (tests/unit image_test,
// image_spool_test, image_tree_test): the records every process ends with,
// and the bytes of a finished image.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "common/image_writer.h"

namespace crfs::test {

// The main thread `tid` and the records that follow it, all zero but the
// xstate (576 'x'): thread, regs, xstate, sigactions, sigstate, rlimits, itimers.
inline void add_main_thread(ImageWriter& w, int32_t tid) {
    using image::RecordType;
    image::ThreadRecord th{};
    th.tid = tid;
    w.add(RecordType::kThread, Payload().add(th));
    w.add(RecordType::kRegs, Payload().add(image::RegsRecord{}));
    w.add(RecordType::kXstate, std::string(576, 'x'));
    w.add(RecordType::kSigactions, Payload().add(image::SigactionsRecord{}));
    w.add(RecordType::kSigstate, Payload().add(image::SigstateRecord{}));
    w.add(RecordType::kRlimits, Payload().add(image::RlimitsRecord{}));
    w.add(RecordType::kItimers, Payload().add(image::ItimersRecord{}));
}

// The records of one minimal process: task, creds, fs, mm and its main thread.
inline void add_minimal_process(ImageWriter& w, int32_t pid) {
    using image::RecordType;
    image::TaskRecord t{};
    t.pid = pid;
    w.add(RecordType::kTask, Payload().add(t));
    w.add(RecordType::kCreds, Payload().add(image::CredsRecord{}));
    w.add(RecordType::kFs, Payload().add(image::FsRecord{022, 0, 0, 0}));
    w.add(RecordType::kMm, Payload().add(image::MmRecord{}));
    add_main_thread(w, pid);
}

// Every byte of a finished image.
inline std::string stream_bytes(const ImageStream& s) {
    std::string out(s.size(), '\0');
    EXPECT_EQ(s.read(0, out.data(), out.size()), out.size());
    return out;
}

}  // namespace crfs::test
