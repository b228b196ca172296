#include "iommu/phys_memory.h"

#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "iommu/formats.h"

namespace iommu {
namespace {

absl::StatusOr<std::unique_ptr<PhysMemory>> Wrap(
    absl::StatusOr<std::unique_ptr<hv::GuestMemory>> mem, uint64_t size,
    std::unique_ptr<PhysMemory> (*make)(std::unique_ptr<hv::GuestMemory>,
                                        uint8_t*, uint64_t)) {
  if (!mem.ok()) return mem.status();
  auto span = (*mem)->HostSpan(0, size);
  if (!span.ok()) return span.status();
  return make(std::move(*mem), span->data(), size);
}

absl::Status OutOfRange(uint64_t hpa, uint64_t len) {
  return absl::OutOfRangeError(absl::StrFormat(
      "host physical range [0x%x, +0x%x) is outside physical memory", hpa,
      len));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PhysMemory>> PhysMemory::Create(uint64_t size) {
  return Wrap(
      hv::GuestMemory::Create({{0, size}}), size,
      [](std::unique_ptr<hv::GuestMemory> m, uint8_t* b, uint64_t s) {
        return std::unique_ptr<PhysMemory>(new PhysMemory(std::move(m), b, s));
      });
}

absl::StatusOr<std::unique_ptr<PhysMemory>> PhysMemory::FromFd(int fd,
                                                               uint64_t size) {
  return Wrap(
      hv::GuestMemory::FromFd(fd, 0, {{0, size}}), size,
      [](std::unique_ptr<hv::GuestMemory> m, uint8_t* b, uint64_t s) {
        return std::unique_ptr<PhysMemory>(new PhysMemory(std::move(m), b, s));
      });
}

absl::StatusOr<uint64_t> PhysMemory::Load64(uint64_t hpa) const {
  if (hpa % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("table entry at 0x%x is not 8-byte aligned", hpa));
  }
  if (!Contains(hpa, 8)) return OutOfRange(hpa, 8);
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base_ + hpa))
      .load(std::memory_order_acquire);
}

absl::Status PhysMemory::Store64(uint64_t hpa, uint64_t value) {
  if (hpa % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("table entry at 0x%x is not 8-byte aligned", hpa));
  }
  if (!Contains(hpa, 8)) return OutOfRange(hpa, 8);
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base_ + hpa))
      .store(value, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status PhysMemory::Read(uint64_t hpa, void* dst, size_t len) const {
  if (len == 0) return absl::OkStatus();
  if (!Contains(hpa, len)) return OutOfRange(hpa, len);
  std::memcpy(dst, base_ + hpa, len);
  return absl::OkStatus();
}

absl::Status PhysMemory::Write(uint64_t hpa, const void* src, size_t len) {
  if (len == 0) return absl::OkStatus();
  if (!Contains(hpa, len)) return OutOfRange(hpa, len);
  std::memcpy(base_ + hpa, src, len);
  return absl::OkStatus();
}

absl::Status PhysMemory::ZeroPage(uint64_t hpa) {
  uint64_t* p = MutablePageWords(hpa);
  if (p == nullptr) return OutOfRange(hpa, kPageSize);
  std::memset(p, 0, kPageSize);
  return absl::OkStatus();
}

const uint64_t* PhysMemory::PageWords(uint64_t hpa) const {
  if (hpa % kPageSize != 0 || !Contains(hpa, kPageSize)) return nullptr;
  return reinterpret_cast<const uint64_t*>(base_ + hpa);
}

uint64_t* PhysMemory::MutablePageWords(uint64_t hpa) {
  if (hpa % kPageSize != 0 || !Contains(hpa, kPageSize)) return nullptr;
  return reinterpret_cast<uint64_t*>(base_ + hpa);
}

}  // namespace iommu
