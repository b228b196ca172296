// Host side of the irq-latency probe (protocol: hv/guest/programs/
// irq_latency.h). Drives a Vmm running builtin:irq-latency on KVM: for each
// sample it waits for the guest to halt, stamps the raise time in guest TSC
// units (host TSC + KVM's TSC offset for vCPU 0) and raises the interrupt
// with a caller-supplied function, then collects the guest's measurement.
// Used by the benchmark and the KVM integration test.
#ifndef TOOLS_BENCH_VMM_IRQ_LATENCY_DRIVER_H_
#define TOOLS_BENCH_VMM_IRQ_LATENCY_DRIVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "hv/vmm/vmm.h"

namespace hv::bench {

class IrqLatencyDriver {
 public:
  using RaiseFn = std::function<absl::Status()>;

  // `vmm` has been started with the irq-latency image. Waits for the guest
  // to arm itself.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IrqLatencyDriver>> Create(
      Vmm* vmm);

  // One sample: guest-measured ticks from the raise to the IRQ entry.
  [[nodiscard]] absl::StatusOr<uint64_t> Sample(const RaiseFn& raise);
  // Tells the guest to power off after one more interrupt raised by `raise`.
  [[nodiscard]] absl::Status Quit(const RaiseFn& raise);

  uint64_t tsc_khz() const { return tsc_khz_; }
  double TicksToUs(uint64_t ticks) const {
    return static_cast<double>(ticks) * 1000.0 / static_cast<double>(tsc_khz_);
  }

 private:
  IrqLatencyDriver(Vmm* vmm, int64_t offset, uint64_t khz)
      : vmm_(vmm), tsc_offset_(offset), tsc_khz_(khz) {}
  absl::Status WaitFor(uint64_t field_gpa, uint64_t value);
  absl::StatusOr<uint64_t> SampleImpl(const RaiseFn& raise, bool quit);

  Vmm* const vmm_;
  const int64_t tsc_offset_;
  const uint64_t tsc_khz_;
  uint64_t seq_ = 0;
};

struct Percentiles {
  double p50 = 0;
  double p99 = 0;
};
// Percentiles of `samples` in microseconds.
Percentiles ComputePercentiles(std::vector<uint64_t> samples,
                               const IrqLatencyDriver& driver);

}  // namespace hv::bench

#endif  // TOOLS_BENCH_VMM_IRQ_LATENCY_DRIVER_H_
