#include "iommu/test_util.h"

#include <set>

#include "hv/base/status_macros.h"

namespace iommu {

absl::StatusOr<std::unique_ptr<TestEnv>> TestEnv::Create(
    uint64_t data_bytes, uint64_t pool_pages, uint64_t reserved_pages) {
  auto env = std::make_unique<TestEnv>();
  env->data_bytes = data_bytes;
  const uint64_t total = data_bytes + (pool_pages + reserved_pages) * kPageSize;
  HV_ASSIGN_OR_RETURN(env->mem, PhysMemory::Create(total));
  HV_ASSIGN_OR_RETURN(env->pool,
                      PageAllocator::Create(env->mem.get(), data_bytes,
                                            pool_pages * kPageSize));
  HV_ASSIGN_OR_RETURN(
      env->reserved,
      PageAllocator::Create(env->mem.get(), data_bytes + pool_pages * kPageSize,
                            reserved_pages * kPageSize));
  env->hw = std::make_unique<IommuHardware>(env->mem.get());
  return env;
}

absl::StatusOr<Population> Populate(IommuDriver* driver, uint64_t data_bytes,
                                    const PopulateSpec& spec) {
  std::mt19937_64 rng(spec.seed);
  Population pop;
  std::set<uint16_t> used_sids;
  auto new_sid = [&]() {
    for (;;) {
      const uint16_t sid = static_cast<uint16_t>(rng());
      if (used_sids.insert(sid).second) return sid;
    }
  };
  std::map<uint16_t, int> levels;
  for (int i = 0; i < spec.domains; ++i) {
    const int l =
        spec.min_levels +
        static_cast<int>(rng() % (spec.max_levels - spec.min_levels + 1));
    HV_ASSIGN_OR_RETURN(uint16_t did, driver->CreateDomain(l));
    levels[did] = l;
    pop.dids.push_back(did);
    const int devs = 1 + static_cast<int>(rng() % spec.max_devices_per_domain);
    for (int j = 0; j < devs; ++j) {
      const uint16_t sid = new_sid();
      HV_RETURN_IF_ERROR(driver->Attach(sid, did));
      pop.sid_to_did[sid] = did;
    }
  }
  if (spec.pass_through_devices > 0) {
    HV_ASSIGN_OR_RETURN(uint16_t pt, driver->CreatePassThroughDomain());
    for (int j = 0; j < spec.pass_through_devices; ++j) {
      const uint16_t sid = new_sid();
      HV_RETURN_IF_ERROR(driver->Attach(sid, pt));
      pop.sid_to_did[sid] = pt;
    }
  }
  if (pop.dids.empty()) return pop;
  const uint64_t data_pages = data_bytes / kPageSize;
  for (int i = 0; i < spec.ranges; ++i) {
    const uint16_t did = pop.dids[rng() % pop.dids.size()];
    int kind = spec.superpages ? static_cast<int>(rng() % 20) : 0;
    if (kind == 0 && levels[did] < 3) kind = 1;  // 1 GiB = whole 2-level space
    uint64_t size, align;
    if (kind == 0) {  // a 1 GiB page now and then
      size = align = uint64_t{1} << 30;
    } else if (kind < 4) {  // 2 MiB pages
      size = (1 + rng() % 3) << 21;
      align = uint64_t{1} << 21;
    } else {  // 4 KiB pages
      size = (1 + rng() % 16) * kPageSize;
      align = kPageSize;
    }
    if (!spec.superpages) {
      size = (1 + rng() % 16) * kPageSize;
      align = kPageSize;
    }
    HV_ASSIGN_OR_RETURN(uint64_t iova, driver->AllocIova(did, size, align));
    // HPA aligned like the IOVA so superpages are possible; 1 GiB pages may
    // point beyond the data region (only the first bytes are DMA'd).
    uint64_t hpa;
    if (align >= (uint64_t{1} << 30)) {
      hpa = (rng() % 4) << 30;
    } else {
      const uint64_t slots = data_bytes / align;
      hpa = (rng() % (slots > size / align ? slots - size / align : 1)) * align;
      if (hpa + size > data_pages * kPageSize) hpa = 0;
    }
    const uint8_t perms = static_cast<uint8_t>(1 + rng() % 3);
    HV_RETURN_IF_ERROR(driver->Map(did, iova, hpa, size, perms));
    pop.mappings.push_back(TestMapping{did, iova, hpa, size, perms});
  }
  return pop;
}

}  // namespace iommu
