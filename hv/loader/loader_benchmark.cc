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
// At the end the GiB/s of each is printed as a ratio to BM_Memcpy.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
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
