// Guest physical memory (DESIGN §5): one memfd holds every RAM region back to
// back, so the fd can be handed to another process (hwsim's DMA engines, a
// posted-interrupt producer) and mapped there. Every access by a device model
// goes through the bounds-checked methods below; no code outside this class
// does pointer arithmetic with guest-supplied addresses.
//
// Thread safety: the region layout is immutable after construction, so all
// methods may be called from any thread. Accesses are plain memcpy: like real
// DMA they are not atomic against concurrent guest writes, except the
// Atomic* helpers, which use sequentially consistent atomic operations on
// naturally aligned words.
#ifndef HV_MEMORY_GUEST_MEMORY_H_
#define HV_MEMORY_GUEST_MEMORY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hv {

struct MemoryRegion {
  uint64_t gpa = 0;   // guest physical base, page aligned
  uint64_t size = 0;  // bytes, page aligned, > 0
};

class GuestMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // Creates a fresh memfd sized to the sum of `regions` and maps it. Regions
  // must be page aligned, non-empty, non-overlapping and not wrap.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(
      std::vector<MemoryRegion> regions);

  // Maps an existing memory fd (e.g. hwsim's physical memory): region i is
  // backed by the fd starting at `fd_offset` plus the sizes of regions < i.
  // The fd is duplicated; the caller keeps ownership of `fd`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GuestMemory>> FromFd(
      int fd, uint64_t fd_offset, std::vector<MemoryRegion> regions);

  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // True if [gpa, gpa + len) lies entirely inside one region (len 0 → false).
  bool Contains(uint64_t gpa, uint64_t len) const;

  // Errors: OutOfRange naming the address when any byte is outside RAM.
  [[nodiscard]] absl::Status Read(uint64_t gpa, void* dst, size_t len) const;
  [[nodiscard]] absl::Status Write(uint64_t gpa, const void* src, size_t len);
  [[nodiscard]] absl::Status Fill(uint64_t gpa, uint8_t value, size_t len);

  template <typename T>
  [[nodiscard]] absl::StatusOr<T> ReadObj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status s = Read(gpa, &value, sizeof(T));
    if (!s.ok()) return s;
    return value;
  }
  template <typename T>
  [[nodiscard]] absl::Status WriteObj(uint64_t gpa, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(gpa, &value, sizeof(T));
  }

  // Atomic operations on naturally aligned 64-bit words in guest memory
  // (shared pending bitmaps, posted-interrupt descriptors).
  // InvalidArgument if misaligned, OutOfRange if outside RAM.
  [[nodiscard]] absl::StatusOr<uint64_t> AtomicLoad64(uint64_t gpa) const;
  [[nodiscard]] absl::StatusOr<uint64_t> AtomicFetchOr64(uint64_t gpa,
                                                         uint64_t bits);
  [[nodiscard]] absl::StatusOr<uint64_t> AtomicFetchAnd64(uint64_t gpa,
                                                          uint64_t bits);

  // Host view of [gpa, gpa + len) for bulk work (KVM memory slots, image
  // loading). The span stays valid for the lifetime of this object.
  [[nodiscard]] absl::StatusOr<absl::Span<uint8_t>> HostSpan(uint64_t gpa,
                                                             uint64_t len);

  int fd() const { return fd_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t total_size() const { return total_size_; }
  // Host address of region `i` (for KVM_SET_USER_MEMORY_REGION).
  uint8_t* region_host_base(size_t i) const;

 private:
  GuestMemory(int fd, uint8_t* base, uint64_t total_size,
              std::vector<MemoryRegion> regions);
  // Host pointer for [gpa, gpa+len) or nullptr when not inside one region.
  uint8_t* Translate(uint64_t gpa, uint64_t len) const;

  const int fd_;
  uint8_t* const base_;  // mapping of the whole fd range
  const uint64_t total_size_;
  const std::vector<MemoryRegion> regions_;  // sorted by gpa
  std::vector<uint64_t> region_offsets_;     // offset of region i in base_
};

}  // namespace hv

#endif  // HV_MEMORY_GUEST_MEMORY_H_
