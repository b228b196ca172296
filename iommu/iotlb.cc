#include "iommu/iotlb.h"

namespace iommu {

std::optional<ContextEntry> ContextCache::Lookup(uint16_t sid) const {
  auto it = entries_.find(sid);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void ContextCache::Insert(uint16_t sid, const ContextEntry& ce) {
  entries_[sid] = ce;
}

void ContextCache::InvalidateDomain(uint16_t did) {
  absl::erase_if(entries_,
                 [did](const auto& kv) { return kv.second.did() == did; });
}

void ContextCache::InvalidateDevice(uint16_t sid, uint8_t fm) {
  const uint16_t mask = static_cast<uint16_t>(~((1u << (fm & 3)) - 1));
  absl::erase_if(entries_, [sid, mask](const auto& kv) {
    return (kv.first & mask) == (sid & mask);
  });
}

uint64_t Iotlb::Key(uint16_t did, int level, uint64_t iova) {
  const uint64_t pfn = iova >> (kPageShift + kStrideBits * (level - 1));
  return (uint64_t{did} << 48) | (uint64_t(level) << 45) |
         (pfn & ((uint64_t{1} << 45) - 1));
}

std::optional<Iotlb::Entry> Iotlb::Lookup(uint16_t did, uint64_t iova) const {
  for (int level = 1; level <= 4; ++level) {
    auto it = entries_.find(Key(did, level, iova));
    if (it != entries_.end()) return it->second;
  }
  return std::nullopt;
}

void Iotlb::Insert(uint16_t did, uint64_t iova, const Entry& e) {
  if (entries_.size() >= kCapacity) entries_.clear();  // simple eviction
  int level = 1;
  while (LevelPageSize(level) < e.page_size) ++level;
  entries_[Key(did, level, iova)] = e;
}

void Iotlb::InvalidateDomain(uint16_t did) {
  absl::erase_if(entries_,
                 [did](const auto& kv) { return (kv.first >> 48) == did; });
}

void Iotlb::InvalidatePages(uint16_t did, uint64_t addr, uint8_t am) {
  const uint64_t len = kPageSize << am;
  const uint64_t start = addr & ~(len - 1);
  absl::erase_if(entries_, [&](const auto& kv) {
    if ((kv.first >> 48) != did) return false;
    const int level = static_cast<int>((kv.first >> 45) & 7);
    const uint64_t psize = LevelPageSize(level);
    const uint64_t pfn = kv.first & ((uint64_t{1} << 45) - 1);
    const uint64_t base = pfn * psize;
    return base < start + len && start < base + psize;
  });
}

}  // namespace iommu
