// Proof that two VT-d table sets translate identically (used after a crash
// copy, before the hardware is switched). Independent of the copy code: it
// walks both trees in parallel and checks, entry by entry with the walker's
// semantics, that every (source-id, IOVA) has the same outcome — same
// context (TT, AW, DID, FPD), same present/not-present structure, same leaf
// address, page size and rights at every level. Structural equality of the
// two trees implies equal translation for every input, at O(table bytes)
// cost instead of O(IOVA space).
#ifndef IOMMU_VERIFY_H_
#define IOMMU_VERIFY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "iommu/phys_memory.h"

namespace iommu {

struct VerifyReport {
  uint64_t contexts = 0;  // present context entries compared
  uint64_t pass_through_contexts = 0;
  uint64_t page_tables_compared = 0;  // pairs of distinct table pages
  uint64_t shared_trees = 0;          // trees identical by pointer
  uint64_t leaf_entries = 0;          // present leaves compared
  uint64_t bytes_mapped = 0;          // IOVA bytes covered by those leaves
};

// DataLoss naming the first (source-id, IOVA) whose translation differs;
// OutOfRange/InvalidArgument if a table is unreadable or reached twice.
[[nodiscard]] absl::StatusOr<VerifyReport> VerifyTranslationsEqual(
    const PhysMemory& mem, uint64_t old_rtaddr, uint64_t new_rtaddr);

}  // namespace iommu

#endif  // IOMMU_VERIFY_H_
