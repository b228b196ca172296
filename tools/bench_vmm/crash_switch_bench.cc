// BM_CrashSwitch (issue 5, docs/kexec.md): crash switch time on KVM, from
// the guest's panic (TSC read right before HV_CALL_PANIC, stored in the
// kdump mailbox) to the crash image's first instruction (TSC read by the
// first instructions of kdump's _start), both in guest TSC ticks converted
// with the platform's tsc_khz; builtin:panic on 2 vCPUs with builtin:kdump
// in a 16 MiB crash region, 20 VMs. Includes: the hypercall exit, stopping
// the other vCPU, register capture, re-hashing the crash image (SHA-256),
// writing the ELF core header, the restart through the Wait() thread and
// the vCPU reset.
// Baseline in the same run: a fresh VM's boot (Vmm::Create + Start →
// first console byte of builtin:hello, in-process, 20 runs).
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "benchmark/benchmark.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/base/locks.h"
#include "hv/guest/builtin_images.h"
#include "hv/vmm/vmm.h"

namespace {

constexpr int kRuns = 20;

class Sink {
 public:
  void Put(char c) {
    hv::MutexLock lock(&mu_);
    if (text_.empty()) first_ = std::chrono::steady_clock::now();
    text_.push_back(c);
  }
  std::string text() {
    hv::MutexLock lock(&mu_);
    return text_;
  }
  std::chrono::steady_clock::time_point first() {
    hv::MutexLock lock(&mu_);
    return first_;
  }

 private:
  hv::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point first_ ABSL_GUARDED_BY(mu_);
};

std::vector<uint8_t> Builtin(const char* name) {
  const hv::guest::BuiltinImage* img = hv::guest::FindBuiltinImage(name);
  return std::vector<uint8_t>(img->data, img->data + img->size);
}

std::unique_ptr<hv::Vmm> MakeVmm(const char* image, bool crash, uint32_t vcpus,
                                 Sink* sink) {
  auto vm = hv::arch::KvmVm::Create(hv::arch::VmConfig{});
  if (!vm.ok()) return nullptr;
  hv::VmmConfig c;
  c.image = Builtin(image);
  c.vcpus = vcpus;
  c.memory_mib = 64;
  if (crash) {
    c.crash_image = Builtin("kdump");
    c.crash_mib = 16;
  }
  c.console = [sink](char ch) { sink->Put(ch); };
  auto vmm = hv::Vmm::Create(std::move(c), std::move(*vm));
  return vmm.ok() ? std::move(*vmm) : nullptr;
}

// switch_ns from kdump's console line, or -1.
double CrashSwitchOnce() {
  Sink sink;
  auto vmm = MakeVmm("panic", true, 2, &sink);
  if (vmm == nullptr || !vmm->Start().ok()) return -1;
  auto exit = vmm->WaitFor(std::chrono::seconds(60));
  if (!exit) return -1;
  const std::string text = sink.text();
  const size_t at = text.find("switch_ns=");
  if (at == std::string::npos) return -1;
  const size_t end = text.find('\n', at);
  uint64_t ns = 0;
  if (!absl::SimpleAtoi(text.substr(at + 10, end - at - 10), &ns)) return -1;
  return ns / 1e6;
}

double BootOnce() {
  Sink sink;
  const auto t0 = std::chrono::steady_clock::now();
  auto vmm = MakeVmm("hello", false, 1, &sink);
  if (vmm == nullptr || !vmm->Start().ok()) return -1;
  auto exit = vmm->WaitFor(std::chrono::seconds(60));
  if (!exit) return -1;
  return std::chrono::duration<double, std::milli>(sink.first() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void BM_CrashSwitch(benchmark::State& state) {
  if (!hv::arch::KvmAvailable()) {
    state.SkipWithError("/dev/kvm is absent");
    return;
  }
  for (auto _ : state) {
    std::vector<double> sw, boot;
    for (int i = 0; i < kRuns; ++i) {
      const double ms = CrashSwitchOnce();
      const double b = BootOnce();
      if (ms < 0 || b < 0) {
        state.SkipWithError("a run failed");
        return;
      }
      sw.push_back(ms);
      boot.push_back(b);
    }
    state.counters["switch_median_ms"] = Median(sw);
    state.counters["switch_min_ms"] = *std::min_element(sw.begin(), sw.end());
    state.counters["switch_max_ms"] = *std::max_element(sw.begin(), sw.end());
    state.counters["boot_median_ms"] = Median(boot);
    state.counters["switch_vs_boot"] = Median(sw) / Median(boot);
  }
}
BENCHMARK(BM_CrashSwitch)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
