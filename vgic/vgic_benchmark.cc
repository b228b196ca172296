// vgic benchmarks (Google Benchmark; run `bazel run -c opt
// //vgic:vgic_benchmark`). Every benchmark reports `x_atomic`: its time per
// iteration relative to a bare atomic bit set + clear measured in the same
// process (bench_baseline.h). The ITS benchmarks are added to this binary.
#include <atomic>
#include <memory>
#include <mutex>

#include "benchmark/benchmark.h"
#include "hv/memory/guest_memory.h"
#include "vgic/bench_baseline.h"
#include "vgic/regs.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

constexpr uint32_t kBenchVcpus = 8;
constexpr uint64_t kPropPa = 0x100000;
constexpr uint64_t kPendPa = 0x200000;

// One VM-sized vGIC shared by all benchmark threads, set up as a guest
// would: distributor and CPU interfaces enabled, LPIs enabled everywhere,
// SPI 40 level-triggered, SPI 41 edge-triggered, LPIs 8192.. enabled.
struct Env {
  std::unique_ptr<hv::GuestMemory> mem;
  std::unique_ptr<Vgic> gic;
  std::atomic<uint64_t> line_events{0};
};

Env& GetEnv() {
  static Env* env = [] {
    auto* e = new Env;
    e->mem = std::move(*hv::GuestMemory::Create({{0, 0x400000}}));
    VgicConfig c;
    c.num_vcpus = kBenchVcpus;
    c.num_spis = 64;
    c.memory = e->mem.get();
    c.irq_line = [e](uint32_t, bool) {
      e->line_events.fetch_add(1, std::memory_order_relaxed);
    };
    e->gic = std::move(*Vgic::Create(c));
    Vgic& g = *e->gic;
    hv::MmioDevice& d = g.distributor();
    hv::MmioDevice& r = g.redistributors();
    const hv::MmioContext ctx{0, 0};
    auto must = [](absl::Status s) {
      if (!s.ok()) abort();
    };
    must(d.Write(ctx, static_cast<uint64_t>(GicdReg::kCtlr), 4,
                 kGicdCtlrEnableGrp1));
    for (uint32_t i = 0; i < 256; ++i) {
      must(e->mem->WriteObj<uint8_t>(kPropPa + i, 0xa1));
    }
    for (uint32_t v = 0; v < kBenchVcpus; ++v) {
      must(g.WriteIcc(v, IccReg::kPmr, 0xff));
      must(g.WriteIcc(v, IccReg::kIgrpen1, 1));
      const uint64_t rd = v * kRedistributorStride;
      must(r.Write(ctx, rd + static_cast<uint64_t>(GicrReg::kPropbaser), 8,
                   kPropPa | 15));
      must(r.Write(ctx, rd + static_cast<uint64_t>(GicrReg::kPendbaser), 8,
                   (kPendPa + v * 0x10000) | kPendbaserPtz));
      must(r.Write(ctx, rd + static_cast<uint64_t>(GicrReg::kCtlr), 4,
                   kGicrCtlrEnableLpis));
    }
    must(d.Write(ctx, static_cast<uint64_t>(GicdReg::kIpriorityr) + 40, 4,
                 0x80808080));
    must(d.Write(ctx, static_cast<uint64_t>(GicdReg::kIcfgr) + 8, 4,
                 2u << (2 * 9)));  // SPI 41 edge
    must(d.Write(ctx, static_cast<uint64_t>(GicdReg::kIsenabler) + 4, 4,
                 0xffffffff));
    return e;
  }();
  return *env;
}

// Baseline: a bare atomic bit set and clear (what a posted-interrupt
// producer and the acknowledge path do at minimum).
void BM_AtomicBitSetClear(benchmark::State& state) {
  LoopTimer timer;
  std::atomic<uint64_t> word{0};
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t bit = uint64_t{1} << (i++ & 63);
    word.fetch_or(bit);
    word.fetch_and(~bit);
  }
  benchmark::DoNotOptimize(word.load());
  timer.Report(state);
}
BENCHMARK(BM_AtomicBitSetClear);

// LPI round trip on the thread's own vCPU: SetPending (ITS side), IAR1 read
// and EOIR1 write through the MMIO CPU-interface frame (guest side).
void BM_LpiPendAckEoi(benchmark::State& state) {
  Env& env = GetEnv();
  Vgic& g = *env.gic;
  const uint32_t v = static_cast<uint32_t>(state.thread_index());
  const uint32_t lpi = kFirstLpi + v;
  const hv::MmioContext ctx{v, 0};
  hv::MmioDevice& cpu = g.cpu_interface();
  LoopTimer timer;
  for (auto _ : state) {
    g.SetPending(v, lpi);
    uint64_t id = 0;
    (void)cpu.Read(ctx, static_cast<uint64_t>(IccReg::kIar1), 8, &id);
    if (id != lpi) {
      state.SkipWithError("acknowledged the wrong INTID");
      break;
    }
    (void)cpu.Write(ctx, static_cast<uint64_t>(IccReg::kEoir1), 8, id);
  }
  timer.Report(state);
}
BENCHMARK(BM_LpiPendAckEoi)->ThreadRange(1, 4)->UseRealTime();

// Edge SPI round trip: PulseSpi, IAR1, EOIR1 (vCPU 0).
void BM_SpiPulseAckEoi(benchmark::State& state) {
  Env& env = GetEnv();
  Vgic& g = *env.gic;
  const hv::MmioContext ctx{0, 0};
  hv::MmioDevice& cpu = g.cpu_interface();
  LoopTimer timer;
  for (auto _ : state) {
    (void)g.PulseSpi(41);
    uint64_t id = 0;
    (void)cpu.Read(ctx, static_cast<uint64_t>(IccReg::kIar1), 8, &id);
    if (id != 41) {
      state.SkipWithError("acknowledged the wrong INTID");
      break;
    }
    (void)cpu.Write(ctx, static_cast<uint64_t>(IccReg::kEoir1), 8, id);
  }
  timer.Report(state);
}
BENCHMARK(BM_SpiPulseAckEoi);

// Level SPI toggle: assert + deassert; each edge of the level moves the
// target vCPU's IRQ line (two line callbacks per iteration).
void BM_SpiLevelToggle(benchmark::State& state) {
  Env& env = GetEnv();
  Vgic& g = *env.gic;
  const uint64_t before = env.line_events.load();
  LoopTimer timer;
  for (auto _ : state) {
    (void)g.SetSpiLevel(40, true);
    (void)g.SetSpiLevel(40, false);
  }
  timer.Report(state);
  state.counters["line_events_per_iter"] =
      static_cast<double>(env.line_events.load() - before) /
      static_cast<double>(state.iterations());
}
BENCHMARK(BM_SpiLevelToggle);

// A plain distributor register read through the MMIO frame (dispatch cost).
void BM_GicdTyperRead(benchmark::State& state) {
  Env& env = GetEnv();
  hv::MmioDevice& d = env.gic->distributor();
  LoopTimer timer;
  for (auto _ : state) {
    uint64_t v = 0;
    (void)d.Read({0, 0}, static_cast<uint64_t>(GicdReg::kTyper), 4, &v);
    benchmark::DoNotOptimize(v);
  }
  timer.Report(state);
}
BENCHMARK(BM_GicdTyperRead);

}  // namespace
}  // namespace vgic
