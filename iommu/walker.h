// The VT-d table walk (§3.4 root/context lookup, §3.6-3.7 second-level
// translation), shared by the hardware model, the crash-copy verifier and the
// table dump tool. Pure functions over PhysMemory: every pointer taken from a
// table is bounds checked before it is dereferenced; entries are read with
// atomic 64-bit loads so walking tables that the driver is updating is safe.
#ifndef IOMMU_WALKER_H_
#define IOMMU_WALKER_H_

#include <cstdint>

#include "iommu/formats.h"
#include "iommu/phys_memory.h"
#include "iommu/registers.h"

namespace iommu {

// Superpage (PS=1) allowed at `level` per CAP.SLLPS (bit 0 = level 2, ...).
constexpr bool SuperpageAllowed(int level) {
  return level >= 2 && level <= 5 && ((kSllpsMask >> (level - 2)) & 1) != 0;
}

// Reserved bits of a present SL entry at `level` (§9.8): address bits above
// HAW; for a superpage, the address bits below the page size; PS itself
// where SLLPS does not allow a superpage (level 1's bit 7 is ignored).
constexpr uint64_t SlReservedMask(int level, bool ps) {
  uint64_t m = kHawReservedMask;
  if (level >= 2 && ps) {
    if (!SuperpageAllowed(level)) return m | SlPte::kPageSizeBit;
    m |= (LevelPageSize(level) - 1) & kAddrMask;
  }
  return m;
}
static_assert(SlReservedMask(2, true) == (kHawReservedMask | 0x1ff000));
static_assert((SlReservedMask(5, true) & SlPte::kPageSizeBit) != 0);

// Validation of a present context entry (§9.3): reserved bits → fault 0xB;
// TT reserved, TT not enabled by ECAP, or AW not in SAGAW → fault 0x3.
FaultReason ValidateContext(const ContextEntry& ce);

struct ContextLookup {
  FaultReason fault = FaultReason::kNone;
  ContextEntry entry;  // valid when fault == kNone
};
// Root table at `rtaddr` → context entry for `sid`, validated.
ContextLookup LookupContext(const PhysMemory& mem, uint64_t rtaddr,
                            uint16_t sid);

struct PageWalk {
  FaultReason fault = FaultReason::kNone;  // reserved bits / bad pointer
  // When fault == kNone: perms == kPermNone means "not mapped" (a
  // not-present entry ended the walk); otherwise the leaf page.
  uint8_t perms = kPermNone;  // AND of R/W over every level (§3.7.1)
  uint64_t page_hpa = 0;      // base of the leaf page
  uint64_t page_size = 0;     // 4K, 2M, 1G or 512G
  int leaf_level = 0;
  int stop_level = 0;  // level of the entry that ended the walk
};
// Walks `levels` levels from `slptptr` for `iova` (caller checked AGAW).
PageWalk WalkPageTables(const PhysMemory& mem, uint64_t slptptr, int levels,
                        uint64_t iova);

struct Translation {
  FaultReason fault = FaultReason::kNone;
  uint64_t hpa = 0;        // translated address of `iova`
  uint64_t page_size = 0;  // size of the page containing it
  uint8_t perms = kPermNone;
  uint16_t did = 0;
  bool pass_through = false;
};
// Full translation of (sid, iova, access) against the root table at `rtaddr`
// including the permission check.
Translation TranslateUncached(const PhysMemory& mem, uint64_t rtaddr,
                              uint16_t sid, uint64_t iova, Access access);
// Second half of the above: translate with an already looked-up context.
Translation TranslateWithContext(const PhysMemory& mem, const ContextEntry& ce,
                                 uint64_t iova, Access access);

}  // namespace iommu

#endif  // IOMMU_WALKER_H_
