// kvm → arch (DESIGN §3, last layer): `set_forward(vm, host_irq, guest_irq,
// on/off)`. The VM is the object implementing ArchForward (one per VM); the
// guest IRQ is arch-specific. vfio-isms (index/subindex) never reach here.
#ifndef VFIO_ARCH_FORWARD_H_
#define VFIO_ARCH_FORWARD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "vfio/vfio_core.h"

namespace vfio {

// A GICv3 guest interrupt: SPI n (32..1019), or an MSI (DeviceID, EventID)
// translated by the VM's ITS.
struct GuestIrq {
  enum class Kind { kSpi, kMsi };
  Kind kind = Kind::kSpi;
  uint32_t spi = 0;
  uint32_t device_id = 0;
  uint32_t event_id = 0;

  static GuestIrq Spi(uint32_t intid) { return {Kind::kSpi, intid, 0, 0}; }
  static GuestIrq Msi(uint32_t device_id, uint32_t event_id) {
    return {Kind::kMsi, 0, device_id, event_id};
  }
  bool operator==(const GuestIrq&) const = default;
  std::string ToString() const;
};

class ArchForward {
 public:
  virtual ~ArchForward() = default;
  // on = true: from now on host_irq's interrupts are delivered to guest_irq
  // (InvalidArgument for a guest IRQ this VM cannot take, FailedPrecondition
  // if it has no ITS for an MSI, AlreadyExists if guest_irq is taken).
  // on = false: stops it and gives the IRQ back to the host; cannot fail
  // (always returns OkStatus) and is a no-op for an IRQ not forwarded.
  [[nodiscard]] virtual absl::Status SetForward(HostIrq host_irq,
                                                const GuestIrq& guest_irq,
                                                bool on) = 0;
};

}  // namespace vfio

#endif  // VFIO_ARCH_FORWARD_H_
