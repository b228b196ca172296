#include "iommu/register_io.h"

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "iommu/formats.h"

namespace iommu {
namespace {
// Register-based commands complete synchronously in the model; a real or
// remote unit may take a while, so poll a bounded number of times.
constexpr int kPollLimit = 1000000;
}  // namespace

absl::StatusOr<uint64_t> RegisterIo::Read64(Reg r) {
  uint64_t v = 0;
  HV_RETURN_IF_ERROR(regs_->Read({}, RegOffset(r), 8, &v));
  return v;
}

absl::StatusOr<uint32_t> RegisterIo::Read32(Reg r) {
  uint64_t v = 0;
  HV_RETURN_IF_ERROR(regs_->Read({}, RegOffset(r), 4, &v));
  return static_cast<uint32_t>(v);
}

absl::Status RegisterIo::Write64(Reg r, uint64_t v) {
  return regs_->Write({}, RegOffset(r), 8, v);
}

absl::Status RegisterIo::Write32(Reg r, uint32_t v) {
  return regs_->Write({}, RegOffset(r), 4, v);
}

absl::Status RegisterIo::SetRootTable(uint64_t rtaddr) {
  HV_RETURN_IF_ERROR(Write64(Reg::kRtaddr, rtaddr & kAddrMask));
  HV_ASSIGN_OR_RETURN(uint32_t gsts, Read32(Reg::kGsts));
  // §10.4.4: write the persistent status bits back unchanged (TE stays on
  // if it was on — turning it off here would let DMA bypass translation)
  // plus the one-shot SRTP command.
  HV_RETURN_IF_ERROR(Write32(Reg::kGcmd, (gsts & gsts::kTes) | gcmd::kSrtp));
  for (int i = 0; i < kPollLimit; ++i) {
    HV_ASSIGN_OR_RETURN(uint32_t s, Read32(Reg::kGsts));
    if ((s & gsts::kRtps) != 0) return absl::OkStatus();
  }
  return absl::DeadlineExceededError("GSTS.RTPS never set after SRTP");
}

absl::Status RegisterIo::SetTranslation(bool on) {
  HV_ASSIGN_OR_RETURN(uint32_t gsts, Read32(Reg::kGsts));
  const uint32_t cmd = on ? (gsts & gsts::kTes) | gcmd::kTe : 0;
  HV_RETURN_IF_ERROR(Write32(Reg::kGcmd, cmd));
  for (int i = 0; i < kPollLimit; ++i) {
    HV_ASSIGN_OR_RETURN(uint32_t s, Read32(Reg::kGsts));
    if (((s & gsts::kTes) != 0) == on) return absl::OkStatus();
  }
  return absl::DeadlineExceededError("GSTS.TES did not follow GCMD.TE");
}

absl::Status RegisterIo::ContextCommand(uint64_t cmd) {
  HV_RETURN_IF_ERROR(Write64(Reg::kCcmd, cmd | ccmd::kIcc));
  for (int i = 0; i < kPollLimit; ++i) {
    HV_ASSIGN_OR_RETURN(uint64_t v, Read64(Reg::kCcmd));
    if ((v & ccmd::kIcc) == 0) {
      if (((v >> ccmd::kCaigShift) & 3) == 0) {
        return absl::InternalError("context-cache invalidation not performed");
      }
      return absl::OkStatus();
    }
  }
  return absl::DeadlineExceededError("CCMD.ICC never cleared");
}

absl::Status RegisterIo::IotlbCommand(uint64_t cmd) {
  HV_RETURN_IF_ERROR(Write64(Reg::kIotlb, cmd | iotlb_reg::kIvt));
  for (int i = 0; i < kPollLimit; ++i) {
    HV_ASSIGN_OR_RETURN(uint64_t v, Read64(Reg::kIotlb));
    if ((v & iotlb_reg::kIvt) == 0) {
      if (((v >> iotlb_reg::kIaigShift) & 3) == 0) {
        return absl::InternalError("IOTLB invalidation not performed");
      }
      return absl::OkStatus();
    }
  }
  return absl::DeadlineExceededError("IOTLB.IVT never cleared");
}

absl::Status RegisterIo::InvalidateContextGlobal() {
  return ContextCommand(ccmd::kGlobal << ccmd::kCirgShift);
}

absl::Status RegisterIo::InvalidateContextDevice(uint16_t sid, uint16_t did) {
  return ContextCommand((ccmd::kDevice << ccmd::kCirgShift) |
                        (uint64_t{sid} << ccmd::kSidShift) | did);
}

absl::Status RegisterIo::InvalidateIotlbGlobal() {
  return IotlbCommand(iotlb_reg::kGlobal << iotlb_reg::kIirgShift);
}

absl::Status RegisterIo::InvalidateIotlbDomain(uint16_t did) {
  return IotlbCommand((iotlb_reg::kDomain << iotlb_reg::kIirgShift) |
                      (uint64_t{did} << iotlb_reg::kDidShift));
}

absl::Status RegisterIo::InvalidateIotlbRange(uint16_t did, uint64_t iova,
                                              uint64_t size) {
  HV_ASSIGN_OR_RETURN(uint64_t cap_reg, Read64(Reg::kCap));
  const uint64_t mamv = (cap_reg >> cap::kMamvShift) & 0x3f;
  if ((cap_reg & cap::kPsi) == 0 || size == 0) {
    return InvalidateIotlbDomain(did);
  }
  // Smallest naturally aligned power-of-two block covering the range.
  uint64_t am = 0;
  uint64_t base = iova & kAddrMask;
  while (base + (kPageSize << am) < iova + size) {
    ++am;
    base &= ~((kPageSize << am) - 1);
    if (am > mamv) return InvalidateIotlbDomain(did);
  }
  HV_RETURN_IF_ERROR(Write64(Reg::kIva, base | am));
  return IotlbCommand((iotlb_reg::kPage << iotlb_reg::kIirgShift) |
                      (uint64_t{did} << iotlb_reg::kDidShift));
}

}  // namespace iommu
