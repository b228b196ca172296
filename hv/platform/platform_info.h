// The read-only platform info block at HV_VIRT_INFO_BASE (hv_virt.h): the
// guest reads it to find RAM, the GIC frames, the UART, the hypercall port
// and how the GIC line reaches it. Any aligned 1/2/4/8-byte read inside the
// block is allowed; bytes past the struct read 0; writes are rejected (the
// bus counts them as unhandled).
//
// Locking: the contents are set before vCPUs run except boot_count, which
// the VMM bumps while all vCPUs are stopped (SYSTEM_RESET); `mu_` guards it
// all anyway. Leaf lock.
#ifndef HV_PLATFORM_PLATFORM_INFO_H_
#define HV_PLATFORM_PLATFORM_INFO_H_

#include <cstdint>

#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"
#include "hv/platform/hv_virt.h"

namespace hv {

static_assert(sizeof(hv_virt_info) == 128, "platform info ABI changed");
static_assert(sizeof(hv_virt_info) <= HV_VIRT_INFO_SIZE);

class PlatformInfo : public MmioDevice {
 public:
  explicit PlatformInfo(const hv_virt_info& info);

  absl::Status Read(const MmioContext& ctx, uint64_t offset, uint8_t size,
                    uint64_t* value) override;
  absl::Status Write(const MmioContext& ctx, uint64_t offset, uint8_t size,
                     uint64_t value) override;

  void set_boot_count(uint64_t n);
  hv_virt_info info() const;

 private:
  mutable Mutex mu_;
  hv_virt_info info_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hv

#endif  // HV_PLATFORM_PLATFORM_INFO_H_
