// Test fixtures: a physical memory with a driver table pool and a reserved
// (crashkernel=) region, the hardware model, and a random population of
// domains, devices and mappings.
#ifndef IOMMU_TEST_UTIL_H_
#define IOMMU_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "iommu/driver.h"
#include "iommu/hardware.h"
#include "iommu/page_allocator.h"
#include "iommu/phys_memory.h"

namespace iommu {

struct TestEnv {
  std::unique_ptr<PhysMemory> mem;
  std::unique_ptr<PageAllocator> pool;      // the running driver's tables
  std::unique_ptr<PageAllocator> reserved;  // the recovery region
  std::unique_ptr<IommuHardware> hw;

  // Layout: [0, data) data pages, then pool_pages, then reserved_pages.
  static absl::StatusOr<std::unique_ptr<TestEnv>> Create(
      uint64_t data_bytes, uint64_t pool_pages, uint64_t reserved_pages);
  uint64_t data_bytes = 0;
};

struct TestMapping {
  uint16_t did = 0;
  uint64_t iova = 0;
  uint64_t hpa = 0;
  uint64_t size = 0;
  uint8_t perms = kPermNone;
};

struct PopulateSpec {
  int domains = 8;
  int max_devices_per_domain = 3;
  int pass_through_devices = 2;
  int ranges = 1000;  // total mappings across domains
  int min_levels = 3;
  int max_levels = 5;
  bool superpages = true;
  uint64_t seed = 1;
};

struct Population {
  std::vector<uint16_t> dids;
  std::map<uint16_t, uint16_t> sid_to_did;  // including pass-through
  std::vector<TestMapping> mappings;
};

// Creates domains, attaches devices (random bus/devfn), maps random ranges
// (with 2 MiB / 1 GiB pages when spec.superpages) into HPAs inside
// [0, data_bytes) (wrapping around — several IOVAs may alias one HPA).
absl::StatusOr<Population> Populate(IommuDriver* driver, uint64_t data_bytes,
                                    const PopulateSpec& spec);

}  // namespace iommu

#endif  // IOMMU_TEST_UTIL_H_
