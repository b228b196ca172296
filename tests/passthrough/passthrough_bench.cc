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
//   bazel run -c opt //tests/passthrough:passthrough_bench -- --samples=N
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/guest/builtin_images.h"
#include "hv/guest/programs/irq_latency.h"
#include "hv/vmm/vmm.h"
#include "tools/bench_vmm/irq_latency_driver.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/gicv3_forward.h"
#include "vfio/kvm_vfio.h"
#include "vfio/pci.h"
#include "vfio/vfio_core.h"

namespace {

int g_samples = 500;

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

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--samples=", 10) == 0) {
      g_samples = std::max(10, std::atoi(argv[i] + 10));
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
