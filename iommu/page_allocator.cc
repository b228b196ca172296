#include "iommu/page_allocator.h"

#include "absl/strings/str_format.h"
#include "iommu/formats.h"

namespace iommu {

absl::StatusOr<std::unique_ptr<PageAllocator>> PageAllocator::Create(
    PhysMemory* mem, uint64_t base, uint64_t size) {
  if (base % kPageSize != 0 || size % kPageSize != 0 || size == 0 ||
      !mem->Contains(base, size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "page pool [0x%x, +0x%x) must be page aligned and inside physical "
        "memory (0x%x bytes)",
        base, size, mem->size()));
  }
  return std::unique_ptr<PageAllocator>(new PageAllocator(mem, base, size));
}

PageAllocator::PageAllocator(PhysMemory* mem, uint64_t base, uint64_t size)
    : mem_(mem), base_(base), size_(size) {
  const uint64_t pages = size / kPageSize;
  bitmap_.assign((pages + 63) / 64, 0);
  if (pages % 64 != 0) bitmap_.back() = ~uint64_t{0} << (pages % 64);
}

absl::StatusOr<uint64_t> PageAllocator::Allocate(bool zero) {
  uint64_t hpa = 0;
  {
    hv::MutexLock lock(&mu_);
    const size_t n = bitmap_.size();
    size_t word = n;
    for (size_t i = 0; i < n; ++i) {
      const size_t w = (next_hint_ + i) % n;
      if (bitmap_[w] != ~uint64_t{0}) {
        word = w;
        break;
      }
    }
    if (word == n) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("page pool [0x%x, +0x%x) is full", base_, size_));
    }
    const int bit = __builtin_ctzll(~bitmap_[word]);
    bitmap_[word] |= uint64_t{1} << bit;
    next_hint_ = word;
    ++allocated_;
    hpa = base_ + (word * 64 + bit) * kPageSize;
  }
  if (!zero) return hpa;
  if (absl::Status s = mem_->ZeroPage(hpa); !s.ok()) return s;
  return hpa;
}

absl::Status PageAllocator::Free(uint64_t hpa) {
  if (!Owns(hpa) || hpa % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "0x%x is not a page of pool [0x%x, +0x%x)", hpa, base_, size_));
  }
  const uint64_t page = (hpa - base_) / kPageSize;
  hv::MutexLock lock(&mu_);
  uint64_t& w = bitmap_[page / 64];
  const uint64_t bit = uint64_t{1} << (page % 64);
  if ((w & bit) == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("page 0x%x freed twice", hpa));
  }
  w &= ~bit;
  --allocated_;
  return absl::OkStatus();
}

uint64_t PageAllocator::allocated_pages() const {
  hv::MutexLock lock(&mu_);
  return allocated_;
}

}  // namespace iommu
