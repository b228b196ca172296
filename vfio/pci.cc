#include "vfio/pci.h"

#include "absl/strings/str_cat.h"

namespace vfio {

absl::StatusOr<std::unique_ptr<PciDevice>> PciDevice::Probe(
    hwsim::Device* dev) {
  if (dev == nullptr || dev->kind() != hwsim::DeviceKind::kPci) {
    return absl::InvalidArgumentError("pci: not a PCI function");
  }
  return std::unique_ptr<PciDevice>(new PciDevice(dev));
}

absl::StatusOr<uint32_t> PciDevice::Line(uint32_t index,
                                         uint32_t subindex) const {
  if (index != kVfioPciMsixIrqIndex) {
    return absl::InvalidArgumentError(
        absl::StrCat(id(), ": index ", index, " is not MSI-X (",
                     kVfioPciMsixIrqIndex, "); INTx/MSI are not implemented"));
  }
  if (subindex >= num_lines()) {
    return absl::InvalidArgumentError(absl::StrCat(
        id(), ": subindex ", subindex, " >= MSI-X table size ", num_lines()));
  }
  return subindex;
}

}  // namespace vfio
