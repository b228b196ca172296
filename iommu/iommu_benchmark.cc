// IOMMU benchmarks: IOTLB hit and full table walk (ns/op), and crash copy +
// verify of 1 GiB mapped as 4 KiB pages (262 144 PTEs) against a plain
// memcpy of the same table bytes measured in the same run (counters
// copy_verify_ms, memcpy_ms, ratio). Targets: ≤ 100 ms and ratio ≤ 10.
//   bazel run -c opt //iommu:iommu_benchmark
#include <chrono>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "iommu/crash_copy.h"
#include "iommu/test_util.h"

namespace iommu {
namespace {

constexpr uint16_t kSid = MakeSid(1, 0);

struct Setup {
  std::unique_ptr<TestEnv> env;
  std::unique_ptr<IommuDriver> driver;
  uint16_t did = 0;
};

// 1 GiB of IOVA mapped with 4 KiB pages. Contiguous: HPA 4 KiB-aligned but
// not 2 MiB-aligned, so no superpage is possible but every leaf table maps
// one contiguous run. Scattered: every page at a pseudo-random HPA (no two
// neighbours contiguous) — the per-entry worst case.
Setup* MakeOneGiB(bool scattered) {
  auto* setup = new Setup;
  setup->env = std::move(*TestEnv::Create(16 << 20, 1024, 1024));
  setup->driver = std::move(*IommuDriver::Create(
      setup->env->mem.get(), setup->env->hw.get(), setup->env->pool.get()));
  setup->did = *setup->driver->CreateDomain(4);
  if (!setup->driver->Attach(kSid, setup->did).ok()) std::abort();
  const uint64_t base = uint64_t{1} << 32;
  if (!scattered) {
    if (!setup->driver
             ->Map(setup->did, base, 0x1000, uint64_t{1} << 30, kPermRW)
             .ok()) {
      std::abort();
    }
    return setup;
  }
  for (uint64_t i = 0; i < 262144; ++i) {
    const uint64_t hpa = ((i * 2654435761u) % 262144) * 2 * kPageSize;
    if (!setup->driver
             ->Map(setup->did, base + i * kPageSize, hpa, kPageSize, kPermRW)
             .ok()) {
      std::abort();
    }
  }
  return setup;
}

Setup& OneGiB() {
  static Setup* s = MakeOneGiB(false);
  return *s;
}

Setup& OneGiBScattered() {
  static Setup* s = MakeOneGiB(true);
  return *s;
}

void BM_IotlbHit(benchmark::State& state) {
  Setup& s = OneGiB();
  const uint64_t iova = (uint64_t{1} << 32) + 0x5000;
  (void)s.env->hw->Translate(kSid, iova, Access::kRead);
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.env->hw->Translate(kSid, iova, Access::kRead));
  }
}
BENCHMARK(BM_IotlbHit);

void BM_FullWalk(benchmark::State& state) {
  Setup& s = OneGiB();
  const uint64_t root = s.driver->root_table();
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t iova = (uint64_t{1} << 32) + ((i++ * 7919) % 262144) * 4096;
    benchmark::DoNotOptimize(
        TranslateUncached(*s.env->mem, root, kSid, iova, Access::kRead));
  }
}
BENCHMARK(BM_FullWalk);

void CopyVerify(benchmark::State& state, Setup& s) {
  const uint64_t root = s.driver->root_table();
  const uint64_t table_bytes = s.env->pool->allocated_pages() * kPageSize;
  std::vector<uint8_t> dst(table_bytes);
  double copy_ns = 0, memcpy_ns = 0;
  uint64_t ptes = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto copy = CopyTables(s.env->mem.get(), root, s.env->reserved.get(),
                           CopyStrategy::kDeepCopy);
    auto v = VerifyTranslationsEqual(*s.env->mem, root, copy->new_rtaddr);
    auto t1 = std::chrono::steady_clock::now();
    if (!copy.ok() || !v.ok()) {
      state.SkipWithError("copy or verify failed");
      break;
    }
    ptes = v->leaf_entries;
    state.PauseTiming();
    ReleaseCopy(&*copy, s.env->reserved.get());
    auto t2 = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), s.env->mem->PageWords(s.env->pool->base()),
                table_bytes);
    benchmark::ClobberMemory();
    auto t3 = std::chrono::steady_clock::now();
    state.ResumeTiming();
    copy_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
    memcpy_ns += std::chrono::duration<double, std::nano>(t3 - t2).count();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["ptes"] = static_cast<double>(ptes);
  state.counters["table_KiB"] = static_cast<double>(table_bytes) / 1024;
  state.counters["copy_verify_ms"] = copy_ns / n / 1e6;
  state.counters["memcpy_ms"] = memcpy_ns / n / 1e6;
  state.counters["ratio"] = copy_ns / memcpy_ns;
}
void BM_CrashCopyVerify1GiB(benchmark::State& state) {
  CopyVerify(state, OneGiB());
}
BENCHMARK(BM_CrashCopyVerify1GiB)->Unit(benchmark::kMillisecond);

void BM_CrashCopyVerify1GiBScattered(benchmark::State& state) {
  CopyVerify(state, OneGiBScattered());
}
BENCHMARK(BM_CrashCopyVerify1GiBScattered)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace iommu

BENCHMARK_MAIN();
