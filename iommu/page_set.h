// A set of 4 KiB physical pages as a bitmap over physical memory: the
// "seen before?" check of table walks over untrusted tables (cycle and
// sharing detection) in O(1) without hashing. Not thread-safe.
#ifndef IOMMU_PAGE_SET_H_
#define IOMMU_PAGE_SET_H_

#include <cstdint>
#include <vector>

#include "iommu/formats.h"

namespace iommu {

class PageSet {
 public:
  explicit PageSet(uint64_t mem_size)
      : bits_((mem_size / kPageSize + 63) / 64, 0) {}
  // Adds the page containing `hpa` (which must lie inside memory); false if
  // it was already present.
  bool Insert(uint64_t hpa) {
    const uint64_t page = hpa / kPageSize;
    uint64_t& w = bits_[page / 64];
    const uint64_t bit = uint64_t{1} << (page % 64);
    if ((w & bit) != 0) return false;
    w |= bit;
    return true;
  }

 private:
  std::vector<uint64_t> bits_;
};

}  // namespace iommu

#endif  // IOMMU_PAGE_SET_H_
