// Baseline for the vgic benchmarks: the cost of a bare atomic bit set +
// clear on one 64-bit word, measured once per process (so every ratio in a
// run is against the same machine state). Benchmarks construct a LoopTimer
// before their timing loop and call Report() after it to add an `x_atomic`
// counter: their CPU time per iteration divided by the baseline's.
//
// Both sides use the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so
// the ratio is not inflated when the shared build machine is busy and
// benchmark threads wait for a core.
#ifndef VGIC_BENCH_BASELINE_H_
#define VGIC_BENCH_BASELINE_H_

#include <time.h>

#include <atomic>
#include <cstdint>

#include "benchmark/benchmark.h"

namespace vgic {

inline double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// CPU ns for one fetch_or + fetch_and pair (best of a few batches).
inline double AtomicBitBaselineNs() {
  static const double ns = [] {
    std::atomic<uint64_t> word{0};
    constexpr int kBatch = 2'000'000;
    double best = 1e9;
    for (int round = 0; round < 5; ++round) {
      const double t0 = ThreadCpuNs();
      for (int i = 0; i < kBatch; ++i) {
        const uint64_t bit = uint64_t{1} << (i & 63);
        word.fetch_or(bit);
        word.fetch_and(~bit);
      }
      const double per = (ThreadCpuNs() - t0) / kBatch;
      if (per < best) best = per;
    }
    benchmark::DoNotOptimize(word.load());
    return best;
  }();
  return ns;
}

// CPU-time timer for one benchmark thread's timing loop.
class LoopTimer {
 public:
  // Measures the baseline first (once per process) so it is not timed.
  LoopTimer() : baseline_(AtomicBitBaselineNs()), t0_(ThreadCpuNs()) {}
  // Adds x_atomic = (this thread's CPU ns per iteration) / baseline,
  // averaged over threads.
  void Report(benchmark::State& state) const {
    const double ns = ThreadCpuNs() - t0_;
    const double per = state.iterations() > 0
                           ? ns / static_cast<double>(state.iterations())
                           : 0;
    state.counters["x_atomic"] =
        benchmark::Counter(per / baseline_, benchmark::Counter::kAvgThreads);
  }

 private:
  double baseline_;
  double t0_;
};

}  // namespace vgic

#endif  // VGIC_BENCH_BASELINE_H_
