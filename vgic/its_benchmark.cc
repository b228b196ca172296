// ITS benchmarks, part of //vgic:vgic_benchmark
// (`bazel run -c opt //vgic:vgic_benchmark -- --benchmark_filter=Its`).
// One run reports:
//   - BM_ItsBareAtomicBitSet: the floor, one atomic OR into a pending bitmap;
//   - BM_ItsMsiCached/<sink>: InjectMsi hitting the translation cache;
//   - BM_ItsMsiUncached/<sink>: InjectMsi with a 1-slot cache, cycling through
//     all 1024 devices × 32 events (every lookup misses);
//   - BM_ItsMsiLinearListSeed: the seed's approach, walking linear lists of
//     devices and ITEs on every MSI, same 1024 × 32 mapping;
//   - BM_ItsCommandsMaptiIntSync: command-queue throughput for a MAPTI/INT/SYNC
//     mix (items = commands).
// <sink> 0 = a minimal atomic-bitmap LpiSink (isolates the ITS cost),
// 1 = the real vgic::Vgic. Every MSI benchmark reports, from the same run:
//   x_atomic  (vgic-core's baseline: wall ns / one fetch_or+fetch_and pair),
//   x_bitset  (thread-CPU ns / one bare fetch_or into a pending bitmap),
//   list_speedup (seed linear-list walk ns / this benchmark's ns, CPU time).
// The machine is shared, so the two ratios of our own use thread CPU time.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hv/base/locks.h"
#include "vgic/bench_baseline.h"
#include "vgic/fake_lpi_sink.h"
#include "vgic/its.h"
#include "vgic/its_commands.h"
#include "vgic/its_harness.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

namespace cmd = its::cmd;
constexpr uint32_t kDevices = 1024;
constexpr uint32_t kEvents = 32;
constexpr uint32_t kVcpus = 4;
constexpr uint32_t kLpiBits = 16;

uint32_t IntidOf(uint32_t d, uint32_t e) {
  return 8192 + (d * kEvents + e) % ((1u << kLpiBits) - 8192);
}

// A GuestMemory + sink + ITS with 1024 devices × 32 events mapped over
// kVcpus collections, LPIs enabled when the sink is the real Vgic.
struct Setup {
  std::unique_ptr<FakeLpiSink> fake;
  std::unique_ptr<ItsHarness> h;
  std::unique_ptr<Vgic> gic;
  LpiSink* sink = nullptr;

  Setup(bool real_vgic, uint32_t cache_slots) {
    ItsOptions opts;
    opts.cache_slots = cache_slots;
    if (!real_vgic) {
      fake = std::make_unique<FakeLpiSink>(kVcpus, kLpiBits);
      sink = fake.get();
      h = std::make_unique<ItsHarness>(sink, opts, /*cmdq_pages=*/16);
    } else {
      h = std::make_unique<ItsHarness>(nullptr, opts, 16);
      VgicConfig cfg;
      cfg.num_vcpus = kVcpus;
      cfg.lpi_id_bits = kLpiBits;
      cfg.memory = &h->mem();
      gic = std::move(Vgic::Create(cfg)).value();
      sink = gic.get();
      h->its_ptr() = std::make_unique<Its>(sink, &h->mem(), opts);
      for (uint32_t v = 0; v < kVcpus; ++v) {
        auto& rd = gic->redistributors();
        const uint64_t base = v * kRedistributorStride;
        rd.Write({}, base + 0x70, 8, 0x400000 | (kLpiBits - 1)).IgnoreError();
        rd.Write({}, base + 0x78, 8, 0x500000 + v * 0x10000).IgnoreError();
        rd.Write({}, base + 0x0, 4, 1).IgnoreError();
      }
    }
    h->Enable();
    // Device table: 1 page holds 8192 DeviceIDs; ITTs 4 KiB apart fit
    // 32 events × 8 bytes.
    std::vector<cmd::Raw> c;
    for (uint16_t icid = 0; icid < kVcpus; ++icid) {
      c.push_back(cmd::Mapc(icid, icid, true));
    }
    h->Send(c);
    for (uint32_t d = 0; d < kDevices; ++d) {
      c.clear();
      c.push_back(cmd::Mapd(d, 5, 0x600000 + d * 0x100ull, true));
      for (uint32_t e = 0; e < kEvents; ++e) {
        c.push_back(cmd::Mapti(d, e, IntidOf(d, e), (d + e) % kVcpus));
      }
      h->Send(c);
    }
  }
};

