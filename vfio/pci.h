// pci bus driver: an hwsim PCI function's MSI-X vectors as VFIO index
// kVfioPciMsixIrqIndex, subindex = MSI-X table entry. The requester ID is the
// ITS DeviceID of the function's MSIs (DESIGN §3).
#ifndef VFIO_PCI_H_
#define VFIO_PCI_H_

#include <memory>

#include "absl/status/statusor.h"
#include "vfio/bus_driver.h"

namespace vfio {

class PciDevice : public HwsimBusDevice {
 public:
  // InvalidArgument unless `dev` is an hwsim PCI function.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PciDevice>> Probe(
      hwsim::Device* dev);
  const char* bus() const override { return "pci"; }
  absl::StatusOr<uint32_t> Line(uint32_t index,
                                uint32_t subindex) const override;

 private:
  using HwsimBusDevice::HwsimBusDevice;
};

}  // namespace vfio

#endif  // VFIO_PCI_H_
