#include "iommu/hardware.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"

namespace iommu {
namespace {

bool Is64BitReg(uint64_t offset) {
  switch (static_cast<Reg>(offset)) {
    case Reg::kCap:
    case Reg::kEcap:
    case Reg::kRtaddr:
    case Reg::kCcmd:
    case Reg::kIva:
    case Reg::kIotlb:
      return true;
    default:
      return offset >= RegOffset(Reg::kFrcd0) &&
             offset < RegOffset(Reg::kFrcd0) + 16 * kNumFaultRecords;
  }
}

absl::Status BadWidth(uint64_t offset, uint8_t size) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "IOMMU register 0x%x accessed with width %d", offset, size));
}

}  // namespace

absl::Status IommuHardware::Read(const hv::MmioContext&, uint64_t offset,
                                 uint8_t size, uint64_t* value) {
  hv::MutexLock lock(&reg_mu_);
  return ReadLocked(offset, size, value);
}

absl::Status IommuHardware::Write(const hv::MmioContext&, uint64_t offset,
                                  uint8_t size, uint64_t value) {
  hv::MutexLock lock(&reg_mu_);
  return WriteLocked(offset, size, value);
}

absl::Status IommuHardware::ReadLocked(uint64_t offset, uint8_t size,
                                       uint64_t* value) {
  if (size != 4 && size != 8) return BadWidth(offset, size);
  if (offset >= kRegisterWindowSize || offset % size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("IOMMU register offset 0x%x out of window", offset));
  }
  // §10.2: 64-bit registers may also be accessed as aligned dwords.
  if (size == 4 && Is64BitReg(offset & ~7ull)) {
    uint64_t full = 0;
    HV_RETURN_IF_ERROR(ReadLocked(offset & ~7ull, 8, &full));
    *value = (offset & 4) ? full >> 32 : full & 0xffffffff;
    return absl::OkStatus();
  }
  const bool wide = Is64BitReg(offset);
  if ((wide && size != 8) || (!wide && size != 4)) {
    return BadWidth(offset, size);
  }
  if (offset >= RegOffset(Reg::kFrcd0) &&
      offset < RegOffset(Reg::kFrcd0) + 16 * kNumFaultRecords) {
    const uint64_t rel = offset - RegOffset(Reg::kFrcd0);
    hv::MutexLock lock(&fault_mu_);
    const FaultRecord& r = records_[rel / 16];
    *value = (rel % 16 == 0) ? r.lo : r.hi;
    return absl::OkStatus();
  }
  switch (static_cast<Reg>(offset)) {
    case Reg::kVer:
      *value = kVersion;
      break;
    case Reg::kCap:
      *value = kCapValue;
      break;
    case Reg::kEcap:
      *value = kEcapValue;
      break;
    case Reg::kGcmd:
      *value = 0;
      break;  // write-only (§10.4.4)
    case Reg::kGsts:
      *value = gsts_;
      break;
    case Reg::kRtaddr:
      *value = rtaddr_;
      break;
    case Reg::kCcmd:
      *value = ccmd_;
      break;
    case Reg::kIva:
      *value = iva_;
      break;
    case Reg::kIotlb:
      *value = iotlb_reg_;
      break;
    case Reg::kFectl:
      *value = fectl_;
      break;
    case Reg::kFsts: {
      hv::MutexLock lock(&fault_mu_);
      uint32_t v = pfo_ ? fsts::kPfo : 0;
      for (int i = 0; i < kNumFaultRecords; ++i) {
        if (records_[i].fault()) {
          v |= fsts::kPpf | (static_cast<uint32_t>(i) << fsts::kFriShift);
          break;
        }
      }
      *value = v;
      break;
    }
    default:
      *value = 0;
      break;  // unimplemented: reads as zero
  }
  return absl::OkStatus();
}

