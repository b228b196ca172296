// The IOMMU driver (DESIGN §6; runs in hvd): builds VT-d tables in physical
// memory and programs the hardware only through its register interface.
//
// Domains have a DID, an address width (2..5 levels) and a per-domain IOVA
// allocator; devices (bus/devfn = source-id) are attached to one domain at a
// time, either translated or pass-through. Map/Unmap use superpages where
// IOVA, HPA and length allow. Invalidation order (VT-d §6.5, §6.1):
//   detach: clear context entry → context-cache flush (device) → IOTLB flush
//           (domain);
//   unmap : clear leaf entries → IOTLB flush (page-selective range); then
//           unlink page-table pages left empty → IOTLB flush again (its
//           drain guarantees no walk still reads them) → free them;
//   map   : none needed (CAP.CM = 0: not-present entries are never cached).
//
// Locks: mu_ guards all driver state and serializes table updates and
// register command sequences. Order: mu_ → (IommuHardware::reg_mu_ →
// cache_mu_) via register writes; mu_ → PageAllocator::mu_; mu_ →
// IovaAllocator::mu_. Tables are updated with atomic release stores in an
// order that keeps every intermediate state valid for a concurrent walk.
#ifndef IOMMU_DRIVER_H_
#define IOMMU_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"
#include "iommu/formats.h"
#include "iommu/iova_allocator.h"
#include "iommu/page_allocator.h"
#include "iommu/phys_memory.h"
#include "iommu/register_io.h"

namespace iommu {

// A domain taken over from a crashed instance (see crash_copy.h).
struct AdoptedDomain {
  uint16_t did = 0;
  bool pass_through = false;
  int levels = 0;           // translated domains
  uint64_t root = 0;        // page-table root in physical memory
  bool owns_tables = true;  // false: the crashed instance's tables, kept
                            // read-only (Linux strategy)
  std::vector<uint16_t> sids;
  std::vector<std::pair<uint64_t, uint64_t>> reserved_iova;  // start, size
};

class IommuDriver {
 public:
  // Fresh takeover: allocates an empty root table from `pages`, points the
  // hardware at it, flushes caches globally and enables translation.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IommuDriver>> Create(
      PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* pages);
  // Takes over tables already installed in the hardware by crash recovery
  // (`root_table` is what RTADDR points at). Every adopted DID stays
  // allocated; mapped IOVA ranges stay reserved in each domain's allocator.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<IommuDriver>> Adopt(
      PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* pages,
      uint64_t root_table, std::vector<uint64_t> owned_table_pages,
      const std::vector<AdoptedDomain>& domains);

  static constexpr uint16_t kMaxDid = 0xffff;  // CAP.ND = 6: 16-bit DIDs

  // A translated domain with `levels` (2..5) page-table levels.
  [[nodiscard]] absl::StatusOr<uint16_t> CreateDomain(int levels);
  // A pass-through domain (context TT = 2).
  [[nodiscard]] absl::StatusOr<uint16_t> CreatePassThroughDomain();
  // FailedPrecondition while devices are attached. Frees its tables.
  [[nodiscard]] absl::Status DestroyDomain(uint16_t did);

  [[nodiscard]] absl::Status Attach(uint16_t sid, uint16_t did);
  [[nodiscard]] absl::Status Detach(uint16_t sid);

  // Maps [iova, iova + size) → [hpa, ...) with `perms` (kPermR/W/RW); all
  // page aligned. AlreadyExists if any page is mapped; on failure nothing
  // stays mapped.
  [[nodiscard]] absl::Status Map(uint16_t did, uint64_t iova, uint64_t hpa,
                                 uint64_t size, uint8_t perms);
  // Unmaps exactly the pages covering [iova, iova + size); every page must
  // be mapped and lie inside the range (a superpage cannot be split).
  [[nodiscard]] absl::Status Unmap(uint16_t did, uint64_t iova, uint64_t size);

  [[nodiscard]] absl::StatusOr<uint64_t> AllocIova(uint16_t did, uint64_t size,
                                                   uint64_t align);
  [[nodiscard]] absl::Status FreeIova(uint16_t did, uint64_t iova,
                                      uint64_t size);
  // The domain's allocator (stable pointer while the domain exists).
  [[nodiscard]] absl::StatusOr<IovaAllocator*> iova_allocator(uint16_t did);

  uint64_t root_table() const;
  std::vector<uint16_t> dids() const;

 private:
  struct Domain {
    uint16_t did = 0;
    bool pass_through = false;
    int levels = 0;
    uint64_t root = 0;
    bool owns_tables = true;
    std::unique_ptr<IovaAllocator> iova;
    std::set<uint16_t> sids;
  };

  IommuDriver(PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* pages)
      : mem_(mem), io_(regs), pages_(pages) {}

  absl::StatusOr<uint16_t> AllocDidLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Domain*> FindLocked(uint16_t did)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Domain*> WritableLocked(uint16_t did)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidateRange(const Domain& d, uint64_t iova, uint64_t size);
  // Installs one leaf entry at `level`, allocating missing tables.
  absl::Status SetLeafLocked(const Domain& d, uint64_t iova, int level,
                             uint64_t value, std::vector<uint64_t>* new_pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ClearRangeLocked(const Domain& d, uint64_t iova, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeTablesLocked(uint64_t table, int level)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unlinks page-table pages under [iova, iova + size) that hold no present
  // entry any more; appends them to `unlinked` (freed after a flush).
  void UnlinkEmptyTablesLocked(uint64_t table, int level, uint64_t base,
                               uint64_t iova, uint64_t size,
                               std::vector<uint64_t>* unlinked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PhysMemory* const mem_;
  mutable hv::Mutex mu_;
  RegisterIo io_ ABSL_GUARDED_BY(mu_);
  PageAllocator* const pages_;
  uint64_t root_table_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> owned_pages_ ABSL_GUARDED_BY(mu_);  // root + contexts
  std::map<uint16_t, std::unique_ptr<Domain>> domains_ ABSL_GUARDED_BY(mu_);
  std::map<uint16_t, uint16_t> sid_to_did_ ABSL_GUARDED_BY(mu_);
  uint16_t next_did_ ABSL_GUARDED_BY(mu_) = 1;  // DID 0 is never used
};

}  // namespace iommu

#endif  // IOMMU_DRIVER_H_
