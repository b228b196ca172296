// The GICv3 CPU interface (§12.2 ICC_*_EL1, §4.1 interrupt handling, §4.8
// priorities and preemption), presented as an MMIO frame banked by the
// accessing vCPU (layout: IccReg in regs.h, docs/vgic.md).
#include "absl/strings/str_format.h"
#include "vgic/vgic.h"

namespace vgic {
namespace {

bool IsWriteOnly(IccReg r) {
  return r == IccReg::kEoir1 || r == IccReg::kDir || r == IccReg::kSgi1r;
}
bool IsReadOnly(IccReg r) {
  return r == IccReg::kIar1 || r == IccReg::kHppir1 || r == IccReg::kRpr;
}

}  // namespace

absl::Status Vgic::CpuIfRead(const hv::MmioContext& ctx, uint64_t offset,
                             uint8_t size, uint64_t* value) {
  *value = 0;
  if ((size != 8 && size != 4) || offset % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ICC frame offset 0x%x: %d-byte access (8 bytes, or 4 to the low "
        "half, at 8-byte aligned offsets)",
        offset, size));
  }
  if (offset / 8 >= kIccRegCount) return absl::OkStatus();  // reserved: RAZ
  const IccReg reg = static_cast<IccReg>(offset);
  if (size == 4 && reg == IccReg::kSgi1r) {
    return absl::InvalidArgumentError("ICC_SGI1R needs a 64-bit access");
  }
  absl::StatusOr<uint64_t> r = ReadIcc(ctx.vcpu, reg);
  if (!r.ok()) return r.status();
  *value = size == 4 ? (*r & 0xffffffff) : *r;
  return absl::OkStatus();
}

absl::Status Vgic::CpuIfWrite(const hv::MmioContext& ctx, uint64_t offset,
                              uint8_t size, uint64_t value) {
  if ((size != 8 && size != 4) || offset % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ICC frame offset 0x%x: %d-byte access (8 bytes, or 4 to the low "
        "half, at 8-byte aligned offsets)",
        offset, size));
  }
  if (offset / 8 >= kIccRegCount) return absl::OkStatus();  // reserved: WI
  const IccReg reg = static_cast<IccReg>(offset);
  if (size == 4 && reg == IccReg::kSgi1r) {
    return absl::InvalidArgumentError("ICC_SGI1R needs a 64-bit access");
  }
  return WriteIcc(ctx.vcpu, reg, size == 4 ? (value & 0xffffffff) : value);
}

absl::StatusOr<uint64_t> Vgic::ReadIcc(uint32_t vcpu, IccReg reg) {
  if (vcpu >= num_vcpus_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CPU interface access from vCPU %d (not a vCPU of this GIC)", vcpu));
  }
  if (IsWriteOnly(reg)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ICC register at 0x%x is write-only", static_cast<uint64_t>(reg)));
  }
  if (reg == IccReg::kIar1) return Acknowledge(vcpu);
  if (reg == IccReg::kCtlr) return ReadIccCtlr(vcpu);
  VcpuState& vc = *vcpus_[vcpu];
  hv::SpinLockHolder l(&vc.lock);
  switch (reg) {
    case IccReg::kPmr:
      return vc.cpu.pmr;
    case IccReg::kBpr1:
      return vc.cpu.bpr1;
    case IccReg::kHppir1:
      // §12.2.13: the highest priority pending interrupt whatever PMR and
      // the running priority say (1023 if none / group disabled).
      return FindBest(vc, vcpu).intid;
    case IccReg::kRpr:
      return RunningPriority(vc.cpu);
    case IccReg::kIgrpen1:
      return vc.cpu.igrpen1 ? 1 : 0;
    case IccReg::kAp1r0:
      return vc.cpu.ap;
    default:
      return absl::InvalidArgumentError("unknown ICC register");
  }
}

absl::Status Vgic::WriteIcc(uint32_t vcpu, IccReg reg, uint64_t value) {
  if (vcpu >= num_vcpus_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "CPU interface access from vCPU %d (not a vCPU of this GIC)", vcpu));
  }
  if (IsReadOnly(reg)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ICC register at 0x%x is read-only", static_cast<uint64_t>(reg)));
  }
  switch (reg) {
    case IccReg::kEoir1:
      WriteEoir1(vcpu, static_cast<uint32_t>(value & 0xffffff));
      return absl::OkStatus();
    case IccReg::kDir:
      WriteDir(vcpu, static_cast<uint32_t>(value & 0xffffff));
      return absl::OkStatus();
    case IccReg::kSgi1r:
      WriteSgi1r(vcpu, value);
      return absl::OkStatus();
    default:
      break;
  }
  VcpuState& vc = *vcpus_[vcpu];
  hv::SpinLockHolder l(&vc.lock);
  switch (reg) {
    case IccReg::kCtlr:
      // Only EOImode is writable; CBPR is RAZ/WI (BPR1 is always separate),
      // PMHE/PRIbits/IDbits/SEIS/A3V/RSS/ExtRange are RO.
      vc.cpu.eoimode = (value & kIccCtlrEoimode) != 0;
      return absl::OkStatus();
    case IccReg::kPmr:
      vc.cpu.pmr = static_cast<uint8_t>(value & kPriorityMask);
      break;
    case IccReg::kBpr1: {
      // Values below the minimum read back as the minimum (§12.2.5).
      uint8_t bpr = static_cast<uint8_t>(value & 7);
      vc.cpu.bpr1 = bpr < kMinBpr1 ? kMinBpr1 : bpr;
      break;
    }
    case IccReg::kIgrpen1:
      vc.cpu.igrpen1 = (value & 1) != 0;
      break;
    case IccReg::kAp1r0:
      vc.cpu.ap = static_cast<uint32_t>(value);
      break;
    default:
      return absl::InvalidArgumentError("unknown ICC register");
  }
  UpdateLineLocked(vc, vcpu);
  return absl::OkStatus();
}