absl::Status IommuHardware::WriteLocked(uint64_t offset, uint8_t size,
                                        uint64_t value) {
  if (size != 4 && size != 8) return BadWidth(offset, size);
  if (offset >= kRegisterWindowSize || offset % size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("IOMMU register offset 0x%x out of window", offset));
  }
  // §10.2: dword halves of 64-bit registers. The command registers (CCMD,
  // IOTLB) act when their upper dword (ICC/IVT) is written; a lower-dword
  // write only updates the stored value.
  if (size == 4 && Is64BitReg(offset & ~7ull)) {
    const uint64_t base = offset & ~7ull;
    uint64_t cur = 0;
    HV_RETURN_IF_ERROR(ReadLocked(base, 8, &cur));
    const uint64_t merged = (offset & 4)
                                ? (cur & 0xffffffffull) | (value << 32)
                                : (cur & ~0xffffffffull) | (value & 0xffffffff);
    if ((offset & 4) == 0 && base == RegOffset(Reg::kCcmd)) {
      ccmd_ = merged;
      return absl::OkStatus();
    }
    if ((offset & 4) == 0 && base == RegOffset(Reg::kIotlb)) {
      iotlb_reg_ = merged;
      return absl::OkStatus();
    }
    return WriteLocked(base, 8, merged);
  }
  const bool wide = Is64BitReg(offset);
  if ((wide && size != 8) || (!wide && size != 4)) {
    return BadWidth(offset, size);
  }
  if (offset >= RegOffset(Reg::kFrcd0) &&
      offset < RegOffset(Reg::kFrcd0) + 16 * kNumFaultRecords) {
    const uint64_t rel = offset - RegOffset(Reg::kFrcd0);
    if (rel % 16 == 8 && (value & FaultRecord::kHiF) != 0) {  // F is RW1C
      hv::MutexLock lock(&fault_mu_);
      records_[rel / 16] = FaultRecord{};
    }
    return absl::OkStatus();
  }
  switch (static_cast<Reg>(offset)) {
    case Reg::kGcmd:
      WriteGcmd(static_cast<uint32_t>(value));
      break;
    case Reg::kRtaddr:
      rtaddr_ = value & kAddrMask;
      break;  // TTM 00 only
    case Reg::kCcmd:
      WriteCcmd(value);
      break;
    case Reg::kIva:
      iva_ = value;
      break;
    case Reg::kIotlb:
      WriteIotlb(value);
      break;
    case Reg::kFectl:
      fectl_ = static_cast<uint32_t>(value) & (1u << 31);
      break;
    case Reg::kFsts:
      if ((value & fsts::kPfo) != 0) {
        hv::MutexLock lock(&fault_mu_);
        pfo_ = false;
      }
      break;
    default:
      break;  // read-only or unimplemented: write ignored
  }
  return absl::OkStatus();
}

// §10.4.4: TE is a level (the written value is the new enable state, so
// software writes GSTS-with-one-bit-changed); SRTP is a one-shot command that
// latches RTADDR. Cached entries are not dropped by SRTP: software must
// follow with global context-cache and IOTLB invalidation (§6.5).
void IommuHardware::WriteGcmd(uint32_t value) {
  const bool te = (value & gcmd::kTe) != 0;
  {
    hv::MutexLock lock(&cache_mu_);
    if ((value & gcmd::kSrtp) != 0) {
      active_root_ = rtaddr_;
      ++generation_;
      gsts_ |= gsts::kRtps;
    }
    te_ = te;
    gsts_ = te ? (gsts_ | gsts::kTes) : (gsts_ & ~gsts::kTes);
  }
  gate_.Drain();
}

// §10.4.7 / §6.5.1.1 register-based context-cache invalidation.
void IommuHardware::WriteCcmd(uint64_t value) {
  if ((value & ccmd::kIcc) == 0) {
    ccmd_ = value;
    return;
  }
  const uint64_t cirg = (value >> ccmd::kCirgShift) & 3;
  const uint16_t did = static_cast<uint16_t>(value & ccmd::kDidMask);
  const uint16_t sid = static_cast<uint16_t>(value >> ccmd::kSidShift);
  const uint8_t fm = static_cast<uint8_t>((value >> ccmd::kFmShift) & 3);
  uint64_t caig = cirg;
  {
    hv::MutexLock lock(&cache_mu_);
    switch (cirg) {
      case ccmd::kGlobal:
        context_cache_.InvalidateAll();
        break;
      case ccmd::kDomain:
        context_cache_.InvalidateDomain(did);
        break;
      case ccmd::kDevice:
        context_cache_.InvalidateDevice(sid, fm);
        break;
      default:
        caig = 0;
        break;  // reserved granularity: not performed
    }
    ++generation_;
  }
  gate_.Drain();
  ccmd_ = (value & ~(ccmd::kIcc | (3ull << ccmd::kCaigShift))) |
          (caig << ccmd::kCaigShift);
}

