// Human-readable dump of an IOMMU's tables (for the iommu_dump tool and for
// hvd diagnostics): per device its context (TT, AW, DID, FPD) and its
// mappings as maximal IOVA ranges (same page size and rights, physically
// contiguous), the information needed to explain a DMA fault record.
// Read-only and bounds checked; malformed entries are reported inline, not
// followed.
#ifndef IOMMU_TABLE_DUMP_H_
#define IOMMU_TABLE_DUMP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "iommu/formats.h"
#include "iommu/phys_memory.h"

namespace iommu {

struct DumpRange {
  uint64_t iova = 0;
  uint64_t hpa = 0;
  uint64_t size = 0;
  uint64_t page_size = 0;
  uint8_t perms = kPermNone;
};

struct DeviceDump {
  uint16_t sid = 0;
  ContextEntry context;
  std::string error;  // non-empty: the context or its tables are malformed
  std::vector<DumpRange> ranges;
};

// Every device with a present context entry under `rtaddr`; if `only_sid`
// is set, just that device. Stops collecting a device's ranges after
// `max_ranges` (reported in `error`).
std::vector<DeviceDump> DumpTables(const PhysMemory& mem, uint64_t rtaddr,
                                   std::optional<uint16_t> only_sid,
                                   size_t max_ranges = 1 << 20);

// Text form: one header line per device, one line per range.
std::string FormatDump(const std::vector<DeviceDump>& devices);

}  // namespace iommu

#endif  // IOMMU_TABLE_DUMP_H_
