// hv-vmm benchmarks (Google Benchmark; each runs once and reports counters):
//
// BM_BootToFirstConsoleByte: process start (posix_spawn of hv-vmm
//   --image=builtin:hello) → first console byte on its stdout; median and
//   max of 20 runs, in ms.
// BM_IrqLatency: vGIC line raise → guest IRQ handler entry, measured in the
//   guest with the TSC (builtin:irq-latency), p50/p99 in µs, for
//     kvm_irqfd   KVM's in-kernel path: eventfd → KVM_IRQFD → MSI route →
//                 in-kernel LAPIC (the baseline, same guest handler),
//     gic_lapic   vGIC SPI → line callback → KVM_SIGNAL_MSI → in-kernel LAPIC,
//     gic_inject  vGIC SPI → line callback → vCPU thread → KVM_INTERRUPT,
//   the first two interleaved sample by sample in one VM, the third in a VM
//   without in-kernel irqchip, all in the same run; ratios are against
//   kvm_irqfd.
//
// Flags: --hv_vmm=PATH (default: hv/vmm/hv-vmm in the runfiles),
//        --irq_samples=N (default 2000), plus Google Benchmark's.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/guest/builtin_images.h"
#include "hv/guest/programs/irq_latency.h"
#include "hv/vmm/vmm.h"
#include "tools/bench_vmm/irq_latency_driver.h"

extern char** environ;

namespace {

std::string g_hv_vmm = "hv/vmm/hv-vmm";
int g_irq_samples = 2000;

// Returns ms from spawn to the first stdout byte, or -1.
double BootOnce() {
  int p[2];
  if (pipe(p) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  std::string a0 = g_hv_vmm, a1 = "--image=builtin:hello";
  char* argv[] = {a0.data(), a1.data(), nullptr};
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    return -1;
  }
  char c;
  double ms = -1;
  if (read(p[0], &c, 1) == 1) {
    ms = std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t0)
             .count();
  }
  char buf[4096];
  while (read(p[0], buf, sizeof(buf)) > 0) {
  }
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return ms;
}

void BM_BootToFirstConsoleByte(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<double> runs;
    for (int i = 0; i < 20; ++i) {
      const double ms = BootOnce();
      if (ms < 0) {
        state.SkipWithError(("hv-vmm failed: " + g_hv_vmm).c_str());
        return;
      }
      runs.push_back(ms);
    }
    std::sort(runs.begin(), runs.end());
    state.counters["median_ms"] = (runs[9] + runs[10]) / 2;
    state.counters["min_ms"] = runs.front();
    state.counters["max_ms"] = runs.back();
  }
}
BENCHMARK(BM_BootToFirstConsoleByte)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

std::unique_ptr<hv::Vmm> StartLatencyVm(hv::arch::IrqDelivery mode,
                                        std::string* error) {
  const hv::guest::BuiltinImage* img =
      hv::guest::FindBuiltinImage("irq-latency");
  hv::arch::VmConfig vc;
  vc.irq_delivery = mode;
  auto vm = hv::arch::KvmVm::Create(vc);
  if (!vm.ok()) {
    *error = vm.status().ToString();
    return nullptr;
  }
  hv::VmmConfig c;
  c.image.assign(img->data, img->data + img->size);
  c.vcpus = 1;
  c.memory_mib = 16;
  c.console = [](char) {};
  auto vmm = hv::Vmm::Create(std::move(c), std::move(*vm));
  if (!vmm.ok()) {
    *error = vmm.status().ToString();
    return nullptr;
  }
  if (auto s = (*vmm)->Start(); !s.ok()) {
    *error = s.ToString();
    return nullptr;
  }
  return std::move(*vmm);
}

