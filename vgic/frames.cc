// MMIO frame dispatch and the register helpers shared by the distributor and
// the redistributors' SGI_base frame.
#include "absl/strings/str_format.h"
#include "vgic/vgic.h"

namespace vgic {

absl::Status Vgic::CheckAccess(const char* frame, uint64_t offset, uint8_t size,
                               uint32_t allowed) {
  if (size > 8 || ((1u << size) & allowed) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s offset 0x%x: %d-byte access not allowed (GICv3 §12.1.3)", frame,
        offset, size));
  }
  if (offset % size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s offset 0x%x: unaligned %d-byte access", frame, offset, size));
  }
  return absl::OkStatus();
}

bool Vgic::ReadIrqBit(const Irq& irq, uint32_t index) {
  switch (index) {
    case 1:  // IGROUPR
      return irq.group1;
    case 2:  // ISENABLER
    case 3:  // ICENABLER
      return irq.enabled;
    case 4:  // ISPENDR
    case 5:  // ICPENDR
      return irq.pending();
    case 6:  // ISACTIVER
    case 7:  // ICACTIVER
      return irq.active;
    default:
      return false;
  }
}

void Vgic::WriteIrqBit(Irq& irq, uint32_t index, bool bit, uint32_t intid,
                       Deferred* d) {
  if (index == 1) {
    irq.group1 = bit;
    return;
  }
  if (!bit) return;  // set/clear registers: writing 0 has no effect
  switch (index) {
    case 2:
      irq.enabled = true;
      break;
    case 3:
      irq.enabled = false;
      break;
    case 4:
      irq.pending_latch = true;
      break;
    case 5:
      // ICPENDR clears the latch; a level-sensitive source still asserting
      // keeps the interrupt pending (§4.1.2).
      irq.pending_latch = false;
      break;
    case 6:
      irq.active = true;
      break;
    case 7:
      DeactivateIrq(irq, intid, d);
      break;
    default:
      break;
  }
}

absl::Status Vgic::Frame::Read(const hv::MmioContext& ctx, uint64_t offset,
                               uint8_t size, uint64_t* value) {
  *value = 0;
  switch (kind_) {
    case Kind::kDist:
      if (offset >= kDistributorFrameSize) break;
      return vgic_->DistRead(offset, size, value);
    case Kind::kRedist: {
      const uint64_t v = offset / kRedistributorStride;
      if (v >= vgic_->num_vcpus_) break;
      const uint64_t off = offset % kRedistributorStride;
      if (off < kRedistributorSgiBase) {
        return vgic_->RedistRead(static_cast<uint32_t>(v), off, size, value);
      }
      return vgic_->SgiRead(static_cast<uint32_t>(v),
                            off - kRedistributorSgiBase, size, value);
    }
    case Kind::kCpuIf:
      if (offset >= kCpuInterfaceFrameSize) break;
      return vgic_->CpuIfRead(ctx, offset, size, value);
  }
  return absl::OutOfRangeError(
      absl::StrFormat("GIC frame offset 0x%x out of range", offset));
}

absl::Status Vgic::Frame::Write(const hv::MmioContext& ctx, uint64_t offset,
                                uint8_t size, uint64_t value) {
  switch (kind_) {
    case Kind::kDist:
      if (offset >= kDistributorFrameSize) break;
      return vgic_->DistWrite(offset, size, value);
    case Kind::kRedist: {
      const uint64_t v = offset / kRedistributorStride;
      if (v >= vgic_->num_vcpus_) break;
      const uint64_t off = offset % kRedistributorStride;
      if (off < kRedistributorSgiBase) {
        return vgic_->RedistWrite(static_cast<uint32_t>(v), off, size, value);
      }
      return vgic_->SgiWrite(static_cast<uint32_t>(v),
                             off - kRedistributorSgiBase, size, value);
    }
    case Kind::kCpuIf:
      if (offset >= kCpuInterfaceFrameSize) break;
      return vgic_->CpuIfWrite(ctx, offset, size, value);
  }
  return absl::OutOfRangeError(
      absl::StrFormat("GIC frame offset 0x%x out of range", offset));
}

}  // namespace vgic