// §10.4.8 / §6.5.1.2 register-based IOTLB invalidation.
void IommuHardware::WriteIotlb(uint64_t value) {
  if ((value & iotlb_reg::kIvt) == 0) {
    iotlb_reg_ = value;
    return;
  }
  uint64_t iirg = (value >> iotlb_reg::kIirgShift) & 3;
  const uint16_t did = static_cast<uint16_t>(value >> iotlb_reg::kDidShift);
  const uint8_t am = static_cast<uint8_t>(iva_ & iotlb_reg::kIvaAmMask);
  const uint64_t mamv = (kCapValue >> cap::kMamvShift) & 0x3f;
  // A page-selective request beyond MAMV is performed domain-selectively and
  // reported so through IAIG (hardware may invalidate more than asked).
  if (iirg == iotlb_reg::kPage && am > mamv) iirg = iotlb_reg::kDomain;
  uint64_t iaig = iirg;
  {
    hv::MutexLock lock(&cache_mu_);
    switch (iirg) {
      case iotlb_reg::kGlobal:
        iotlb_.InvalidateAll();
        break;
      case iotlb_reg::kDomain:
        iotlb_.InvalidateDomain(did);
        break;
      case iotlb_reg::kPage:
        iotlb_.InvalidatePages(did, iva_ & kAddrMask, am);
        break;
      default:
        iaig = 0;
        break;
    }
    ++generation_;
  }
  gate_.Drain();  // DR/DW: in-flight requests finish before completion
  iotlb_reg_ = (value & ~(iotlb_reg::kIvt | (3ull << iotlb_reg::kIaigShift))) |
               (iaig << iotlb_reg::kIaigShift);
}

void IommuHardware::RecordFault(uint16_t sid, uint64_t iova, Access access,
                                FaultReason reason) {
  hv::MutexLock lock(&fault_mu_);
  FaultRecord& r = records_[next_record_];
  if (r.fault()) {  // §7.1.3: no free record → overflow, fault dropped
    pfo_ = true;
    return;
  }
  r.lo = iova & ~0xfffull;
  r.hi = FaultRecord::kHiF | uint64_t{sid} |
         (uint64_t{static_cast<uint8_t>(reason)} << FaultRecord::kHiFrShift) |
         (access == Access::kRead ? FaultRecord::kHiTRead : 0);
  next_record_ = (next_record_ + 1) % kNumFaultRecords;
}

Translation IommuHardware::Translate(uint16_t sid, uint64_t iova,
                                     Access access) {
  DmaGate::Scope in_flight(&gate_);
  return TranslateInGate(sid, iova, access);
}

Translation IommuHardware::TranslateInGate(uint16_t sid, uint64_t iova,
                                           Access access) {
  uint64_t root = 0;
  uint64_t gen = 0;
  std::optional<ContextEntry> cached_ce;
  std::optional<Iotlb::Entry> hit;
  {
    hv::MutexLock lock(&cache_mu_);
    if (!te_) {
      Translation t;  // translation disabled: DMA is not remapped
      t.hpa = iova;
      t.page_size = kPageSize;
      t.perms = kPermRW;
      t.pass_through = true;
      return t;
    }
    root = active_root_;
    gen = generation_;
    cached_ce = context_cache_.Lookup(sid);
    if (cached_ce && cached_ce->tt() != TranslationType::kPassThrough &&
        (iova >> AgawBitsForAw(cached_ce->aw())) == 0) {
      hit = iotlb_.Lookup(cached_ce->did(), iova);
      if (hit) {
        ++iotlb_hits_;
      } else {
        ++iotlb_misses_;
      }
    }
  }

  Translation t;
  bool fpd = false;
  if (cached_ce && hit) {
    t.did = cached_ce->did();
    fpd = cached_ce->fpd();
    if ((hit->perms & static_cast<uint8_t>(access)) == 0) {
      t.fault = access == Access::kWrite ? FaultReason::kWriteNotPermitted
                                         : FaultReason::kReadNotPermitted;
    } else {
      t.hpa = hit->page_hpa + (iova & (hit->page_size - 1));
      t.page_size = hit->page_size;
      t.perms = hit->perms;
    }
  } else {
    ContextEntry ce;
    bool ce_valid = false;
    if (cached_ce) {
      ce = *cached_ce;
      ce_valid = true;
    } else {
      const ContextLookup c = LookupContext(*mem_, root, sid);
      if (c.fault == FaultReason::kNone) {
        ce = c.entry;
        ce_valid = true;
      } else {
        t.fault = c.fault;
        // FPD applies to faults found at or after the context entry.
        fpd = c.entry.present() && c.entry.fpd();
      }
    }
    if (ce_valid) {
      fpd = ce.fpd();
      t = TranslateWithContext(*mem_, ce, iova, access);
      hv::MutexLock lock(&cache_mu_);
      if (gen == generation_) {
        if (!cached_ce) context_cache_.Insert(sid, ce);
        if (t.fault == FaultReason::kNone && !t.pass_through) {
          iotlb_.Insert(
              ce.did(), iova,
              Iotlb::Entry{t.hpa & ~(t.page_size - 1), t.page_size, t.perms});
        }
      }
    }
  }
  if (t.fault != FaultReason::kNone) {
    if (!fpd) {
      RecordFault(sid, iova, access, t.fault);
    }
    hv::MutexLock lock(&fault_mu_);
    ++faults_;
  }
  return t;
}

