// Baseline for the vgic benchmarks: the cost of a bare atomic bit set +
// clear on one 64-bit word, measured once per process (so every ratio in a
// run is against the same machine state). Benchmarks call
// ReportVsBaseline() after their timing loop to add an `x_atomic` counter:
// their time per iteration divided by the baseline.
#ifndef VGIC_BENCH_BASELINE_H_
#define VGIC_BENCH_BASELINE_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "benchmark/benchmark.h"

namespace vgic {

// ns for one fetch_or + fetch_and pair (median of a few batches).
inline double AtomicBitBaselineNs() {
  static const double ns = [] {
    std::atomic<uint64_t> word{0};
    constexpr int kBatch = 2'000'000;
    double best = 1e9;
    for (int round = 0; round < 5; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kBatch; ++i) {
        const uint64_t bit = uint64_t{1} << (i & 63);
        word.fetch_or(bit);
        word.fetch_and(~bit);
      }
      const auto t1 = std::chrono::steady_clock::now();
      const double per =
          std::chrono::duration<double, std::nano>(t1 - t0).count() / kBatch;
      if (per < best) best = per;
    }
    benchmark::DoNotOptimize(word.load());
    return best;
  }();
  return ns;
}

// Wall-clock timer for one benchmark thread's timing loop.
class LoopTimer {
 public:
  // Measures the baseline first (once per process) so it is not timed.
  LoopTimer()
      : baseline_(AtomicBitBaselineNs()),
        t0_(std::chrono::steady_clock::now()) {}
  // Adds x_atomic = (this thread's ns per iteration) / baseline, averaged
  // over threads.
  void Report(benchmark::State& state) const {
    const double ns = std::chrono::duration<double, std::nano>(
                          std::chrono::steady_clock::now() - t0_)
                          .count();
    const double per = state.iterations() > 0 ? ns / state.iterations() : 0;
    state.counters["x_atomic"] =
        benchmark::Counter(per / baseline_, benchmark::Counter::kAvgThreads);
  }

 private:
  double baseline_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace vgic

#endif  // VGIC_BENCH_BASELINE_H_
