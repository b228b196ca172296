// A condition variable usable with hv::Mutex (hv/base/locks.h), built on
// std::condition_variable_any so TSan sees the underlying std::mutex.
#ifndef HV_ARCH_COND_VAR_H_
#define HV_ARCH_COND_VAR_H_

#include <chrono>
#include <condition_variable>

#include "hv/base/locks.h"

namespace hv {

class CondVar {
 public:
  // Atomically releases `mu` and blocks; `mu` is held again on return.
  // Spurious wakeups happen: callers loop on their predicate.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Adapter a{mu};
    cv_.wait(a);
  }
  // Returns false on timeout.
  bool WaitFor(Mutex* mu, std::chrono::nanoseconds timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Adapter a{mu};
    return cv_.wait_for(a, timeout) == std::cv_status::no_timeout;
  }
  void NotifyAll() { cv_.notify_all(); }
  void NotifyOne() { cv_.notify_one(); }

 private:
  // BasicLockable view of an hv::Mutex that the caller already holds.
  struct Adapter {
    Mutex* mu;
    void lock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu->Lock(); }
    void unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu->Unlock(); }
  };
  std::condition_variable_any cv_;
};

}  // namespace hv

#endif  // HV_ARCH_COND_VAR_H_
