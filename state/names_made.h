// failclean: what a restore's stage 1 made under a name that outlives its
// processes, removed again when the restore fails (docs/trees.md "A failed
// restore"): the socket files its binds made (state/unix_bound.h) and the
// POSIX message queues it created (state/mqueue.h). Each is removed as the
// writer, only while its name still leads to the very file or queue made.
#pragma once

#include <functional>
#include <vector>

#include "common/result.h"
#include "state/mqueue.h"
#include "state/unix_bound.h"

namespace crfs::state {

// Removed (each process's as its writer) unless keep(), once the restore is
// over (every process it made is gone: nothing binds or creates any more).
class NamesMade {
  public:
    using AsWriter = std::function<Status(const std::function<Status()>&)>;
    NamesMade() = default;
    NamesMade(const NamesMade&) = delete;
    NamesMade& operator=(const NamesMade&) = delete;
    ~NamesMade();
    void add(UnixBoundFiles files, MqueuesMade queues, AsWriter as_writer) {
        made_.push_back({std::move(files), std::move(queues), std::move(as_writer)});
    }
    void keep() { made_.clear(); }

  private:
    struct Made {
        UnixBoundFiles files;
        MqueuesMade queues;
        AsWriter as_writer;
    };
    std::vector<Made> made_;
};

}  // namespace crfs::state
