// GICD frame (GICv3 §12.9). Affinity routing is always enabled, so the
// registers of INTIDs 0..31 are RAZ/WI here (they live in the redistributors,
// §12.9: "when affinity routing is enabled ... RAZ/WI"), as are ITARGETSR,
// SGIR, CPENDSGIR and SPENDSGIR. Access widths (§12.1.3): 32-bit everywhere,
// plus byte access to IPRIORITYR/ITARGETSR/xPENDSGIR and 64-bit access to
// IROUTER (or either 32-bit half).
#include "absl/strings/str_format.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

constexpr uint64_t Off(GicdReg r) { return static_cast<uint64_t>(r); }
constexpr uint32_t kWord = 1u << 4;
constexpr uint32_t kByteOrWord = (1u << 1) | (1u << 4);
constexpr uint32_t kWordOrDword = (1u << 4) | (1u << 8);

bool In(uint64_t offset, GicdReg base, uint64_t span) {
  return offset >= Off(base) && offset < Off(base) + span;
}

}  // namespace

absl::Status Vgic::DistRead(uint64_t offset, uint8_t size, uint64_t* value) {
  *value = 0;
  if (In(offset, GicdReg::kIpriorityr, kPriorityRegSpan)) {
    absl::Status s = CheckAccess("GICD", offset, size, kByteOrWord);
    if (!s.ok()) return s;
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicdReg::kIpriorityr));
    hv::SpinLockHolder l(&dist_lock_);
    for (uint32_t i = 0; i < size; ++i) {
      if (ValidSpi(first + i)) {
        *value |= uint64_t{SpiRef(first + i).priority} << (8 * i);
      }
    }
    return absl::OkStatus();
  }
  if (In(offset, GicdReg::kItargetsr, kPriorityRegSpan) ||
      In(offset, GicdReg::kCpendsgir, 0x20)) {
    return CheckAccess("GICD", offset, size, kByteOrWord);  // RAZ/WI, ARE=1
  }
  if (offset >= Off(GicdReg::kIrouter) && offset < kIrouterEnd) {
    absl::Status s = CheckAccess("GICD", offset, size, kWordOrDword);
    if (!s.ok()) return s;
    const uint32_t intid =
        static_cast<uint32_t>((offset - Off(GicdReg::kIrouter)) / 8);
    if (!ValidSpi(intid)) return absl::OkStatus();  // reserved: RAZ
    uint64_t r;
    {
      hv::SpinLockHolder l(&dist_lock_);
      r = SpiRef(intid).irouter;
    }
    *value = size == 8 ? r : (offset % 8 == 0 ? r & 0xffffffff : r >> 32);
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICD", offset, size, kWord);
  if (!s.ok()) return s;

  switch (static_cast<GicdReg>(offset)) {
    case GicdReg::kCtlr: {
      hv::SpinLockHolder l(&dist_lock_);
      *value = gicd_ctlr_;  // RWP reads 0: writes complete synchronously
      return absl::OkStatus();
    }
    case GicdReg::kTyper: {
      const uint32_t it_lines = (kFirstSpi + num_spis_ + 31) / 32 - 1;
      const uint32_t cpus = num_vcpus_ > 8 ? 7 : num_vcpus_ - 1;
      *value = it_lines | (cpus << 5) | kGicdTyperMbis | kGicdTyperLpis |
               ((lpi_id_bits_ - 1) << kGicdTyperIdbitsShift) | kGicdTyperNo1N;
      return absl::OkStatus();
    }
    case GicdReg::kIidr:
      *value = kIidr;
      return absl::OkStatus();
    case GicdReg::kPidr2:
      *value = kPidr2ArchRevGicv3;
      return absl::OkStatus();
    default:
      break;
  }
  if (offset >= Off(GicdReg::kIgroupr) && offset < Off(GicdReg::kIpriorityr)) {
    const uint32_t index = static_cast<uint32_t>(offset >> 7);
    const uint32_t first = static_cast<uint32_t>((offset & 0x7f) / 4) * 32;
    hv::SpinLockHolder l(&dist_lock_);
    for (uint32_t i = 0; i < 32; ++i) {
      if (ValidSpi(first + i) && ReadIrqBit(SpiRef(first + i), index)) {
        *value |= uint64_t{1} << i;
      }
    }
    return absl::OkStatus();
  }
  if (In(offset, GicdReg::kIcfgr, kCfgRegSpan)) {
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicdReg::kIcfgr)) * 4;
    hv::SpinLockHolder l(&dist_lock_);
    for (uint32_t i = 0; i < 16; ++i) {
      if (ValidSpi(first + i) && SpiRef(first + i).edge) {
        *value |= uint64_t{2} << (2 * i);
      }
    }
    return absl::OkStatus();
  }
  // Everything else (TYPER2, STATUSR, the write-only SETSPI/CLRSPI, IGRPMODR
  // and NSACR with DS=1, SGIR, reserved and IMPLEMENTATION DEFINED space)
  // reads as zero.
  return absl::OkStatus();
}

