// Host physical memory as the IOMMU sees it (DESIGN §2, §6): one memfd, HPA =
// byte offset in it. hv-hwsim owns the memfd; hvd maps the same fd
// (FromFd), so translation tables written by the driver are read by the
// hardware model in another process.
//
// Built on hv::GuestMemory (one region at address 0) for the memfd and the
// bounds checks. Table entries are accessed with 64-bit atomic loads/stores
// (acquire/release), so a DMA thread walking the tables while the driver
// updates them sees either the old or the new entry, never a torn one, and
// TSan sees the publication edge. Bulk page access (PageWords) is for tables
// no other thread can be writing (the crashed instance's tables, freshly
// allocated copies before they are published).
//
// Thread safety: immutable layout; every method may be called from any
// thread.
#ifndef IOMMU_PHYS_MEMORY_H_
#define IOMMU_PHYS_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/memory/guest_memory.h"

namespace iommu {

class PhysMemory {
 public:
  // A fresh memfd of `size` bytes (page multiple, > 0).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PhysMemory>> Create(
      uint64_t size);
  // Maps `size` bytes of an existing memfd (e.g. hwsim's) at HPA 0.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PhysMemory>> FromFd(
      int fd, uint64_t size);

  uint64_t size() const { return size_; }
  int fd() const { return mem_->fd(); }
  bool Contains(uint64_t hpa, uint64_t len) const {
    return len != 0 && hpa < size_ && len <= size_ - hpa;
  }

  // Atomic 64-bit table-entry access. InvalidArgument if misaligned,
  // OutOfRange if outside memory.
  [[nodiscard]] absl::StatusOr<uint64_t> Load64(uint64_t hpa) const;
  [[nodiscard]] absl::Status Store64(uint64_t hpa, uint64_t value);

  // Bulk (non-atomic) access, bounds checked.
  [[nodiscard]] absl::Status Read(uint64_t hpa, void* dst, size_t len) const;
  [[nodiscard]] absl::Status Write(uint64_t hpa, const void* src, size_t len);
  [[nodiscard]] absl::Status ZeroPage(uint64_t hpa);

  // The 512 words of the 4 KiB page at `hpa`, or nullptr when `hpa` is not
  // page aligned or not inside memory. Non-atomic: see the file comment.
  const uint64_t* PageWords(uint64_t hpa) const;
  uint64_t* MutablePageWords(uint64_t hpa);

 private:
  PhysMemory(std::unique_ptr<hv::GuestMemory> mem, uint8_t* base, uint64_t size)
      : mem_(std::move(mem)), base_(base), size_(size) {}

  std::unique_ptr<hv::GuestMemory> mem_;
  uint8_t* const base_;
  const uint64_t size_;
};

}  // namespace iommu

#endif  // IOMMU_PHYS_MEMORY_H_
