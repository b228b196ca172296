#include "hv/base/locks.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hv {
namespace {

template <typename LockType>
struct Counter {
  LockType lock;
  long value ABSL_GUARDED_BY(lock) = 0;
};

template <typename LockType>
long Hammer() {
  Counter<LockType> c;
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < kIters; ++i) {
        ScopedLock<LockType> hold(&c.lock);
        ++c.value;
      }
    });
  }
  for (auto& t : threads) t.join();
  ScopedLock<LockType> hold(&c.lock);
  return c.value;
}

TEST(LocksTest, SpinLockExcludes) { EXPECT_EQ(Hammer<SpinLock>(), 80000); }

TEST(LocksTest, MutexExcludes) { EXPECT_EQ(Hammer<Mutex>(), 80000); }

// The analysis cannot follow "TryLock succeeded, so unlock" across EXPECTs.
void TryLockSequence(SpinLock& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ASSERT_TRUE(s.TryLock());
  EXPECT_FALSE(s.TryLock());
  s.Unlock();
  EXPECT_TRUE(s.TryLock());
  s.Unlock();
}

TEST(LocksTest, TryLockFailsWhileHeld) {
  SpinLock s;
  TryLockSequence(s);
}

}  // namespace
}  // namespace hv
