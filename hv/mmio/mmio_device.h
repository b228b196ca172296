// The MMIO handler interface (DESIGN §5). A device registers one or more
// ranges on the MmioBus; the bus calls Read/Write with the offset from the
// start of the range. Each device documents its own locking: the bus calls
// handlers concurrently from every vCPU thread and from device (DMA/MSI)
// threads, holding no bus lock.
#ifndef HV_MMIO_MMIO_DEVICE_H_
#define HV_MMIO_MMIO_DEVICE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace hv {

// Who is accessing. vcpu is the accessing vCPU's index for CPU accesses
// (banked frames such as the GIC CPU interface use it); for device-originated
// writes (MSIs to GITS_TRANSLATER) vcpu is kNoVcpu and requester_id carries
// the device's ID as the bus/IOMMU presents it (the ITS DeviceID).
struct MmioContext {
  static constexpr uint32_t kNoVcpu = 0xffffffff;
  uint32_t vcpu = kNoVcpu;
  uint32_t requester_id = 0;
};

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;

  // size is 1, 2, 4 or 8; offset + size lies inside the registered range.
  // A non-OK status means the device rejected the access (e.g. a width the
  // spec does not allow); the bus counts it, reads then return all-ones and
  // writes are dropped. Devices choose RAZ/WI by returning OK instead where
  // the spec says so.
  [[nodiscard]] virtual absl::Status Read(const MmioContext& ctx,
                                          uint64_t offset, uint8_t size,
                                          uint64_t* value) = 0;
  [[nodiscard]] virtual absl::Status Write(const MmioContext& ctx,
                                           uint64_t offset, uint8_t size,
                                           uint64_t value) = 0;
};

}  // namespace hv

#endif  // HV_MMIO_MMIO_DEVICE_H_
