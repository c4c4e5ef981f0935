// Slots in a mapping that a restore's clones share with the daemon: stage 1
// records in one what it made in a namespace that outlives the process (a
// socket file, a POSIX message queue), the daemon reads them once the restore
// failed (state/names_made.h). T has a `uint32_t made` written last.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace crfs::state {

template <class T>
class SharedSlots {
  public:
    SharedSlots() = default;
    // n zeroed slots (nothing made); none (ok() false) when the mapping fails.
    explicit SharedSlots(size_t n) : n_(n) {
        if (!n) return;
        void* m =
            mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) slots_ = static_cast<T*>(m);
    }
    // Moved, the slots stay where they are (the plans point into them).
    SharedSlots(SharedSlots&& o) noexcept
        : slots_(std::exchange(o.slots_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    SharedSlots& operator=(SharedSlots&& o) noexcept {
        std::swap(slots_, o.slots_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~SharedSlots() {
        if (slots_) munmap(slots_, n_ * sizeof(T));
    }
    bool ok() const { return n_ == 0 || slots_ != nullptr; }
    size_t size() const { return slots_ ? n_ : 0; }
    T* slot(size_t i) const { return slots_ + i; }
    // Slot i holds what stage 1 made (its fields are then complete).
    bool made(size_t i) const { return __atomic_load_n(&slots_[i].made, __ATOMIC_ACQUIRE) != 0; }
    bool any() const {
        for (size_t i = 0; i < size(); ++i)
            if (made(i)) return true;
        return false;
    }

  private:
    T* slots_ = nullptr;
    size_t n_ = 0;
};

// Stage 1: slot s holds what it made (written after its other fields), or no longer.
template <class T>
void slot_made(T& s, bool made) {
    __atomic_store_n(&s.made, made ? 1u : 0u, __ATOMIC_RELEASE);
}

}  // namespace crfs::state
