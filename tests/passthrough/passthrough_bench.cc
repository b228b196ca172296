// Forwarded-IRQ latency, hwsim fire → guest IRQ entry (guest TSC), on KVM
// (issue 8 benchmark). One VM running builtin:irq-latency (in-kernel LAPIC
// delivery); per sample the three paths are interleaved in the same run:
//   kvm_irqfd  the anchor: eventfd → KVM_IRQFD → MSI route → in-kernel LAPIC
//              (KVM's own path, no hv code at all);
//   mediated   hwsim vector → trigger eventfd → vfio core dispatcher thread →
//              forwarded handler → vGIC SPI (HW-forwarded) → GIC line →
//              KVM_SIGNAL_MSI: one userspace relay hop;
//   posted     hwsim vector with a posted entry: the firing thread sets the
//              LPI bit in vCPU 0's pending bitmap and writes the doorbell
//              eventfd, which is KVM_IRQFD-bound to the vCPU's GIC-line MSI
//              route: no hv thread on the path.
// The irq-latency guest has no ITS setup, so the benchmark installs the
// posted entry directly (VfioCore::SetPosted, the same data path a paired
// vector uses; pairing and ITS rewrites are covered by the tests).
//
// BM_SustainedThroughput: the `passthrough-guest` on one vCPU receives a
// PCI function's 8 vectors as LPIs (mediated or posted); the host keeps one
// interrupt outstanding per vector (fires vector v again as soon as the
// guest counted the previous one) for --seconds; reports delivered IRQs/s and
// checks zero loss (guest counts == hwsim fired, nothing coalesced).
//
//   bazel run -c opt //tests/passthrough:passthrough_bench -- --samples=N
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/guest/builtin_images.h"
#include "hv/guest/programs/irq_latency.h"
#include "hv/vmm/vmm.h"
#include "tests/passthrough/pt_guest_abi.h"
#include "tools/bench_vmm/irq_latency_driver.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/gicv3_forward.h"
#include "vfio/kvm_vfio.h"
#include "vfio/pci.h"
#include "vfio/vfio_core.h"

