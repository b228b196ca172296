// Allocator of 4 KiB table pages from one window of physical memory.
//
// The normal driver allocates from its table pool; a recovering instance
// allocates from the reserved region (the crashkernel= analogue, DESIGN §6)
// that the running instance never touches, so copying the crashed
// instance's tables can never overwrite them.
//
// Thread safety: internally locked (mu_ is a leaf lock).
#ifndef IOMMU_PAGE_ALLOCATOR_H_
#define IOMMU_PAGE_ALLOCATOR_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/base/locks.h"
#include "iommu/phys_memory.h"

namespace iommu {

class PageAllocator {
 public:
  // Manages [base, base + size) of `mem`; both page aligned and inside mem.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PageAllocator>> Create(
      PhysMemory* mem, uint64_t base, uint64_t size);

  // A page, zeroed unless `zero` is false (callers that overwrite the whole
  // page). ResourceExhausted when the window is full.
  [[nodiscard]] absl::StatusOr<uint64_t> Allocate(bool zero = true);
  // InvalidArgument if `hpa` is not an allocated page of this window.
  [[nodiscard]] absl::Status Free(uint64_t hpa);

  bool Owns(uint64_t hpa) const { return hpa >= base_ && hpa - base_ < size_; }
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t allocated_pages() const;

 private:
  PageAllocator(PhysMemory* mem, uint64_t base, uint64_t size);

  PhysMemory* const mem_;
  const uint64_t base_;
  const uint64_t size_;
  mutable hv::Mutex mu_;
  std::vector<uint64_t> bitmap_ ABSL_GUARDED_BY(mu_);  // 1 = allocated
  uint64_t next_hint_ ABSL_GUARDED_BY(mu_) = 0;        // word index
  uint64_t allocated_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace iommu

#endif  // IOMMU_PAGE_ALLOCATOR_H_