uint64_t Vgic::ReadIccCtlr(uint32_t v) {
  VcpuState& vc = *vcpus_[v];
  hv::SpinLockHolder l(&vc.lock);
  // PRIbits = priority bits - 1; IDbits 0 = 16-bit INTIDs, 1 = 24-bit.
  return (vc.cpu.eoimode ? kIccCtlrEoimode : 0) |
         (uint64_t{kPriorityBits - 1} << kIccCtlrPribitsShift) |
         (uint64_t{lpi_id_bits_ > 16 ? 1u : 0u} << kIccCtlrIdbitsShift);
}

uint32_t Vgic::Acknowledge(uint32_t v) {
  VcpuState& vc = *vcpus_[v];
  Deferred d;
  uint32_t result = kSpuriousIntid;
  {
    hv::SpinLockHolder l(&vc.lock);
    for (;;) {
      Best b = FindBest(vc, v);
      if (!Deliverable(vc.cpu, b)) break;
      if (b.intid < kNumPrivate) {
        Irq& irq = vc.priv[b.intid];
        irq.pending_latch = false;  // a level source keeps it pending
        irq.active = true;
      } else if (b.intid < kSpecialIntidFirst) {
        hv::SpinLockHolder dl(&dist_lock_);
        Irq& s = SpiRef(b.intid);
        // Re-validate: another thread may have changed it since FindBest.
        if (!s.candidate() || s.target != v ||
            !(gicd_ctlr_ & kGicdCtlrEnableGrp1)) {
          continue;
        }
        b.priority = s.priority;
        if (!Deliverable(vc.cpu, b)) continue;
        s.pending_latch = false;
        s.active = true;
        SettleSpi(b.intid, &d);
      } else {
        // LPIs have no active state: acknowledge clears the pending bit
        // (§5.1). Lost a race with ClearPending/MovePending: look again.
        if (!LpiBitClear(v, b.intid)) continue;
      }
      vc.cpu.ap |= 1u << PreemptionLevel(vc.cpu, b.priority);
      result = b.intid;
      break;
    }
    UpdateLineLocked(vc, v);
  }
  RunDeferred(&d);
  return result;
}

void Vgic::WriteEoir1(uint32_t v, uint32_t intid) {
  // Special INTIDs (1020..1023) and unimplemented INTIDs: no effect.
  const bool valid = intid < kNumPrivate || ValidSpi(intid) ||
                     (intid >= kFirstLpi && intid < (1u << lpi_id_bits_));
  if (!valid) return;
  VcpuState& vc = *vcpus_[v];
  Deferred d;
  {
    hv::SpinLockHolder l(&vc.lock);
    if (vc.cpu.ap == 0) return;  // nothing to drop
    // Priority drop of the highest active priority (§4.1.1, ICC_EOIR1_EL1);
    // with EOImode == 0 the write also deactivates the interrupt.
    vc.cpu.ap &= vc.cpu.ap - 1;
    if (!vc.cpu.eoimode && intid < kSpecialIntidFirst) {
      Deactivate(vc, v, intid, &d);
    }
    UpdateLineLocked(vc, v);
  }
  RunDeferred(&d);
}

void Vgic::WriteDir(uint32_t v, uint32_t intid) {
  // ICC_DIR_EL1 (§12.2.10): deactivation only with EOImode == 1; LPIs and
  // special INTIDs have nothing to deactivate.
  if (!(intid < kNumPrivate || ValidSpi(intid))) return;
  VcpuState& vc = *vcpus_[v];
  Deferred d;
  {
    hv::SpinLockHolder l(&vc.lock);
    if (!vc.cpu.eoimode) return;
    Deactivate(vc, v, intid, &d);
    UpdateLineLocked(vc, v);
  }
  RunDeferred(&d);
}

void Vgic::WriteSgi1r(uint32_t v, uint64_t value) {
  // ICC_SGI1R_EL1 (§12.2.22). RSS == 0, so Aff0 = RS * 16 + bit and only
  // RS == 0 can name a vCPU of ours.
  const uint32_t intid = static_cast<uint32_t>((value >> 24) & 0xf);
  if (value & kSgi1rIrm) {
    for (uint32_t t = 0; t < num_vcpus_; ++t) {
      if (t != v) (void)SendSgi(t, intid).ok();
    }
    return;
  }
  const uint64_t aff1 = (value >> 16) & 0xff;
  const uint64_t aff2 = (value >> 32) & 0xff;
  const uint64_t aff3 = (value >> 48) & 0xff;
  const uint64_t rs = (value >> 44) & 0xf;
  const uint32_t targets = static_cast<uint32_t>(value & 0xffff);
  for (uint32_t b = 0; b < 16; ++b) {
    if (!(targets & (1u << b))) continue;
    const uint64_t mpidr =
        (rs * 16 + b) | (aff1 << 8) | (aff2 << 16) | (aff3 << 32);
    const uint32_t t = VcpuForMpidr(mpidr);
    if (t != kNoVcpu) (void)SendSgi(t, intid).ok();
  }
}

}  // namespace vgic