void BM_IrqLatency(benchmark::State& state) {
  using hv::arch::IrqDelivery;
  using hv::bench::IrqLatencyDriver;
  for (auto _ : state) {
    std::string error;
    std::vector<uint64_t> irqfd, gic_lapic, gic_inject;
    double tsc_khz = 0;
    // VM 1: in-kernel LAPIC; KVM irqfd baseline and vGIC path interleaved.
    {
      auto vmm = StartLatencyVm(IrqDelivery::kLapic, &error);
      if (!vmm) {
        state.SkipWithError(error.c_str());
        return;
      }
      auto* kvm = dynamic_cast<hv::arch::KvmVm*>(&vmm->vm());
      auto efd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
      auto driver = IrqLatencyDriver::Create(vmm.get());
      if (!efd.ok() || !driver.ok()) {
        state.SkipWithError(!efd.ok() ? efd.status().ToString().c_str()
                                      : driver.status().ToString().c_str());
        return;
      }
      tsc_khz = (*driver)->tsc_khz();
      const int fd = *efd;
      IrqLatencyDriver::RaiseFn by_irqfd = [fd]() -> absl::Status {
        const uint64_t one = 1;
        if (write(fd, &one, sizeof(one)) != sizeof(one)) {
          return absl::InternalError("eventfd write");
        }
        return absl::OkStatus();
      };
      IrqLatencyDriver::RaiseFn by_gic = [&]() -> absl::Status {
        return vmm->gic()->PulseSpi(IRQ_LAT_SPI).status();
      };
      for (int i = 0; i < 2 * g_irq_samples; ++i) {
        const bool gic = i % 2 == 1;
        auto s = (*driver)->Sample(gic ? by_gic : by_irqfd);
        if (!s.ok()) {
          state.SkipWithError(s.status().ToString().c_str());
          return;
        }
        (gic ? gic_lapic : irqfd).push_back(*s);
      }
      if (!(*driver)->Quit(by_gic).ok()) vmm->Stop();
      vmm->Wait();
      close(fd);
    }
    // VM 2: userspace irqchip, KVM_INTERRUPT from the vCPU thread.
    {
      auto vmm = StartLatencyVm(IrqDelivery::kInject, &error);
      if (!vmm) {
        state.SkipWithError(error.c_str());
        return;
      }
      auto driver = IrqLatencyDriver::Create(vmm.get());
      if (!driver.ok()) {
        state.SkipWithError(driver.status().ToString().c_str());
        return;
      }
      IrqLatencyDriver::RaiseFn by_gic = [&]() -> absl::Status {
        return vmm->gic()->PulseSpi(IRQ_LAT_SPI).status();
      };
      for (int i = 0; i < g_irq_samples; ++i) {
        auto s = (*driver)->Sample(by_gic);
        if (!s.ok()) {
          state.SkipWithError(s.status().ToString().c_str());
          return;
        }
        gic_inject.push_back(*s);
      }
      if (!(*driver)->Quit(by_gic).ok()) vmm->Stop();
      vmm->Wait();
    }
    auto pct = [&](std::vector<uint64_t> v) {
      std::sort(v.begin(), v.end());
      auto us = [&](uint64_t t) { return t * 1000.0 / tsc_khz; };
      return std::make_pair(us(v[v.size() / 2]), us(v[v.size() * 99 / 100]));
    };
    const auto base = pct(irqfd), lapic = pct(gic_lapic), inj = pct(gic_inject);
    state.counters["kvm_irqfd_p50_us"] = base.first;
    state.counters["kvm_irqfd_p99_us"] = base.second;
    state.counters["gic_lapic_p50_us"] = lapic.first;
    state.counters["gic_lapic_p99_us"] = lapic.second;
    state.counters["gic_inject_p50_us"] = inj.first;
    state.counters["gic_inject_p99_us"] = inj.second;
    state.counters["gic_lapic_ratio_p50"] = lapic.first / base.first;
    state.counters["gic_inject_ratio_p50"] = inj.first / base.first;
    state.counters["gic_lapic_ratio_p99"] = lapic.second / base.second;
    state.counters["gic_inject_ratio_p99"] = inj.second / base.second;
    state.counters["samples_per_path"] = g_irq_samples;
  }
}
BENCHMARK(BM_IrqLatency)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--hv_vmm=", 0) == 0) {
      g_hv_vmm = a.substr(9);
    } else if (a.rfind("--irq_samples=", 0) == 0) {
      g_irq_samples = std::max(10, std::atoi(a.c_str() + 14));
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (!hv::arch::KvmAvailable()) {
    std::fprintf(stderr, "bench_vmm: /dev/kvm is absent\n");
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
