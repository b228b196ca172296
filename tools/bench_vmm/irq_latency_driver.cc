#include "tools/bench_vmm/irq_latency_driver.h"

#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <thread>

#include "absl/strings/str_format.h"
#include "hv/arch/kvm/kvm_vcpu.h"
#include "hv/base/status_macros.h"
#include "hv/guest/programs/irq_latency.h"

namespace hv::bench {
namespace {

constexpr uint64_t Field(size_t offset) { return IRQ_LAT_MAILBOX + offset; }
constexpr auto kTimeout = std::chrono::seconds(5);
// Time for the vCPU to get from publishing ready_seq into HLT.
constexpr auto kSettle = std::chrono::microseconds(100);

}  // namespace

absl::StatusOr<std::unique_ptr<IrqLatencyDriver>> IrqLatencyDriver::Create(
    Vmm* vmm) {
  auto* kvm_vcpu = dynamic_cast<arch::KvmVcpu*>(&vmm->vcpu(0));
  if (kvm_vcpu == nullptr) {
    return absl::FailedPreconditionError("irq-latency needs the KVM backend");
  }
  const uint64_t khz = vmm->vm().tsc_khz();
  if (khz == 0) return absl::FailedPreconditionError("unknown TSC frequency");
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  for (;;) {
    HV_ASSIGN_OR_RETURN(
        uint64_t magic,
        vmm->memory().AtomicLoad64(Field(offsetof(irq_lat_mailbox, magic))));
    if (magic == IRQ_LAT_MAGIC) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError("irq-latency guest did not arm");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  HV_ASSIGN_OR_RETURN(int64_t offset, kvm_vcpu->GuestTscOffset());
  return std::unique_ptr<IrqLatencyDriver>(
      new IrqLatencyDriver(vmm, offset, khz));
}

absl::Status IrqLatencyDriver::WaitFor(uint64_t gpa, uint64_t value) {
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  for (;;) {
    HV_ASSIGN_OR_RETURN(uint64_t v, vmm_->memory().AtomicLoad64(gpa));
    if (v == value) return absl::OkStatus();
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "irq-latency: mailbox 0x%x is %u, waited for %u", gpa, v, value));
    }
    _mm_pause();
  }
}

absl::StatusOr<uint64_t> IrqLatencyDriver::Sample(const RaiseFn& raise) {
  return SampleImpl(raise, /*quit=*/false);
}

absl::StatusOr<uint64_t> IrqLatencyDriver::SampleImpl(const RaiseFn& raise,
                                                      bool quit) {
  const uint64_t seq = seq_++;
  HV_RETURN_IF_ERROR(WaitFor(Field(offsetof(irq_lat_mailbox, ready_seq)), seq));
  // Only now: the guest reads `quit` after the interrupt of the sample it
  // is armed for, so setting it earlier could end the previous sample's loop.
  if (quit) {
    HV_RETURN_IF_ERROR(vmm_->memory().WriteObj<uint64_t>(
        Field(offsetof(irq_lat_mailbox, quit)), 1));
  }
  std::this_thread::sleep_for(kSettle);
  const uint64_t raise_tsc =
      static_cast<uint64_t>(static_cast<int64_t>(__rdtsc()) + tsc_offset_);
  HV_RETURN_IF_ERROR(vmm_->memory().WriteObj<uint64_t>(
      Field(offsetof(irq_lat_mailbox, raise_tsc)), raise_tsc));
  std::atomic_thread_fence(std::memory_order_seq_cst);
  HV_RETURN_IF_ERROR(raise());
  HV_RETURN_IF_ERROR(
      WaitFor(Field(offsetof(irq_lat_mailbox, done_seq)), seq + 1));
  return vmm_->memory().ReadObj<uint64_t>(
      Field(offsetof(irq_lat_mailbox, samples)) +
      8 * (seq % IRQ_LAT_MAX_SAMPLES));
}

absl::Status IrqLatencyDriver::Quit(const RaiseFn& raise) {
  return SampleImpl(raise, /*quit=*/true).status();
}

Percentiles ComputePercentiles(std::vector<uint64_t> samples,
                               const IrqLatencyDriver& driver) {
  Percentiles p;
  if (samples.empty()) return p;
  std::sort(samples.begin(), samples.end());
  p.p50 = driver.TicksToUs(samples[samples.size() / 2]);
  p.p99 = driver.TicksToUs(samples[samples.size() * 99 / 100]);
  return p;
}

}  // namespace hv::bench
