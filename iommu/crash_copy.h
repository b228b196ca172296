// Crash recovery of the IOMMU tables (DESIGN §6; the seed's kdump algorithm,
// VT-d legacy mode). A restarted hvd finds the hardware still translating
// through the crashed instance's tables; devices keep DMAing. It must take
// the tables over without a window in which DMA faults or bypasses
// translation.
//
// Two strategies:
//  kDeepCopy (the seed's, improved): copy root → context → page tables depth
//    first into pages of the reserved region; contexts sharing a DID share
//    one copied tree; every mapped range is reserved in the new domain's
//    IOVA allocator. Afterwards the new instance owns every table and may
//    map/unmap in the adopted domains; the old pages can be reclaimed.
//  kKeepPageTables (Linux ≥ 4.x, intel-iommu copy_translation_tables): copy
//    only the root and context tables; context entries keep pointing at the
//    old page tables, which stay in place read-only; the old DIDs stay
//    reserved so new domains never alias their IOTLB entries. Cost is
//    O(contexts) instead of O(mapped tables), but the old page-table memory
//    must stay untouched until every device is re-attached.
// See docs/iommu.md for when each is right.
//
// Malformed old tables (reserved bits or TT, unsupported AW, pointers out of
// physical memory or into the reserved region, a table reached twice —
// cycles included —, one DID with different trees) refuse the copy: every
// page allocated so far is freed and the hardware is not touched.
//
// Not thread-safe per call: one recovery at a time (the caller holds the
// takeover). The old tables are only read (DMA threads also only read them).
#ifndef IOMMU_CRASH_COPY_H_
#define IOMMU_CRASH_COPY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/mmio/mmio_device.h"
#include "iommu/driver.h"
#include "iommu/page_allocator.h"
#include "iommu/phys_memory.h"
#include "iommu/verify.h"

namespace iommu {

enum class CopyStrategy { kDeepCopy, kKeepPageTables };

// A maximal run of mapped IOVA space in one domain with the same page size
// and effective permissions (one IOVA reservation each). `hpa` is the first
// page's address; hpa_contiguous says whether the whole run is also
// physically contiguous (hpa .. hpa + size).
struct MappedRange {
  uint16_t did = 0;
  uint64_t iova = 0;
  uint64_t hpa = 0;
  uint64_t size = 0;
  uint64_t page_size = 0;
  uint8_t perms = kPermNone;
  bool hpa_contiguous = true;
};

struct CopyStats {
  uint64_t contexts = 0;  // present context entries
  uint64_t pass_through_contexts = 0;
  uint64_t domains = 0;
  uint64_t page_tables = 0;   // old page-table pages walked
  uint64_t leaf_entries = 0;  // present leaf entries (any size)
  uint64_t ranges = 0;
  uint64_t bytes_mapped = 0;
};

struct CopyResult {
  CopyStrategy strategy = CopyStrategy::kDeepCopy;
  uint64_t old_rtaddr = 0;
  uint64_t new_rtaddr = 0;
  std::vector<uint64_t> new_pages;      // every page taken from `reserved`
  std::vector<uint64_t> context_pages;  // the new root + context tables
  std::vector<AdoptedDomain> domains;
  std::vector<MappedRange> ranges;
  CopyStats stats;
};

// Copies the tables rooted at `old_rtaddr`. On error nothing is left
// allocated. FailedPrecondition / OutOfRange / InvalidArgument name the
// offending entry.
[[nodiscard]] absl::StatusOr<CopyResult> CopyTables(PhysMemory* mem,
                                                    uint64_t old_rtaddr,
                                                    PageAllocator* reserved,
                                                    CopyStrategy strategy);

// Frees every page of an abandoned copy.
void ReleaseCopy(CopyResult* copy, PageAllocator* reserved);

// Points the hardware at the copy: RTADDR, SRTP with TE kept on, then global
// context-cache and IOTLB invalidation (§6.5: required after SRTP).
[[nodiscard]] absl::Status SwitchRootTable(hv::MmioDevice* regs,
                                           uint64_t new_rtaddr);

struct RecoveryReport {
  CopyResult copy;
  VerifyReport verify;
};

// The whole takeover: read RTADDR (FailedPrecondition if translation is not
// enabled: nothing to recover), copy, verify old vs new, switch. If copy or
// verify fails, nothing is installed and the reserved pages are freed. If
// the switch itself fails (register access error) the copy is left
// allocated, since the hardware may already have latched it; the old and
// new tables translate identically, so either state is safe to retry from.
// hvd must run this (not IommuDriver::Create) whenever GSTS.TES is set at
// startup: Create would switch live devices to empty tables.
[[nodiscard]] absl::StatusOr<RecoveryReport> RecoverTables(
    PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* reserved,
    CopyStrategy strategy);

// Hands the recovered tables to a new driver instance.
[[nodiscard]] absl::StatusOr<std::unique_ptr<IommuDriver>> AdoptRecovered(
    PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* reserved,
    const RecoveryReport& report);

}  // namespace iommu

#endif  // IOMMU_CRASH_COPY_H_
