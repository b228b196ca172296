// What crash_kexec needs from the VMM, as two small interfaces the hypervisor
// core (hv/vm, arch/kvm_x86) implements. Kept here so the loader builds and
// is tested without KVM; tests use fakes.
#ifndef HV_LOADER_VCPU_CONTROL_H_
#define HV_LOADER_VCPU_CONTROL_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/loader/vcpu_state.h"

namespace hv::loader {

// Stops vCPUs for the crash switch (the crash_smp_send_stop() analogue).
class VcpuStopper {
 public:
  virtual ~VcpuStopper() = default;
  virtual size_t NumVcpus() const = 0;
  // Stops every vCPU except `keep`. Returns once each of them has left guest
  // mode and will not re-enter it until the VMM restarts it, so its state can
  // be read from the calling thread. Called from `keep`'s thread. Must not
  // block on locks the loader holds (it holds none while calling out).
  [[nodiscard]] virtual absl::Status StopAllExcept(size_t keep) = 0;
};

// Reads a vCPU's architectural state (KVM_GET_REGS + KVM_GET_SREGS). Called
// only for `keep` (its own thread) or for vCPUs StopAllExcept() stopped.
class VcpuRegisterSource {
 public:
  virtual ~VcpuRegisterSource() = default;
  [[nodiscard]] virtual absl::StatusOr<X86VcpuState> CaptureState(
      size_t vcpu) = 0;
};

}  // namespace hv::loader

#endif  // HV_LOADER_VCPU_CONTROL_H_
