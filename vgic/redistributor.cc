// GICR frames (GICv3 §12.10 RD_base, §12.11 SGI_base), one 128 KiB pair per
// vCPU. Widths (§12.1.3): 32-bit registers take 32-bit accesses; TYPER,
// PROPBASER, PENDBASER (and the absent SETLPIR/CLRLPIR/INVLPIR/INVALLR) take
// 64-bit accesses or either 32-bit half; IPRIORITYR is byte accessible.
#include "absl/strings/str_format.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

constexpr uint64_t Off(GicrReg r) { return static_cast<uint64_t>(r); }
constexpr uint64_t Off(GicrSgiReg r) { return static_cast<uint64_t>(r); }
constexpr uint32_t kWord = 1u << 4;
constexpr uint32_t kByteOrWord = (1u << 1) | (1u << 4);
constexpr uint32_t kWordOrDword = (1u << 4) | (1u << 8);

bool Is64BitReg(uint64_t reg) {
  return reg == Off(GicrReg::kTyper) || reg == Off(GicrReg::kPropbaser) ||
         reg == Off(GicrReg::kPendbaser) || reg == Off(GicrReg::kSetLpir) ||
         reg == Off(GicrReg::kClrLpir) || reg == Off(GicrReg::kInvlpir) ||
         reg == Off(GicrReg::kInvallr);
}

// Extracts the accessed part of a 64-bit register.
uint64_t Part(uint64_t reg_value, uint64_t offset, uint8_t size) {
  if (size == 8) return reg_value;
  return offset % 8 == 0 ? reg_value & 0xffffffff : reg_value >> 32;
}

// Merges a 32- or 64-bit write into a 64-bit register value.
uint64_t Merge(uint64_t old, uint64_t offset, uint8_t size, uint64_t value) {
  if (size == 8) return value;
  if (offset % 8 == 0)
    return (old & ~uint64_t{0xffffffff}) | (value & 0xffffffff);
  return (old & 0xffffffff) | (value << 32);
}

}  // namespace

