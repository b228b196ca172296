// The hardware's translation caches (VT-d §6.1 context cache, §6.2 IOTLB).
// Entries are filled only by table walks and removed only by invalidation
// commands (or capacity eviction), so after software changes a table entry
// the cached copy keeps being used until the matching invalidation — stale
// behaviour as on real hardware, which the driver must handle by issuing
// invalidations in the right order.
//
// Not thread-safe: IommuHardware guards both with its cache lock.
#ifndef IOMMU_IOTLB_H_
#define IOMMU_IOTLB_H_

#include <cstdint>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "iommu/formats.h"

namespace iommu {

class ContextCache {
 public:
  std::optional<ContextEntry> Lookup(uint16_t sid) const;
  void Insert(uint16_t sid, const ContextEntry& ce);
  void InvalidateAll() { entries_.clear(); }
  void InvalidateDomain(uint16_t did);
  // Device-selective (§6.5.1.1): source-id with function mask FM (0..3:
  // ignore 0..3 low bits of the function number).
  void InvalidateDevice(uint16_t sid, uint8_t fm);
  size_t size() const { return entries_.size(); }

 private:
  absl::flat_hash_map<uint16_t, ContextEntry> entries_;
};

class Iotlb {
 public:
  static constexpr size_t kCapacity = 4096;
  struct Entry {
    uint64_t page_hpa = 0;
    uint64_t page_size = 0;
    uint8_t perms = kPermNone;
  };
  std::optional<Entry> Lookup(uint16_t did, uint64_t iova) const;
  void Insert(uint16_t did, uint64_t iova, const Entry& e);
  void InvalidateAll() { entries_.clear(); }
  void InvalidateDomain(uint16_t did);
  // Page-selective (§6.5.1.2): 2^am 4 KiB pages at `addr` (aligned down).
  void InvalidatePages(uint16_t did, uint64_t addr, uint8_t am);
  size_t size() const { return entries_.size(); }

 private:
  // key = did:16 | level:3 | page number at that level's page size.
  static uint64_t Key(uint16_t did, int level, uint64_t iova);
  absl::flat_hash_map<uint64_t, Entry> entries_;
};

}  // namespace iommu

#endif  // IOMMU_IOTLB_H_