namespace {

int g_samples = 500;
double g_seconds = 2.0;

class NeverHandler : public vfio::IrqHandler {
 public:
  bool Handle(vfio::HostIrq, const vfio::IrqEvent&) override {
    ++calls;
    return true;
  }
  std::atomic<uint64_t> calls{0};
};

void BM_ForwardedIrqLatency(benchmark::State& state) {
  using hv::bench::IrqLatencyDriver;
  for (auto _ : state) {
    if (!hv::arch::KvmAvailable()) {
      state.SkipWithError("/dev/kvm is absent");
      return;
    }
    auto machine =
        std::move(hwsim::Machine::Create(hwsim::InventorySpec::Default()))
            .value();
    hwsim::Device* pci = machine->Find("0000:01:00.0");
    vfio::VfioCore core;
    if (!core.AddDevice(std::move(vfio::PciDevice::Probe(pci)).value()).ok() ||
        !core.Start().ok()) {
      state.SkipWithError("vfio core");
      return;
    }
    const hv::guest::BuiltinImage* img =
        hv::guest::FindBuiltinImage("irq-latency");
    hv::arch::VmConfig vc;
    vc.irq_delivery = hv::arch::IrqDelivery::kLapic;
    auto vm = hv::arch::KvmVm::Create(vc);
    if (!vm.ok()) {
      state.SkipWithError(vm.status().ToString().c_str());
      return;
    }
    hv::arch::KvmVm* kvm = vm->get();
    hv::VmmConfig c;
    c.image.assign(img->data, img->data + img->size);
    c.memory_mib = 16;
    c.console = [](char) {};
    auto vmm = hv::Vmm::Create(std::move(c), std::move(*vm));
    if (!vmm.ok() || !(*vmm)->Start().ok()) {
      state.SkipWithError("vmm");
      return;
    }
    auto anchor_fd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
    auto bell_fd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
    auto driver = IrqLatencyDriver::Create(vmm->get());
    auto region = vfio::Gicv3Forward::MapPending(*(*vmm)->gic());
    if (!anchor_fd.ok() || !bell_fd.ok() || !driver.ok() || !region.ok()) {
      state.SkipWithError("irqfd / driver / pending map");
      return;
    }
    // Mediated: vector 0 forwarded as the probe's SPI.
    vfio::Gicv3Forward arch(&core, (*vmm)->gic(), (*vmm)->its());
    vfio::KvmVfio kv(1, &core, &arch);
    if (!kv.Forward("0000:01:00.0", vfio::kVfioPciMsixIrqIndex, 0,
                    vfio::GuestIrq::Spi(IRQ_LAT_SPI))
             .ok()) {
      state.SkipWithError("forward");
      return;
    }
    // Posted: vector 1 with a posted entry (LPI 8192 of vCPU 0, doorbell).
    const vfio::HostIrq posted_irq =
        core.HostIrqFor("0000:01:00.0", vfio::kVfioPciMsixIrqIndex, 1).value();
    auto never = std::make_unique<NeverHandler>();
    NeverHandler* never_ptr = never.get();
    core.SetForwarded(posted_irq, std::move(never));
    if (!core.SetPosted(posted_irq, {*region, 0, 8192, *bell_fd}).ok()) {
      state.SkipWithError("posted entry");
      return;
    }
    const int afd = *anchor_fd;
    IrqLatencyDriver::RaiseFn by_irqfd = [afd]() -> absl::Status {
      const uint64_t one = 1;
      return write(afd, &one, 8) == 8 ? absl::OkStatus()
                                      : absl::InternalError("eventfd");
    };
    IrqLatencyDriver::RaiseFn by_mediated = [pci] {
      return pci->Fire(0).status();
    };
    IrqLatencyDriver::RaiseFn by_posted = [pci] {
      return pci->Fire(1).status();
    };
    std::vector<uint64_t> s_anchor, s_med, s_post;
    for (int i = 0; i < 3 * g_samples; ++i) {
      const int path = i % 3;
      auto s = (*driver)->Sample(path == 0   ? by_irqfd
                                 : path == 1 ? by_mediated
                                             : by_posted);
      if (!s.ok()) {
        state.SkipWithError(s.status().ToString().c_str());
        return;
      }
      (path == 0 ? s_anchor : path == 1 ? s_med : s_post).push_back(*s);
    }
    if (!(*driver)->Quit(by_irqfd).ok()) (*vmm)->Stop();
    (*vmm)->Wait();
    const auto a = hv::bench::ComputePercentiles(s_anchor, **driver);
    const auto m = hv::bench::ComputePercentiles(s_med, **driver);
    const auto p = hv::bench::ComputePercentiles(s_post, **driver);
    state.counters["anchor_irqfd_p50_us"] = a.p50;
    state.counters["anchor_irqfd_p99_us"] = a.p99;
    state.counters["mediated_p50_us"] = m.p50;
    state.counters["mediated_p99_us"] = m.p99;
    state.counters["posted_p50_us"] = p.p50;
    state.counters["posted_p99_us"] = p.p99;
    state.counters["mediated_ratio_p50"] = m.p50 / a.p50;
    state.counters["posted_ratio_p50"] = p.p50 / a.p50;
    state.counters["posted_ratio_p99"] = p.p99 / a.p99;
    const auto st = core.Status(posted_irq);
    state.counters["posted_host_handler_calls"] =
        static_cast<double>(never_ptr->calls.load());
    state.counters["posted_fired"] = static_cast<double>(st->fired);
    kv.Destroy();
    core.ClearPosted(posted_irq);
    core.SetHostOwned(posted_irq);
    core.Stop();
    close(afd);
    close(*bell_fd);
  }
}
BENCHMARK(BM_ForwardedIrqLatency)->Iterations(1)->Unit(benchmark::kMillisecond);

std::vector<uint8_t> ReadGuest() {
  const char* dirs[] = {std::getenv("RUNFILES_DIR"), std::getenv("TEST_SRCDIR"),
                        nullptr};
  for (const char* dir : dirs) {
    std::string path = dir ? std::string(dir) + "/hv/" : std::string();
    path += "tests/passthrough/passthrough-guest.elf";
    std::ifstream in(path, std::ios::binary);
    if (in.good()) {
      return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
    }
  }
  return {};
}

void BM_SustainedThroughput(benchmark::State& state) {
  const bool posted = state.range(0) == 1;
  state.SetLabel(posted ? "posted" : "mediated");
  for (auto _ : state) {
    if (!hv::arch::KvmAvailable()) {
      state.SkipWithError("/dev/kvm is absent");
      return;
    }
    auto machine =
        std::move(hwsim::Machine::Create(hwsim::InventorySpec::Default()))
            .value();
    hwsim::Device* pci = machine->Find("0000:01:00.0");
    hwsim::Device* plat = machine->Find("plat0");
    vfio::BypassManager bypass;
    vfio::VfioCore core(nullptr, posted ? &bypass : nullptr);
    if (!core.AddDevice(std::move(vfio::PciDevice::Probe(pci)).value()).ok() ||
        !core.Start().ok()) {
      state.SkipWithError("vfio core");
      return;
    }
    hv::arch::VmConfig vc;
    auto vm = hv::arch::KvmVm::Create(vc);
    if (!vm.ok()) {
      state.SkipWithError(vm.status().ToString().c_str());
      return;
    }
    hv::arch::KvmVm* kvm = vm->get();
    hv::VmmConfig c;
    c.image = ReadGuest();
    if (c.image.empty()) {
      state.SkipWithError("passthrough-guest.elf not found in runfiles");
      return;
    }
    c.memory_mib = 16;
    c.console = [](char) {};
    auto vmm_or = hv::Vmm::Create(std::move(c), std::move(*vm));
    if (!vmm_or.ok()) {
      state.SkipWithError("vmm");
      return;
    }
    hv::Vmm* vmm = vmm_or->get();
    hwsim::WindowMmio w0(machine.get(), pci), w1(machine.get(), plat);
    if (!vmm->mmio_bus().Register(PT_WINDOW_BASE, 0x1000, &w0, "pt0").ok() ||
        !vmm->mmio_bus()
             .Register(PT_WINDOW_BASE + PT_WINDOW_STRIDE, 0x1000, &w1, "pt1")
             .ok()) {
      state.SkipWithError("windows");
      return;
    }
    std::optional<vfio::Gicv3PostedConfig> pcfg;
    int bell = -1;
    if (posted) {
      auto fd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
      auto region = vfio::Gicv3Forward::MapPending(*vmm->gic());
      if (!fd.ok() || !region.ok()) {
        state.SkipWithError("doorbell / pending map");
        return;
      }
      bell = *fd;
      pcfg = vfio::Gicv3PostedConfig{
          &bypass, *region, [bell](uint32_t v) { return v == 0 ? bell : -1; }};
    }
    vfio::Gicv3Forward arch(&core, vmm->gic(), vmm->its(), pcfg);
    vfio::KvmVfio kv(1, &core, &arch);
    for (uint32_t v = 0; v < 8; ++v) {
      if (!kv.Forward("0000:01:00.0", vfio::kVfioPciMsixIrqIndex, v,
                      vfio::GuestIrq::Msi(pci->requester_id(), v))
               .ok()) {
        state.SkipWithError("forward");
        return;
      }
    }
    if (!vmm->Start().ok()) {
      state.SkipWithError("start");
      return;
    }
    auto mb = [&](size_t off) {
      return vmm->memory().AtomicLoad64(PT_MAILBOX + off).value_or(0);
    };
    auto count = [&](uint32_t v) {
      return mb(offsetof(pt_mailbox, msi_count) + 8 * v);
    };
    const auto t_ready = std::chrono::steady_clock::now();
    while ((mb(0) >> 32) != 1) {
      if (std::chrono::steady_clock::now() - t_ready >
          std::chrono::seconds(20)) {
        state.SkipWithError("guest not ready");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    uint64_t fired[8] = {};
    const auto t0 = std::chrono::steady_clock::now();
    const auto t_end = t0 + std::chrono::duration<double>(g_seconds);
    while (std::chrono::steady_clock::now() < t_end) {
      for (uint32_t v = 0; v < 8; ++v) {
        if (count(v) == fired[v]) {
          pci->Fire(v).IgnoreError();
          ++fired[v];
        }
      }
    }
    uint64_t total = 0, delivered = 0;
    for (uint32_t v = 0; v < 8; ++v) {
      while (count(v) != fired[v] && std::chrono::steady_clock::now() <
                                         t_end + std::chrono::seconds(5)) {
      }
      total += fired[v];
      delivered += count(v);
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    uint64_t coalesced = 0;
    for (uint32_t v = 0; v < 8; ++v) {
      coalesced +=
          core.Status(core.HostIrqFor("0000:01:00.0", 2, v).value())->coalesced;
    }
    state.counters["irqs_per_s"] = static_cast<double>(delivered) / secs;
    state.counters["fired"] = static_cast<double>(total);
    state.counters["lost"] = static_cast<double>(total - delivered);
    state.counters["coalesced"] = static_cast<double>(coalesced);
    if (!vmm->memory()
             .WriteObj<uint32_t>(PT_MAILBOX + offsetof(pt_mailbox, stop), 1)
             .ok() ||
        !vmm->gic()->PulseSpi(PT_WAKE_SPI).ok()) {
      vmm->Stop();
    }
    if (!vmm->WaitFor(std::chrono::seconds(10))) vmm->Stop();
    kv.Destroy();
    core.Stop();
    if (bell >= 0) close(bell);
  }
}
BENCHMARK(BM_SustainedThroughput)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--samples=", 10) == 0) {
      g_samples = std::max(10, std::atoi(argv[i] + 10));
    } else if (std::strncmp(argv[i], "--seconds=", 10) == 0) {
      g_seconds = std::max(0.1, std::atof(argv[i] + 10));
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