absl::Status Vgic::RedistRead(uint32_t v, uint64_t offset, uint8_t size,
                              uint64_t* value) {
  *value = 0;
  const uint64_t reg = offset & ~uint64_t{7};
  if (Is64BitReg(reg)) {
    absl::Status s = CheckAccess("GICR", offset, size, kWordOrDword);
    if (!s.ok()) return s;
    VcpuState& vc = *vcpus_[v];
    uint64_t r = 0;
    if (reg == Off(GicrReg::kTyper)) {
      // PLPIS=1, VLPIS=0, DirectLPI=0, Last on the final frame,
      // Processor_Number = v, CommonLPIAff = 0 (all redistributors share the
      // configuration table), Affinity_Value = Aff3.Aff2.Aff1.Aff0.
      const uint64_t mpidr = VcpuMpidr(v);
      const uint64_t aff = (mpidr & 0xffffff) | ((mpidr >> 32 & 0xff) << 24);
      r = kGicrTyperPlpis | (uint64_t{v} << kGicrTyperProcNumShift) |
          (aff << kGicrTyperAffinityShift);
      if (v == num_vcpus_ - 1) r |= kGicrTyperLast;
    } else if (reg == Off(GicrReg::kPropbaser)) {
      hv::MutexLock l(&vc.lpi_mu);
      r = vc.propbaser;
    } else if (reg == Off(GicrReg::kPendbaser)) {
      hv::MutexLock l(&vc.lpi_mu);
      r = vc.pendbaser;  // PTZ is write-only and reads as 0
    }
    *value = Part(r, offset, size);
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICR", offset, size, kWord);
  if (!s.ok()) return s;
  VcpuState& vc = *vcpus_[v];
  switch (static_cast<GicrReg>(offset)) {
    case GicrReg::kCtlr:
      *value = vc.lpis_enabled.load() ? kGicrCtlrEnableLpis : 0;
      return absl::OkStatus();
    case GicrReg::kIidr:
      *value = kIidr;
      return absl::OkStatus();
    case GicrReg::kWaker: {
      hv::MutexLock l(&vc.lpi_mu);
      *value = vc.waker;
      return absl::OkStatus();
    }
    case GicrReg::kPidr2:
      *value = kPidr2ArchRevGicv3;
      return absl::OkStatus();
    default:
      // STATUSR, SYNCR (never busy), reserved: RAZ.
      return absl::OkStatus();
  }
}

absl::Status Vgic::RedistWrite(uint32_t v, uint64_t offset, uint8_t size,
                               uint64_t value) {
  VcpuState& vc = *vcpus_[v];
  const uint64_t reg = offset & ~uint64_t{7};
  if (Is64BitReg(reg)) {
    absl::Status s = CheckAccess("GICR", offset, size, kWordOrDword);
    if (!s.ok()) return s;
    hv::MutexLock l(&vc.lpi_mu);
    // §12.10.20/21: while EnableLPIs == 1 the table registers are read-only
    // here (the spec leaves writes UNPREDICTABLE; hv ignores them).
    if (vc.lpis_enabled.load()) return absl::OkStatus();
    if (reg == Off(GicrReg::kPropbaser)) {
      vc.propbaser =
          Merge(vc.propbaser, offset, size, value) & kPropbaserWritable;
      vc.prop_mirror.store(vc.propbaser);
    } else if (reg == Off(GicrReg::kPendbaser)) {
      const uint64_t full = Merge(vc.pendbaser, offset, size, value);
      vc.pendbaser = full & kPendbaserStored;
      vc.ptz = (full & kPendbaserPtz) != 0;
    }
    // TYPER is RO; the DirectLPI registers are absent (DirectLPI = 0): WI.
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICR", offset, size, kWord);
  if (!s.ok()) return s;
  switch (static_cast<GicrReg>(offset)) {
    case GicrReg::kCtlr: {
      hv::MutexLock l(&vc.lpi_mu);
      const bool want = (value & kGicrCtlrEnableLpis) != 0;
      const bool have = vc.lpis_enabled.load();
      if (want && !have) return EnableLpis(vc, v);
      if (!want && have) return DisableLpis(vc, v);
      return absl::OkStatus();
    }
    case GicrReg::kWaker: {
      // ProcessorSleep is RW; ChildrenAsleep follows it at once (no
      // quiescence to wait for). Delivery is not gated on it: the IRQ line
      // doubles as the wake-up request the spec describes.
      hv::MutexLock l(&vc.lpi_mu);
      vc.waker = (value & kGicrWakerProcessorSleep) != 0
                     ? kGicrWakerProcessorSleep | kGicrWakerChildrenAsleep
                     : 0;
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // RO / reserved: WI
  }
}

absl::Status Vgic::SgiRead(uint32_t v, uint64_t offset, uint8_t size,
                           uint64_t* value) {
  *value = 0;
  VcpuState& vc = *vcpus_[v];
  if (offset >= Off(GicrSgiReg::kIpriorityr) &&
      offset < Off(GicrSgiReg::kIpriorityr) + kNumPrivate) {
    absl::Status s = CheckAccess("GICR SGI_base", offset, size, kByteOrWord);
    if (!s.ok()) return s;
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicrSgiReg::kIpriorityr));
    hv::SpinLockHolder l(&vc.lock);
    for (uint32_t i = 0; i < size; ++i) {
      *value |= uint64_t{vc.priv[first + i].priority} << (8 * i);
    }
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICR SGI_base", offset, size, kWord);
  if (!s.ok()) return s;
  if (offset >= Off(GicrSgiReg::kIgroupr0) &&
      offset < Off(GicrSgiReg::kIpriorityr)) {
    if ((offset & 0x7f) != 0) return absl::OkStatus();  // no extended PPIs
    const uint32_t index = static_cast<uint32_t>(offset >> 7);
    hv::SpinLockHolder l(&vc.lock);
    for (uint32_t i = 0; i < kNumPrivate; ++i) {
      if (ReadIrqBit(vc.priv[i], index)) *value |= uint64_t{1} << i;
    }
    return absl::OkStatus();
  }
  if (offset == Off(GicrSgiReg::kIcfgr0)) {
    *value = 0xaaaaaaaa;  // SGIs: always edge-triggered, RO
    return absl::OkStatus();
  }
  if (offset == Off(GicrSgiReg::kIcfgr1)) {
    hv::SpinLockHolder l(&vc.lock);
    for (uint32_t i = 0; i < 16; ++i) {
      if (vc.priv[kNumSgis + i].edge) *value |= uint64_t{2} << (2 * i);
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();  // IGRPMODR0/NSACR (DS=1) and reserved: RAZ
}

absl::Status Vgic::SgiWrite(uint32_t v, uint64_t offset, uint8_t size,
                            uint64_t value) {
  VcpuState& vc = *vcpus_[v];
  Deferred d;
  if (offset >= Off(GicrSgiReg::kIpriorityr) &&
      offset < Off(GicrSgiReg::kIpriorityr) + kNumPrivate) {
    absl::Status s = CheckAccess("GICR SGI_base", offset, size, kByteOrWord);
    if (!s.ok()) return s;
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicrSgiReg::kIpriorityr));
    hv::SpinLockHolder l(&vc.lock);
    for (uint32_t i = 0; i < size; ++i) {
      vc.priv[first + i].priority =
          static_cast<uint8_t>((value >> (8 * i)) & kPriorityMask);
    }
    UpdateLineLocked(vc, v);
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICR SGI_base", offset, size, kWord);
  if (!s.ok()) return s;
  const uint32_t v32 = static_cast<uint32_t>(value);
  if (offset >= Off(GicrSgiReg::kIgroupr0) &&
      offset < Off(GicrSgiReg::kIpriorityr)) {
    if ((offset & 0x7f) != 0) return absl::OkStatus();
    const uint32_t index = static_cast<uint32_t>(offset >> 7);
    {
      hv::SpinLockHolder l(&vc.lock);
      for (uint32_t i = 0; i < kNumPrivate; ++i) {
        const bool bit = (v32 >> i) & 1;
        if (index != 1 && !bit) continue;
        WriteIrqBit(vc.priv[i], index, bit, i, &d);
        SettlePrivate(vc.priv[i], i, &d);
      }
      UpdateLineLocked(vc, v);
    }
    RunDeferred(&d);
    return absl::OkStatus();
  }
  if (offset == Off(GicrSgiReg::kIcfgr1)) {
    hv::SpinLockHolder l(&vc.lock);
    for (uint32_t i = 0; i < 16; ++i) {
      Irq& irq = vc.priv[kNumSgis + i];
      irq.edge = (v32 >> (2 * i + 1)) & 1;
      SettlePrivate(irq, kNumSgis + i, &d);
    }
    UpdateLineLocked(vc, v);
  }
  RunDeferred(&d);
  return absl::OkStatus();  // ICFGR0 RO; IGRPMODR0/NSACR/reserved WI
}

}  // namespace vgic
