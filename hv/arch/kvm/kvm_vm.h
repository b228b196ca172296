// KVM x86-64 backend of the arch layer (Documentation/virt/kvm/api.rst).
//
// One KvmVm per guest: the /dev/kvm system fd, the VM fd, guest RAM slots
// (KVM_SET_USER_MEMORY_REGION, one slot per GuestMemory region) and, for
// IrqDelivery::kLapic, the in-kernel irqchip (KVM_CREATE_IRQCHIP). The GIC
// line reaches a vCPU either by KVM_INTERRUPT from the vCPU thread (kInject)
// or by KVM_SIGNAL_MSI to the vCPU's LAPIC (kLapic); see kvm_vcpu.h.
//
// Locking: `mu_` guards the created-vCPU bitmap. All other state is set in
// Create() and immutable. KVM ioctls on the VM fd are thread-safe.
#ifndef HV_ARCH_KVM_KVM_VM_H_
#define HV_ARCH_KVM_KVM_VM_H_

#include <linux/kvm.h>

#include <memory>
#include <vector>

#include "hv/arch/arch.h"
#include "hv/base/locks.h"

namespace hv::arch {

class KvmVm : public Vm {
 public:
  // Unavailable when /dev/kvm is missing, Internal when KVM refuses.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KvmVm>> Create(
      const VmConfig& config);
  ~KvmVm() override;

  absl::Status MapMemory(GuestMemory& memory) override;
  absl::StatusOr<std::unique_ptr<Vcpu>> CreateVcpu(uint32_t index) override;
  uint32_t max_vcpus() const override { return max_vcpus_; }
  uint64_t tsc_khz() const override { return tsc_khz_; }
  const VmConfig& config() const override { return config_; }

  int vm_fd() const { return vm_fd_; }
  int kvm_fd() const { return kvm_fd_; }
  int run_size() const { return run_size_; }
  const std::vector<uint8_t>& cpuid() const { return cpuid_; }
  void set_tsc_khz(uint64_t khz) { tsc_khz_ = khz; }

  // Sends an MSI to vCPU `index`'s in-kernel LAPIC on `vector` (fixed,
  // edge, physical destination = APIC ID = index). kLapic mode only.
  [[nodiscard]] absl::Status SignalMsi(uint32_t index, uint8_t vector);

  // KVM's own in-kernel delivery path, the benchmark baseline: an eventfd
  // bound with KVM_IRQFD to a GSI whose route is an MSI to vCPU `index` on
  // `vector`. Returns the eventfd (caller owns it). kLapic mode only.
  [[nodiscard]] absl::StatusOr<int> CreateMsiIrqfd(uint32_t index,
                                                   uint8_t vector);

 private:
  KvmVm(const VmConfig& config) : config_(config) {}

  const VmConfig config_;
  int kvm_fd_ = -1;
  int vm_fd_ = -1;
  int run_size_ = 0;
  uint32_t max_vcpus_ = 0;
  uint64_t tsc_khz_ = 0;
  std::vector<uint8_t> cpuid_;  // struct kvm_cpuid2 + entries
  Mutex mu_;
  std::vector<bool> created_ ABSL_GUARDED_BY(mu_);
  std::vector<kvm_irq_routing_entry> routes_ ABSL_GUARDED_BY(mu_);
};

// Returns true when /dev/kvm exists (tests skip only when it does not).
bool KvmAvailable();

}  // namespace hv::arch

#endif  // HV_ARCH_KVM_KVM_VM_H_
