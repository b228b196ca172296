// The arch forward of a device attached to a VM in another process (DESIGN
// §3 last layer, mediated mode): forwarding MSI (DeviceID, EventID v) of a
// host IRQ installs a vfio-core handler that signals vector v's eventfd; the
// VMM holds the other end (received over the control socketpair) and injects
// the MSI into its ITS. Off: the IRQ goes back to the host driver first
// (VfioCore::SetHostOwned waits until no dispatch can still see the
// handler), so an eventfd is never written after SetForward(off) returns.
//
// Locks: none; the vfio core serialises handler swaps (its mu_), kvm-vfio
// serialises SetForward calls (KvmVfio::mu_).
#ifndef TOOLS_HVD_REMOTE_FORWARD_H_
#define TOOLS_HVD_REMOTE_FORWARD_H_

#include <cstdint>
#include <vector>

#include "vfio/arch_forward.h"
#include "vfio/vfio_core.h"

namespace hv::hvd {

class RemoteMsiForward : public vfio::ArchForward {
 public:
  // `efds[v]`: vector v's eventfd (not owned; must outlive every forward).
  RemoteMsiForward(vfio::VfioCore* core, uint32_t device_id,
                   std::vector<int> efds)
      : core_(core), device_id_(device_id), efds_(std::move(efds)) {}

  // InvalidArgument for anything but an MSI of this device with an EventID
  // that has an eventfd.
  [[nodiscard]] absl::Status SetForward(vfio::HostIrq host_irq,
                                        const vfio::GuestIrq& guest_irq,
                                        bool on) override;

 private:
  vfio::VfioCore* const core_;
  const uint32_t device_id_;
  const std::vector<int> efds_;
};

}  // namespace hv::hvd

#endif  // TOOLS_HVD_REMOTE_FORWARD_H_
