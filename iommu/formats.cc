#include "iommu/formats.h"

namespace iommu {

std::string_view FaultReasonName(FaultReason r) {
  switch (r) {
    case FaultReason::kNone:
      return "no fault";
    case FaultReason::kRootNotPresent:
      return "root entry not present";
    case FaultReason::kContextNotPresent:
      return "context entry not present";
    case FaultReason::kInvalidContext:
      return "invalid context entry";
    case FaultReason::kBeyondAgaw:
      return "address beyond AGAW";
    case FaultReason::kWriteNotPermitted:
      return "write not permitted";
    case FaultReason::kReadNotPermitted:
      return "read not permitted";
    case FaultReason::kPagingEntryAccess:
      return "paging entry not accessible";
    case FaultReason::kRootTableAccess:
      return "root table not accessible";
    case FaultReason::kContextTableAccess:
      return "context table not accessible";
    case FaultReason::kRootReserved:
      return "reserved bits in root entry";
    case FaultReason::kContextReserved:
      return "reserved bits in context entry";
    case FaultReason::kPagingEntryReserved:
      return "reserved bits in paging entry";
  }
  return "unknown fault reason";
}

}  // namespace iommu