// The seed's approach: a list of devices, each with a list of ITEs, walked
// linearly on every MSI under the ITS lock.
class LinearListIts {
 public:
  struct Ite {
    uint32_t event, intid, vcpu;
  };
  struct Device {
    uint32_t id;
    std::list<Ite> ites;
  };
  void Add(uint32_t d, uint32_t e, uint32_t intid, uint32_t vcpu) {
    for (Device& dev : devices_) {
      if (dev.id == d) {
        dev.ites.push_back({e, intid, vcpu});
        return;
      }
    }
    devices_.push_back({d, {{e, intid, vcpu}}});
  }
  bool Inject(LpiSink* sink, uint32_t d, uint32_t e) {
    hv::SpinLockHolder l(&lock_);
    for (const Device& dev : devices_) {
      if (dev.id != d) continue;
      for (const Ite& ite : dev.ites) {
        if (ite.event == e) {
          sink->SetPending(ite.vcpu, ite.intid);
          return true;
        }
      }
      return false;
    }
    return false;
  }

 private:
  hv::SpinLock lock_;
  std::list<Device> devices_;
};

double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// A random order over all 1024 × 32 (DeviceID, EventID) pairs.
const std::vector<uint32_t>& PairOrder() {
  static const std::vector<uint32_t> order = [] {
    std::vector<uint32_t> o(kDevices * kEvents);
    for (uint32_t k = 0; k < o.size(); ++k) o[k] = k;
    std::shuffle(o.begin(), o.end(), std::mt19937(1));
    return o;
  }();
  return order;
}

// Once per process (thread CPU ns, best of 5 batches): one bare fetch_or
// into a pending bitmap, and one seed-style list-walk MSI.
double BitSetNs() {
  static const double ns = [] {
    std::vector<std::atomic<uint64_t>> bitmap((1u << kLpiBits) / 64);
    double best = 1e9;
    for (int round = 0; round < 5; ++round) {
      constexpr int kBatch = 2'000'000;
      const double t0 = ThreadCpuNs();
      for (int i = 0; i < kBatch; ++i) {
        const uint32_t intid = IntidOf(i % kDevices, i % kEvents);
        bitmap[intid / 64].fetch_or(uint64_t{1} << (intid % 64));
      }
      best = std::min(best, (ThreadCpuNs() - t0) / kBatch);
    }
    benchmark::DoNotOptimize(bitmap.data());
    return best;
  }();
  return ns;
}

double ListWalkNs() {
  static const double ns = [] {
    FakeLpiSink sink(kVcpus, kLpiBits);
    LinearListIts its;
    for (uint32_t d = 0; d < kDevices; ++d) {
      for (uint32_t e = 0; e < kEvents; ++e) {
        its.Add(d, e, IntidOf(d, e), (d + e) % kVcpus);
      }
    }
    const auto& order = PairOrder();
    double best = 1e9;
    for (int round = 0; round < 5; ++round) {
      constexpr int kBatch = 20'000;
      const double t0 = ThreadCpuNs();
      for (int i = 0; i < kBatch; ++i) {
        const uint32_t k = order[(round * kBatch + i) % order.size()];
        benchmark::DoNotOptimize(its.Inject(&sink, k / kEvents, k % kEvents));
      }
      best = std::min(best, (ThreadCpuNs() - t0) / kBatch);
    }
    return best;
  }();
  return ns;
}

void ReportRatios(benchmark::State& state, double cpu_ns) {
  if (state.iterations() == 0) return;
  const double per = cpu_ns / state.iterations();
  state.counters["cpu_ns"] = per;
  state.counters["x_bitset"] = per / BitSetNs();
  state.counters["list_speedup"] = ListWalkNs() / per;
}

void BM_ItsBareAtomicBitSet(benchmark::State& state) {
  std::vector<std::atomic<uint64_t>> bitmap((1u << kLpiBits) / 64);
  uint32_t i = 0;
  LoopTimer timer;
  for (auto _ : state) {
    const uint32_t intid = IntidOf(i % kDevices, i % kEvents);
    bitmap[intid / 64].fetch_or(uint64_t{1} << (intid % 64));
    ++i;
  }
  timer.Report(state);
  benchmark::DoNotOptimize(bitmap.data());
}
BENCHMARK(BM_ItsBareAtomicBitSet);

