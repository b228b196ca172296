// The VT-d remapping hardware model (DESIGN §6; runs inside hv-hwsim): the
// register file (§10.4), DMA translation through the caches and the table
// walker, and the fault log (§7.1, §10.4.14).
//
// It implements hv::MmioDevice, and the driver programs it only through
// that interface, so the driver can live in another process (hvd) with the
// registers reached over IPC and the tables in the shared physical memfd.
//
// Locks (all hv::Mutex), scope and order:
//   reg_mu_   : the register file (GCMD/GSTS/RTADDR/CCMD/IVA/IOTLB). Held
//               while a command executes, so commands are serialized.
//   cache_mu_ : translation state seen by DMA (TE, the latched root-table
//               pointer, context cache, IOTLB, the walk generation).
//   fault_mu_ : fault recording registers and FSTS.PFO.
//   gate_     : DmaGate (atomics): every Translate/DMA is inside it for its
//               whole duration; invalidations and SRTP drain it after
//               updating the caches, so when a command completes no request
//               using the old translation is still in flight.
//   Order: reg_mu_ → cache_mu_, reg_mu_ → fault_mu_, reg_mu_ → gate_ drain
//   (never while holding cache_mu_). The DMA path holds gate_ and takes
//   cache_mu_ and fault_mu_ one at a time, never nested, never reg_mu_, and
//   holds no mutex while walking tables in memory (walks read entries
//   atomically).
//   A walk that raced with an invalidation does not fill the caches: each
//   invalidation or SRTP bumps a generation, and a walk only inserts if the
//   generation it started under is still current.
#ifndef IOMMU_HARDWARE_H_
#define IOMMU_HARDWARE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"
#include "iommu/dma_gate.h"
#include "iommu/iotlb.h"
#include "iommu/phys_memory.h"
#include "iommu/registers.h"
#include "iommu/walker.h"

namespace iommu {

class IommuHardware : public hv::MmioDevice {
 public:
  explicit IommuHardware(PhysMemory* mem) : mem_(mem) {}

  // Register access (offset in [0, kRegisterWindowSize)): 32-bit registers
  // take size 4, 64-bit registers size 8; other widths or unknown offsets are
  // InvalidArgument; unimplemented offsets inside the window read 0.
  [[nodiscard]] absl::Status Read(const hv::MmioContext& ctx, uint64_t offset,
                                  uint8_t size, uint64_t* value) override;
  [[nodiscard]] absl::Status Write(const hv::MmioContext& ctx, uint64_t offset,
                                   uint8_t size, uint64_t value) override;

  // Translates one request from device `sid`. Uses the caches; on a fault
  // records it (unless the context has FPD set) and returns it in `fault`.
  // With translation disabled (GSTS.TES = 0) DMA is not remapped.
  Translation Translate(uint16_t sid, uint64_t iova, Access access);

  // DMA of `len` bytes at `iova`: every page is translated first; on any
  // fault nothing is transferred (PermissionDenied naming the reason), an
  // HPA outside physical memory is OutOfRange (also nothing transferred).
  [[nodiscard]] absl::Status DmaWrite(uint16_t sid, uint64_t iova,
                                      const void* data, size_t len);
  [[nodiscard]] absl::Status DmaRead(uint16_t sid, uint64_t iova, void* data,
                                     size_t len);

  struct Stats {
    uint64_t iotlb_hits = 0;
    uint64_t iotlb_misses = 0;
    uint64_t faults = 0;  // faults detected (recorded or not)
  };
  Stats stats() const;
  size_t iotlb_size() const;
  size_t context_cache_size() const;

 private:
  absl::Status ReadLocked(uint64_t offset, uint8_t size, uint64_t* value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  absl::Status WriteLocked(uint64_t offset, uint8_t size, uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  void WriteGcmd(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  void WriteCcmd(uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  void WriteIotlb(uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  void RecordFault(uint16_t sid, uint64_t iova, Access access,
                   FaultReason reason);
  Translation TranslateInGate(uint16_t sid, uint64_t iova, Access access);
  absl::Status Dma(uint16_t sid, uint64_t iova, size_t len, Access access,
                   std::vector<std::pair<uint64_t, size_t>>* pieces);

  PhysMemory* const mem_;
  DmaGate gate_;

  mutable hv::Mutex reg_mu_;
  uint64_t rtaddr_ ABSL_GUARDED_BY(reg_mu_) = 0;
  uint32_t gsts_ ABSL_GUARDED_BY(reg_mu_) = 0;
  uint64_t ccmd_ ABSL_GUARDED_BY(reg_mu_) = 0;
  uint64_t iva_ ABSL_GUARDED_BY(reg_mu_) = 0;
  uint64_t iotlb_reg_ ABSL_GUARDED_BY(reg_mu_) = 0;
  uint32_t fectl_ ABSL_GUARDED_BY(reg_mu_) = 0;

  mutable hv::Mutex cache_mu_;
  bool te_ ABSL_GUARDED_BY(cache_mu_) = false;
  uint64_t active_root_ ABSL_GUARDED_BY(cache_mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(cache_mu_) = 0;
  ContextCache context_cache_ ABSL_GUARDED_BY(cache_mu_);
  Iotlb iotlb_ ABSL_GUARDED_BY(cache_mu_);
  uint64_t iotlb_hits_ ABSL_GUARDED_BY(cache_mu_) = 0;
  uint64_t iotlb_misses_ ABSL_GUARDED_BY(cache_mu_) = 0;

  mutable hv::Mutex fault_mu_;
  std::array<FaultRecord, kNumFaultRecords> records_ ABSL_GUARDED_BY(fault_mu_);
  int next_record_ ABSL_GUARDED_BY(fault_mu_) = 0;
  bool pfo_ ABSL_GUARDED_BY(fault_mu_) = false;
  uint64_t faults_ ABSL_GUARDED_BY(fault_mu_) = 0;
};

}  // namespace iommu

#endif  // IOMMU_HARDWARE_H_
