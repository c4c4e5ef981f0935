// failclean: names a failed restore made, removed (state/names_made.h).
#include "state/names_made.h"

#include <cstring>

#include "common/log.h"
#include "common/unique_fd.h"

namespace crfs::state {

NamesMade::~NamesMade() {
    for (const Made& m : made_) {
        bool files = m.files.any(), queues = m.queues.any();
        if (!files && !queues) continue;
        // The queues' file system, mounted (detached) while still root: the
        // writer then looks a name up and unlinks it in it.
        UniqueFd mq;
        if (queues) {
            int fd = mqueue_mount();
            if (fd < 0)
                log_info(
                    "restore failed: its POSIX message queues are left: mounting the mqueue "
                    "file system: %s",
                    std::strerror(-fd));
            else
                mq = UniqueFd(fd);
        }
        auto s = m.as_writer([&]() -> Status {
            m.files.remove();
            if (mq) m.queues.remove(mq.get());
            return {};
        });
        if (!s) log_info("restore failed: removing what it made: %s", s.error().what.c_str());
    }
}

}  // namespace crfs::state
