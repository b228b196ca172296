// platform bus driver: an hwsim platform device's wired level lines as VFIO
// index n (vfio-platform numbering), subindex 0.
#ifndef VFIO_PLATFORM_H_
#define VFIO_PLATFORM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "vfio/bus_driver.h"

namespace vfio {

class PlatformDevice : public HwsimBusDevice {
 public:
  // InvalidArgument unless `dev` is an hwsim platform device.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PlatformDevice>> Probe(
      hwsim::Device* dev);
  const char* bus() const override { return "platform"; }
  absl::StatusOr<uint32_t> Line(uint32_t index,
                                uint32_t subindex) const override;

 private:
  using HwsimBusDevice::HwsimBusDevice;
};

}  // namespace vfio

#endif  // VFIO_PLATFORM_H_
