#include "vfio/platform.h"

#include "absl/strings/str_cat.h"

namespace vfio {

absl::StatusOr<std::unique_ptr<PlatformDevice>> PlatformDevice::Probe(
    hwsim::Device* dev) {
  if (dev == nullptr || dev->kind() != hwsim::DeviceKind::kPlatform) {
    return absl::InvalidArgumentError("platform: not a platform device");
  }
  return std::unique_ptr<PlatformDevice>(new PlatformDevice(dev));
}

absl::StatusOr<uint32_t> PlatformDevice::Line(uint32_t index,
                                              uint32_t subindex) const {
  if (index >= num_lines()) {
    return absl::InvalidArgumentError(
        absl::StrCat(id(), ": index ", index, " >= ", num_lines(), " lines"));
  }
  if (subindex != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(id(), ": subindex ", subindex, " (wired lines have 0)"));
  }
  return index;
}

}  // namespace vfio