absl::Status IommuHardware::Dma(
    uint16_t sid, uint64_t iova, size_t len, Access access,
    std::vector<std::pair<uint64_t, size_t>>* pieces) {
  if (len == 0) return absl::OkStatus();
  if (iova + len < iova) {
    return absl::InvalidArgumentError("DMA range wraps the address space");
  }
  size_t done = 0;
  while (done < len) {
    const uint64_t a = iova + done;
    const size_t chunk =
        std::min<uint64_t>(len - done, kPageSize - (a & (kPageSize - 1)));
    const Translation t = TranslateInGate(sid, a, access);
    if (t.fault != FaultReason::kNone) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "DMA %s by %02x:%02x.%d at IOVA 0x%x faulted: reason 0x%x (%s)",
          access == Access::kWrite ? "write" : "read", SidBus(sid),
          SidDevfn(sid) >> 3, SidDevfn(sid) & 7, a, static_cast<int>(t.fault),
          FaultReasonName(t.fault)));
    }
    if (!mem_->Contains(t.hpa, chunk)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "DMA at IOVA 0x%x translates to 0x%x, outside physical memory", a,
          t.hpa));
    }
    pieces->emplace_back(t.hpa, chunk);
    done += chunk;
  }
  return absl::OkStatus();
}

absl::Status IommuHardware::DmaWrite(uint16_t sid, uint64_t iova,
                                     const void* data, size_t len) {
  DmaGate::Scope in_flight(&gate_);  // translate and write as one request
  std::vector<std::pair<uint64_t, size_t>> pieces;
  if (absl::Status s = Dma(sid, iova, len, Access::kWrite, &pieces); !s.ok()) {
    return s;  // nothing written
  }
  const uint8_t* src = static_cast<const uint8_t*>(data);
  for (const auto& [hpa, n] : pieces) {
    if (absl::Status s = mem_->Write(hpa, src, n); !s.ok()) return s;
    src += n;
  }
  return absl::OkStatus();
}

absl::Status IommuHardware::DmaRead(uint16_t sid, uint64_t iova, void* data,
                                    size_t len) {
  DmaGate::Scope in_flight(&gate_);
  std::vector<std::pair<uint64_t, size_t>> pieces;
  if (absl::Status s = Dma(sid, iova, len, Access::kRead, &pieces); !s.ok()) {
    return s;
  }
  uint8_t* dst = static_cast<uint8_t*>(data);
  for (const auto& [hpa, n] : pieces) {
    if (absl::Status s = mem_->Read(hpa, dst, n); !s.ok()) return s;
    dst += n;
  }
  return absl::OkStatus();
}

IommuHardware::Stats IommuHardware::stats() const {
  Stats s;
  {
    hv::MutexLock lock(&cache_mu_);
    s.iotlb_hits = iotlb_hits_;
    s.iotlb_misses = iotlb_misses_;
  }
  hv::MutexLock lock(&fault_mu_);
  s.faults = faults_;
  return s;
}

size_t IommuHardware::iotlb_size() const {
  hv::MutexLock lock(&cache_mu_);
  return iotlb_.size();
}

size_t IommuHardware::context_cache_size() const {
  hv::MutexLock lock(&cache_mu_);
  return context_cache_.size();
}

}  // namespace iommu
