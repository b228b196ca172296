// kvm-vfio (DESIGN §3, third layer): the per-VM registry of forwarded IRQs.
//
//   Forward(device, index, subindex, guest_irq): decodes the VFIO
//     (index, subindex) to a host IRQ (vfio-isms stop here), registers it —
//     the device reference is taken *inside* registration — and calls the
//     arch set_forward(on). Errors, leaving no state behind:
//       NotFound            unknown device
//       InvalidArgument     bad index/subindex, or a duplicate: the host IRQ
//                           or the guest IRQ is already forwarded in this VM
//       FailedPrecondition  the device is owned by another VM
//       (arch errors)       the guest IRQ is not acceptable to the VM
//   Unforward(device, index, subindex): void; set_forward(off), then the
//     reference is dropped *inside* unregistration. Unknown IRQs are ignored
//     (counted in unknown_unforwards()).
//   Destroy(): unforwards everything, whatever state the VM left; the
//     destructor calls it. After it, the VM holds no device reference.
//
// Lock: mu_ (hv::Mutex) serialises registry changes and is held across the
// vfio core and arch calls (order: KvmVfio::mu_ → VfioCore::mu_ → arch/vGIC/
// ITS locks). Nothing calls back into KvmVfio.
#ifndef VFIO_KVM_VFIO_H_
#define VFIO_KVM_VFIO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hv/base/locks.h"
#include "vfio/arch_forward.h"
#include "vfio/vfio_core.h"

namespace vfio {

struct ForwardInfo {
  std::string device;
  uint32_t index = 0;
  uint32_t subindex = 0;
  HostIrq host_irq = 0;
  GuestIrq guest_irq;
};

class KvmVfio {
 public:
  // `core` and `arch` must outlive this object. vm != kHost.
  KvmVfio(VmId vm, VfioCore* core, ArchForward* arch)
      : vm_(vm), core_(core), arch_(arch) {}
  ~KvmVfio() { Destroy(); }
  KvmVfio(const KvmVfio&) = delete;
  KvmVfio& operator=(const KvmVfio&) = delete;

  [[nodiscard]] absl::Status Forward(absl::string_view device, uint32_t index,
                                     uint32_t subindex,
                                     const GuestIrq& guest_irq);
  void Unforward(absl::string_view device, uint32_t index, uint32_t subindex);
  void Destroy();

  std::vector<ForwardInfo> List() const;
  VmId vm() const { return vm_; }
  uint64_t unknown_unforwards() const;

 private:
  void UnforwardLocked(const ForwardInfo& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const VmId vm_;
  VfioCore* const core_;
  ArchForward* const arch_;
  mutable hv::Mutex mu_;
  std::vector<ForwardInfo> fwds_ ABSL_GUARDED_BY(mu_);
  uint64_t unknown_unforwards_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vfio

#endif  // VFIO_KVM_VFIO_H_
