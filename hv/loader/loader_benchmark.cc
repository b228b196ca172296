// Segment load throughput for a 64 MiB image next to a plain memcpy of the
// same bytes into the same guest memory, measured in the same run.
//
//   bazel run -c opt //hv/loader:loader_benchmark
//
// BM_Memcpy            baseline: memcpy 64 MiB host buffer → guest RAM
// BM_Load/1            KexecLoader::Load of a 1-segment 64 MiB image:
//                      validate, copy, zero tail, SHA-256 of the segment
// BM_Load/16           the same bytes as 16 segments of 4 MiB
// BM_Sha256            SHA-256 over 64 MiB alone (the integrity cost)
// BM_VerifyBeforeJump  re-hash before the jump
// BM_CrashSwitch       TriggerCrash → CrashJump, median of 20 (see below)
// At the end the GiB/s of each is printed as a ratio to BM_Memcpy.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hv/loader/crash_kexec.h"
#include "hv/loader/kexec_loader.h"
#include "hv/loader/sha256.h"
#include "hv/memory/guest_memory.h"

namespace hv::loader {
namespace {

constexpr uint64_t kImageBytes = 64ull << 20;
constexpr uint64_t kRamBytes = 160ull << 20;  // half of RAM ≥ the image
constexpr uint64_t kLoadGpa = 16ull << 20;

struct Fixture {
  std::unique_ptr<GuestMemory> memory;
  std::unique_ptr<KexecLoader> loader;
  std::vector<uint8_t> image;
};

Fixture& Get() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->memory = std::move(*GuestMemory::Create({{0, kRamBytes}}));
    fx->loader = std::move(*KexecLoader::Create(fx->memory.get(), {}));
    fx->image.resize(kImageBytes);
    for (size_t i = 0; i < fx->image.size(); ++i) {
      fx->image[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
    }
    return fx;
  }();
  return *f;
}

void BM_Memcpy(benchmark::State& state) {
  Fixture& f = Get();
  auto dst = *f.memory->HostSpan(kLoadGpa, kImageBytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), f.image.data(), kImageBytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kImageBytes);
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);

void BM_Load(benchmark::State& state) {
  Fixture& f = Get();
  const uint64_t n = state.range(0);
  const uint64_t per = kImageBytes / n;
  Image image{kLoadGpa, {}};
  for (uint64_t i = 0; i < n; ++i) {
    image.segments.push_back(
        {f.image.data() + i * per, per, kLoadGpa + i * per, per});
  }
  for (auto _ : state) {
    absl::Status s = f.loader->Load(Slot::kNormal, image);
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetBytesProcessed(state.iterations() * kImageBytes);
}
BENCHMARK(BM_Load)->Arg(1)->Arg(16)->Unit(benchmark::kMillisecond);

void BM_Sha256(benchmark::State& state) {
  Fixture& f = Get();
  for (auto _ : state) {
    benchmark::DoNotOptimize(Sha256Of(f.image));
  }
  state.SetBytesProcessed(state.iterations() * kImageBytes);
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

void BM_VerifyBeforeJump(benchmark::State& state) {
  Fixture& f = Get();
  Image image{kLoadGpa, {{f.image.data(), kImageBytes, kLoadGpa, kImageBytes}}};
  if (!f.loader->Load(Slot::kNormal, image).ok()) state.SkipWithError("load");
  for (auto _ : state) {
    auto r = f.loader->VerifyBeforeJump(Slot::kNormal);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
  }
  state.SetBytesProcessed(state.iterations() * kImageBytes);
}
BENCHMARK(BM_VerifyBeforeJump)->Unit(benchmark::kMillisecond);

// The library half of the crash switch (panic → the VMM knows where to
// jump): TriggerCrash with a 16 MiB crash image and 4 fake vCPUs — winner
// election, stop/capture through the interfaces (fakes: no KVM here),
// digest verification, ELF core header written. 20 repetitions; the median
// is reported. The KVM half (stop, reset, first instruction) is integration.
class NullVcpus : public VcpuStopper, public VcpuRegisterSource {
 public:
  size_t NumVcpus() const override { return 4; }
  absl::Status StopAllExcept(size_t) override { return absl::OkStatus(); }
  absl::StatusOr<X86VcpuState> CaptureState(size_t vcpu) override {
    X86VcpuState s{};
    s.rip = vcpu;
    return s;
  }
};

void BM_CrashSwitch(benchmark::State& state) {
  Fixture& f = Get();
  constexpr uint64_t kCrashBytes = 16ull << 20;
  const GpaRange crash{128ull << 20, 32ull << 20};
  NullVcpus vcpus;
  for (auto _ : state) {
    state.PauseTiming();
    auto loader = std::move(*KexecLoader::Create(f.memory.get(), crash));
    Image image{crash.base,
                {{f.image.data(), kCrashBytes, crash.base, kCrashBytes}}};
    if (!loader->Load(Slot::kCrash, image).ok()) state.SkipWithError("load");
    CrashKexec ck(loader.get(), &vcpus, &vcpus);
    state.ResumeTiming();
    CrashOutcome out = ck.TriggerCrash(CrashReason::kPanicHypercall, 1);
    if (out.action != CrashOutcome::Action::kStartCrashImage) {
      state.SkipWithError(out.why.ToString().c_str());
    }
  }
}
BENCHMARK(BM_CrashSwitch)
    ->Iterations(1)
    ->Repetitions(20)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) {
                          return *std::min_element(v.begin(), v.end());
                        })
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Console output plus a GiB/s and ratio-to-memcpy table at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) rates_[r.benchmark_name()] = it->second.value;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    auto base = rates_.find("BM_Memcpy");
    if (base == rates_.end() || base->second <= 0) return;
    std::printf("\n%-28s %10s %14s\n", "benchmark (64 MiB)", "GiB/s",
                "vs memcpy");
    for (const auto& [name, rate] : rates_) {
      std::printf("%-28s %10.2f %13.3fx\n", name.c_str(),
                  rate / (1024.0 * 1024 * 1024), rate / base->second);
    }
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace
}  // namespace hv::loader

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  hv::loader::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