absl::Status Vgic::DistWrite(uint64_t offset, uint8_t size, uint64_t value) {
  Deferred d;
  if (In(offset, GicdReg::kIpriorityr, kPriorityRegSpan)) {
    absl::Status s = CheckAccess("GICD", offset, size, kByteOrWord);
    if (!s.ok()) return s;
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicdReg::kIpriorityr));
    {
      hv::SpinLockHolder l(&dist_lock_);
      for (uint32_t i = 0; i < size; ++i) {
        if (!ValidSpi(first + i)) continue;
        Irq& irq = SpiRef(first + i);
        irq.priority = static_cast<uint8_t>((value >> (8 * i)) & kPriorityMask);
        d.Update(irq.target);
      }
    }
    RunDeferred(&d);
    return absl::OkStatus();
  }
  if (In(offset, GicdReg::kItargetsr, kPriorityRegSpan) ||
      In(offset, GicdReg::kCpendsgir, 0x20)) {
    return CheckAccess("GICD", offset, size, kByteOrWord);  // RAZ/WI, ARE=1
  }
  if (offset >= Off(GicdReg::kIrouter) && offset < kIrouterEnd) {
    absl::Status s = CheckAccess("GICD", offset, size, kWordOrDword);
    if (!s.ok()) return s;
    const uint32_t intid =
        static_cast<uint32_t>((offset - Off(GicdReg::kIrouter)) / 8);
    if (!ValidSpi(intid)) return absl::OkStatus();  // reserved: WI
    {
      hv::SpinLockHolder l(&dist_lock_);
      Irq& irq = SpiRef(intid);
      uint64_t r = irq.irouter;
      if (size == 8) {
        r = value;
      } else if (offset % 8 == 0) {
        r = (r & ~uint64_t{0xffffffff}) | (value & 0xffffffff);
      } else {
        r = (r & 0xffffffff) | (value << 32);
      }
      irq.irouter = r & kIrouterAffMask;  // IRM is RES0 (No1N = 1)
      d.Update(irq.target);
      irq.target = ResolveRoute(irq.irouter);
      d.Update(irq.target);
      SettleSpi(intid, &d);
    }
    RunDeferred(&d);
    return absl::OkStatus();
  }
  absl::Status s = CheckAccess("GICD", offset, size, kWord);
  if (!s.ok()) return s;
  const uint32_t v32 = static_cast<uint32_t>(value);

  switch (static_cast<GicdReg>(offset)) {
    case GicdReg::kCtlr: {
      // ARE and DS are RAO/WI; EnableGrp0 is stored (Group 0 is never
      // signalled: there is no IAR0); RWP is RO.
      const uint32_t ctlr =
          (v32 & (kGicdCtlrEnableGrp0 | kGicdCtlrEnableGrp1)) | kGicdCtlrAre |
          kGicdCtlrDs;
      {
        hv::SpinLockHolder l(&dist_lock_);
        gicd_ctlr_ = ctlr;
        gicd_ctlr_mirror_.store(ctlr);
      }
      UpdateAllLines();
      return absl::OkStatus();
    }
    case GicdReg::kSetSpiNsr:
    case GicdReg::kClrSpiNsr: {
      // Message-based SPIs (§12.9.x GICD_SETSPI_NSR/CLRSPI_NSR): SETSPI
      // latches an edge SPI pending or asserts a level SPI; CLRSPI
      // deasserts a level SPI. Invalid INTIDs are ignored.
      const uint32_t intid = v32 & 0x3ff;
      if (!ValidSpi(intid)) return absl::OkStatus();
      const bool set = static_cast<GicdReg>(offset) == GicdReg::kSetSpiNsr;
      {
        hv::SpinLockHolder l(&dist_lock_);
        Irq& irq = SpiRef(intid);
        if (irq.edge) {
          if (set) irq.pending_latch = true;
        } else {
          irq.line = set;
        }
        SettleSpi(intid, &d);
        d.Update(irq.target);
      }
      RunDeferred(&d);
      return absl::OkStatus();
    }
    default:
      break;
  }
  if (offset >= Off(GicdReg::kIgroupr) && offset < Off(GicdReg::kIpriorityr)) {
    const uint32_t index = static_cast<uint32_t>(offset >> 7);
    const uint32_t first = static_cast<uint32_t>((offset & 0x7f) / 4) * 32;
    {
      hv::SpinLockHolder l(&dist_lock_);
      for (uint32_t i = 0; i < 32; ++i) {
        if (!ValidSpi(first + i)) continue;
        Irq& irq = SpiRef(first + i);
        const bool bit = (v32 >> i) & 1;
        if (index != 1 && !bit) continue;
        WriteIrqBit(irq, index, bit, first + i, &d);
        SettleSpi(first + i, &d);
        d.Update(irq.target);
      }
    }
    RunDeferred(&d);
    return absl::OkStatus();
  }
  if (In(offset, GicdReg::kIcfgr, kCfgRegSpan)) {
    const uint32_t first =
        static_cast<uint32_t>(offset - Off(GicdReg::kIcfgr)) * 4;
    {
      hv::SpinLockHolder l(&dist_lock_);
      for (uint32_t i = 0; i < 16; ++i) {
        if (!ValidSpi(first + i)) continue;
        Irq& irq = SpiRef(first + i);
        irq.edge = (v32 >> (2 * i + 1)) & 1;  // Int_config[1]; [0] RES0
        SettleSpi(first + i, &d);
        d.Update(irq.target);
      }
    }
    RunDeferred(&d);
    return absl::OkStatus();
  }
  // RO registers and RAZ/WI space: writes ignored.
  return absl::OkStatus();
}

}  // namespace vgic
