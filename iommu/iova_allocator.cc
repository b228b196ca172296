#include "iommu/iova_allocator.h"

#include "absl/strings/str_format.h"
#include "iommu/formats.h"

namespace iommu {

bool IovaAllocator::OverlapsLocked(uint64_t start, uint64_t size) const {
  auto it = used_.upper_bound(start);
  if (it != used_.end() && it->first < start + size) return true;
  if (it != used_.begin()) {
    --it;
    if (it->first + it->second.size > start) return true;
  }
  return false;
}

bool IovaAllocator::Overlaps(uint64_t start, uint64_t size) const {
  hv::MutexLock lock(&mu_);
  return OverlapsLocked(start, size);
}

absl::StatusOr<uint64_t> IovaAllocator::Allocate(uint64_t size,
                                                 uint64_t align) {
  if (size == 0 || size % kPageSize != 0 || align < kPageSize ||
      (align & (align - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IOVA allocation of 0x%x bytes aligned 0x%x: size must be a page "
        "multiple and alignment a power of two >= 4 KiB",
        size, align));
  }
  hv::MutexLock lock(&mu_);
  // Walk gaps from the top: gap_end is the exclusive end of the current gap.
  uint64_t gap_end = limit_;
  auto it = used_.end();
  for (;;) {
    const uint64_t gap_start =
        it == used_.begin() ? floor_
                            : std::prev(it)->first + std::prev(it)->second.size;
    if (gap_end >= size && gap_end - size >= gap_start) {
      const uint64_t start = (gap_end - size) & ~(align - 1);
      if (start >= gap_start) {
        used_[start] = Range{start, size, false};
        return start;
      }
    }
    if (it == used_.begin()) break;
    --it;
    gap_end = it->first;
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "no free IOVA range of 0x%x bytes below 0x%x", size, limit_));
}

absl::Status IovaAllocator::Free(uint64_t start, uint64_t size) {
  hv::MutexLock lock(&mu_);
  auto it = used_.find(start);
  if (it == used_.end() || it->second.size != size || it->second.reserved) {
    return absl::NotFoundError(
        absl::StrFormat("IOVA [0x%x, +0x%x) was not allocated", start, size));
  }
  used_.erase(it);
  return absl::OkStatus();
}

absl::Status IovaAllocator::Reserve(uint64_t start, uint64_t size) {
  if (size == 0 || start + size < start) {
    return absl::InvalidArgumentError("empty or wrapping IOVA reservation");
  }
  hv::MutexLock lock(&mu_);
  if (OverlapsLocked(start, size)) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "IOVA reservation [0x%x, +0x%x) overlaps a used range", start, size));
  }
  // Merge with a reservation ending exactly at start / starting at the end.
  auto next = used_.find(start + size);
  if (next != used_.end() && next->second.reserved) {
    size += next->second.size;
    used_.erase(next);
  }
  auto it = used_.lower_bound(start);
  if (it != used_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.reserved && prev->first + prev->second.size == start) {
      prev->second.size += size;
      return absl::OkStatus();
    }
  }
  used_[start] = Range{start, size, true};
  return absl::OkStatus();
}

std::vector<IovaAllocator::Range> IovaAllocator::ranges() const {
  hv::MutexLock lock(&mu_);
  std::vector<Range> out;
  for (const auto& [s, r] : used_) out.push_back(r);
  return out;
}

size_t IovaAllocator::reserved_count() const {
  hv::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [s, r] : used_) n += r.reserved ? 1 : 0;
  return n;
}

}  // namespace iommu