void BM_ItsMsiCached(benchmark::State& state) {
  Setup s(state.range(0) != 0, 4096);
  BitSetNs();
  ListWalkNs();
  // A hot set of 16 (DeviceID, EventID) pairs: every lookup hits.
  for (int k = 0; k < 16; ++k) (void)s.h->its().InjectMsi(k * 37, k % kEvents);
  const uint64_t misses = s.h->its().cache_misses();
  uint32_t i = 0;
  LoopTimer timer;
  const double c0 = ThreadCpuNs();
  for (auto _ : state) {
    const uint32_t k = i++ % 16;
    benchmark::DoNotOptimize(s.h->its().InjectMsi(k * 37, k % kEvents));
  }
  const double c1 = ThreadCpuNs();
  timer.Report(state);
  ReportRatios(state, c1 - c0);
  if (s.h->its().cache_misses() != misses) state.SkipWithError("cache missed");
}
BENCHMARK(BM_ItsMsiCached)->Arg(0)->Arg(1);

void BM_ItsMsiUncached(benchmark::State& state) {
  Setup s(state.range(0) != 0, /*cache_slots=*/1);
  BitSetNs();
  ListWalkNs();
  const auto& order = PairOrder();
  uint32_t i = 0;
  const uint64_t hits = s.h->its().cache_hits();
  LoopTimer timer;
  const double c0 = ThreadCpuNs();
  for (auto _ : state) {
    const uint32_t k = order[i++ % order.size()];
    benchmark::DoNotOptimize(s.h->its().InjectMsi(k / kEvents, k % kEvents));
  }
  const double c1 = ThreadCpuNs();
  timer.Report(state);
  ReportRatios(state, c1 - c0);
  if (s.h->its().cache_hits() != hits) state.SkipWithError("cache hit");
}
BENCHMARK(BM_ItsMsiUncached)->Arg(0)->Arg(1);

void BM_ItsMsiLinearListSeed(benchmark::State& state) {
  FakeLpiSink sink(kVcpus, kLpiBits);
  LinearListIts its;
  for (uint32_t d = 0; d < kDevices; ++d) {
    for (uint32_t e = 0; e < kEvents; ++e) {
      its.Add(d, e, IntidOf(d, e), (d + e) % kVcpus);
    }
  }
  BitSetNs();
  ListWalkNs();
  const auto& order = PairOrder();
  uint32_t i = 0;
  LoopTimer timer;
  const double c0 = ThreadCpuNs();
  for (auto _ : state) {
    const uint32_t k = order[i++ % order.size()];
    benchmark::DoNotOptimize(its.Inject(&sink, k / kEvents, k % kEvents));
  }
  const double c1 = ThreadCpuNs();
  timer.Report(state);
  ReportRatios(state, c1 - c0);
}
BENCHMARK(BM_ItsMsiLinearListSeed);

void BM_ItsCommandsMaptiIntSync(benchmark::State& state) {
  FakeLpiSink sink(kVcpus, kLpiBits);
  ItsHarness h(&sink, ItsOptions{}, /*cmdq_pages=*/16);
  h.Enable();
  h.Send({cmd::Mapc(0, 0, true), cmd::Mapc(1, 1, true)});
  // One batch: re-MAPD device 1 (drops its ITEs), then 40 × MAPTI/INT/SYNC.
  std::vector<cmd::Raw> batch;
  batch.push_back(cmd::Mapd(1, 6, 0x600000, true));
  for (uint32_t e = 0; e < 40; ++e) {
    batch.push_back(cmd::Mapti(1, e, 8192 + e, e % 2));
    batch.push_back(cmd::Int(1, e));
    batch.push_back(cmd::Sync(e % 2));
  }
  LoopTimer timer;
  for (auto _ : state) h.Send(batch);
  timer.Report(state);
  state.SetItemsProcessed(state.iterations() * batch.size());
  if (h.its().GetErrorStats().total != 0) state.SkipWithError("command error");
}
BENCHMARK(BM_ItsCommandsMaptiIntSync);

}  // namespace
}  // namespace vgic
