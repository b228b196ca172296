// Software side of the register interface: typed accessors and the command
// sequences of VT-d §6.5 (register-based invalidation) and §10.4.4 (GCMD
// one-bit-at-a-time protocol), over any hv::MmioDevice — the in-process
// IommuHardware in tests, an IPC proxy to hv-hwsim in hvd.
//
// Not internally locked: the owner (driver or crash recovery) serializes its
// command sequences with its own lock.
#ifndef IOMMU_REGISTER_IO_H_
#define IOMMU_REGISTER_IO_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/mmio/mmio_device.h"
#include "iommu/registers.h"

namespace iommu {

class RegisterIo {
 public:
  explicit RegisterIo(hv::MmioDevice* regs) : regs_(regs) {}

  [[nodiscard]] absl::StatusOr<uint64_t> Read64(Reg r);
  [[nodiscard]] absl::StatusOr<uint32_t> Read32(Reg r);
  [[nodiscard]] absl::Status Write64(Reg r, uint64_t v);
  [[nodiscard]] absl::Status Write32(Reg r, uint32_t v);

  // RTADDR := rtaddr, then GCMD.SRTP with TE kept as GSTS reports it; waits
  // for GSTS.RTPS. Caches are NOT flushed: call the global invalidations.
  [[nodiscard]] absl::Status SetRootTable(uint64_t rtaddr);
  // GCMD.TE := on (other persistent bits preserved); waits for GSTS.TES.
  [[nodiscard]] absl::Status SetTranslation(bool on);

  [[nodiscard]] absl::Status InvalidateContextGlobal();
  [[nodiscard]] absl::Status InvalidateContextDevice(uint16_t sid,
                                                     uint16_t did);
  [[nodiscard]] absl::Status InvalidateIotlbGlobal();
  [[nodiscard]] absl::Status InvalidateIotlbDomain(uint16_t did);
  // Page-selective for [iova, iova + size); falls back to domain-selective
  // when the range needs a mask above CAP.MAMV.
  [[nodiscard]] absl::Status InvalidateIotlbRange(uint16_t did, uint64_t iova,
                                                  uint64_t size);

 private:
  absl::Status ContextCommand(uint64_t cmd);
  absl::Status IotlbCommand(uint64_t cmd);
  hv::MmioDevice* const regs_;
};

}  // namespace iommu

#endif  // IOMMU_REGISTER_IO_H_
