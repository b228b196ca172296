// Per-domain IOVA space allocator (the role of Linux's iova.c): hands out
// aligned IOVA ranges top-down below a limit and keeps reservations — ranges
// that must never be handed out, e.g. every range the crashed instance had
// mapped (crash copy) so new mappings cannot collide with in-flight DMA.
//
// Thread safety: internally locked; mu_ is a leaf lock.
#ifndef IOMMU_IOVA_ALLOCATOR_H_
#define IOMMU_IOVA_ALLOCATOR_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/base/locks.h"

namespace iommu {

class IovaAllocator {
 public:
  struct Range {
    uint64_t start = 0;
    uint64_t size = 0;
    bool reserved = false;
  };

  // Addresses in [floor, limit) may be allocated; limit = 2^AGAW for a
  // domain. The first page is kept out by default (IOVA 0 is never handed
  // out, so a zero IOVA is always a bug).
  IovaAllocator(uint64_t floor, uint64_t limit)
      : floor_(floor), limit_(limit) {}

  // Allocates `size` bytes (page multiple) aligned to `align` (power of two,
  // >= 4 KiB), highest free address first. ResourceExhausted when no gap.
  [[nodiscard]] absl::StatusOr<uint64_t> Allocate(uint64_t size,
                                                  uint64_t align);
  // Frees a range returned by Allocate (exact start and size).
  [[nodiscard]] absl::Status Free(uint64_t start, uint64_t size);
  // Reserves [start, start + size): AlreadyExists if it overlaps anything.
  // Adjacent reservations are merged.
  [[nodiscard]] absl::Status Reserve(uint64_t start, uint64_t size);

  bool Overlaps(uint64_t start, uint64_t size) const;
  std::vector<Range> ranges() const;
  size_t reserved_count() const;

 private:
  bool OverlapsLocked(uint64_t start, uint64_t size) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t floor_;
  const uint64_t limit_;
  mutable hv::Mutex mu_;
  std::map<uint64_t, Range> used_ ABSL_GUARDED_BY(mu_);  // by start
};

}  // namespace iommu

#endif  // IOMMU_IOVA_ALLOCATOR_H_
