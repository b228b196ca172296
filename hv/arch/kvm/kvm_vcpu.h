// One KVM vCPU (x86-64) behind the arch::Vcpu interface.
//
// Kick: sets `kick_`, sets kvm_run.immediate_exit and sends kKickSignal to
// the thread inside Run(), so KVM_RUN returns EINTR whether the thread is
// about to enter, is inside, or is halted in the kernel (api.rst,
// "immediate_exit"). A no-op handler is installed for the signal once.
//
// HLT (kInject mode, no in-kernel irqchip): KVM exits with KVM_EXIT_HLT and
// Run() waits on `cv_` until the IRQ line is high or a kick arrives; the
// halted state persists across kicks so a pause never completes a HLT.
// In kLapic mode HLT stays in the kernel.
//
// GIC line: kInject — SetLevel stores the level; while high, Run() injects
// the vector with KVM_INTERRUPT once the guest can take it
// (ready_for_interrupt_injection), else requests an interrupt window; a
// rising edge kicks a running vCPU out of KVM_RUN (without returning
// kInterrupted to the caller) or wakes the halted one. kLapic — a rising
// edge sends KVM_SIGNAL_MSI to this vCPU's LAPIC; KVM wakes the vCPU.
//
// Locking: `mu_` guards the halt wait and the thread id used for kicks
// (leaf lock). `line_`, `kick_` and `irq_kick_` are atomics; kvm_run fields
// written by other threads (immediate_exit) use atomic stores.
#ifndef HV_ARCH_KVM_KVM_VCPU_H_
#define HV_ARCH_KVM_KVM_VCPU_H_

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <memory>

#include "hv/arch/arch.h"
#include "hv/arch/cond_var.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/base/locks.h"

namespace hv::arch {

class KvmVcpu : public Vcpu, private IrqLine {
 public:
  static absl::StatusOr<std::unique_ptr<Vcpu>> Create(KvmVm* vm,
                                                      uint32_t index);
  ~KvmVcpu() override;

  uint32_t index() const override { return index_; }
  absl::Status Reset(const BootState& state) override;
  absl::StatusOr<VcpuExit> Run() override;
  absl::Status CompleteRead(uint64_t value) override;
  absl::Status CompleteHypercall(uint64_t result) override;
  void Kick() override;
  IrqLine& irq_line() override { return *this; }
  absl::StatusOr<CpuRegisters> GetRegisters() override;  // kvm_vcpu_regs.cc

  // Guest TSC = host TSC + offset (KVM_VCPU_TSC_CTRL/KVM_VCPU_TSC_OFFSET,
  // devices/vcpu.rst), read on the vCPU thread at Reset() and cached: a vCPU
  // ioctl from another thread would block while the vCPU runs. For host-side
  // timestamps in guest time (the latency benchmark).
  [[nodiscard]] absl::StatusOr<int64_t> GuestTscOffset() const;

  // Counters (for tests and the benchmark).
  uint64_t injections() const { return injections_.load(); }

 private:
  KvmVcpu(KvmVm* vm, uint32_t index) : vm_(vm), index_(index) {}
  void SetLevel(bool high) override;
  void SignalThread();  // EINTR the vCPU thread out of KVM_RUN
  void ReadTscOffset();
  absl::Status PrepareInjection();

  KvmVm* const vm_;
  const uint32_t index_;
  int fd_ = -1;
  kvm_run* run_ = nullptr;

  enum class Pending { kNone, kPioIn, kMmioRead, kHypercall };
  Pending pending_ = Pending::kNone;                 // vCPU thread only
  kvm_regs hypercall_regs_{};                        // vCPU thread only
  std::unique_ptr<kvm_lapic_state> pristine_lapic_;  // kLapic; immutable

  std::atomic<bool> line_{false};
  std::atomic<bool> kick_{false};
  std::atomic<bool> in_halt_wait_{false};
  std::atomic<uint64_t> injections_{0};
  std::atomic<int64_t> tsc_offset_{0};
  std::atomic<bool> tsc_offset_known_{false};

  Mutex mu_;
  CondVar cv_;
  bool halted_ ABSL_GUARDED_BY(mu_) = false;
  bool has_thread_ ABSL_GUARDED_BY(mu_) = false;
  pthread_t thread_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace hv::arch

#endif  // HV_ARCH_KVM_KVM_VCPU_H_
