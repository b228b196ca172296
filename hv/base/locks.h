// Locks for hv's core libraries.
//
// Why not absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, so
// TSan cannot see absl::Mutex acquire/release and reports false races
// (../shared/BUILD-NOTES.md). These wrappers sit on std::mutex and
// std::atomic, which TSan understands, and carry Abseil's capability
// annotations so clang's -Wthread-safety still checks ABSL_GUARDED_BY.
#ifndef HV_BASE_LOCKS_H_
#define HV_BASE_LOCKS_H_

#include <atomic>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace hv {

// A sleeping mutex (std::mutex) for state that may be held across slow work.
class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return mu_.try_lock();
  }
  // For code paths the analysis cannot follow (e.g. callbacks documented to
  // run with the lock held).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  std::mutex mu_;
};

// A test-and-test-and-set spinlock for short critical sections that never
// block, allocate or touch guest memory (the ITS command lock, per DESIGN §4).
// Acquire/release ordering on an atomic: TSan sees the happens-before edge.
class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
    }
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    locked_.store(false, std::memory_order_release);
  }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  std::atomic<bool> locked_{false};
};

// Scoped holders (RAII) for the two lock types above.
template <typename LockType>
class ABSL_SCOPED_LOCKABLE ScopedLock {
 public:
  explicit ScopedLock(LockType* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock)
      : lock_(lock) {
    lock_->Lock();
  }
  ~ScopedLock() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

 private:
  LockType* const lock_;
};

using MutexLock = ScopedLock<Mutex>;
using SpinLockHolder = ScopedLock<SpinLock>;

}  // namespace hv

#endif  // HV_BASE_LOCKS_H_
