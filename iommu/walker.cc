#include "iommu/walker.h"

namespace iommu {

FaultReason ValidateContext(const ContextEntry& ce) {
  if (ce.reserved_bits_set()) return FaultReason::kContextReserved;
  switch (ce.tt()) {
    case TranslationType::kUntranslated:
      break;
    case TranslationType::kDeviceTlb:
      if ((kEcapValue & ecap::kDt) == 0) return FaultReason::kInvalidContext;
      break;
    case TranslationType::kPassThrough:
      if ((kEcapValue & ecap::kPt) == 0) return FaultReason::kInvalidContext;
      break;
    case TranslationType::kReserved:
      return FaultReason::kInvalidContext;
  }
  // AW must name a supported AGAW (also for pass-through, §9.3).
  if (ce.aw() > 3 || ((kSagawMask >> ce.aw()) & 1) == 0) {
    return FaultReason::kInvalidContext;
  }
  return FaultReason::kNone;
}

ContextLookup LookupContext(const PhysMemory& mem, uint64_t rtaddr,
                            uint16_t sid) {
  ContextLookup out;
  const uint64_t re_addr =
      (rtaddr & kAddrMask) + SidBus(sid) * sizeof(RootEntry);
  auto re_lo = mem.Load64(re_addr);
  auto re_hi = mem.Load64(re_addr + 8);
  if (!re_lo.ok() || !re_hi.ok()) {
    out.fault = FaultReason::kRootTableAccess;
    return out;
  }
  const RootEntry re{*re_lo, *re_hi};
  if (!re.present()) {
    out.fault = FaultReason::kRootNotPresent;
    return out;
  }
  if (re.reserved_bits_set()) {
    out.fault = FaultReason::kRootReserved;
    return out;
  }
  const uint64_t ce_addr = re.ctp() + SidDevfn(sid) * sizeof(ContextEntry);
  // The driver writes hi, then publishes lo (with P) with a release store;
  // lo is loaded first (acquire), then hi, then lo again: if lo changed in
  // between (detach/re-attach racing this walk) the pair is re-read, so a
  // present entry is never combined with another entry's DID/AW.
  absl::StatusOr<uint64_t> ce_lo, ce_hi;
  for (;;) {
    ce_lo = mem.Load64(ce_addr);
    ce_hi = mem.Load64(ce_addr + 8);
    if (!ce_lo.ok() || !ce_hi.ok()) {
      out.fault = FaultReason::kContextTableAccess;
      return out;
    }
    auto again = mem.Load64(ce_addr);
    if (again.ok() && *again == *ce_lo) break;
  }
  const ContextEntry ce{*ce_lo, *ce_hi};
  if (!ce.present()) {
    out.fault = FaultReason::kContextNotPresent;
    return out;
  }
  out.fault = ValidateContext(ce);
  out.entry = ce;
  return out;
}

PageWalk WalkPageTables(const PhysMemory& mem, uint64_t slptptr, int levels,
                        uint64_t iova) {
  PageWalk out;
  uint64_t table = slptptr & kAddrMask;
  uint8_t perms = kPermRW;
  for (int level = levels; level >= 1; --level) {
    auto v = mem.Load64(table + LevelIndex(iova, level) * sizeof(SlPte));
    if (!v.ok()) {
      out.fault = FaultReason::kPagingEntryAccess;
      return out;
    }
    const SlPte e{*v};
    out.stop_level = level;
    if (!e.present()) return out;  // perms none: not mapped
    if ((e.v & SlReservedMask(level, e.ps())) != 0) {
      out.fault = FaultReason::kPagingEntryReserved;
      return out;
    }
    perms &= static_cast<uint8_t>(e.v & kPermRW);
    if (level == 1 || e.ps()) {
      out.perms = perms;
      out.page_hpa = e.addr();
      out.page_size = LevelPageSize(level);
      out.leaf_level = level;
      return out;
    }
    table = e.addr();
  }
  return out;  // unreachable for levels >= 1
}

Translation TranslateWithContext(const PhysMemory& mem, const ContextEntry& ce,
                                 uint64_t iova, Access access) {
  Translation t;
  t.did = ce.did();
  if (ce.tt() == TranslationType::kPassThrough) {
    // §3.9: untranslated requests are passed through; HAW still applies.
    if ((iova >> kHostAddressWidth) != 0) {
      t.fault = FaultReason::kBeyondAgaw;
      return t;
    }
    t.hpa = iova;
    t.page_size = kPageSize;
    t.perms = kPermRW;
    t.pass_through = true;
    return t;
  }
  if ((iova >> AgawBitsForAw(ce.aw())) != 0) {
    t.fault = FaultReason::kBeyondAgaw;
    return t;
  }
  const PageWalk w =
      WalkPageTables(mem, ce.slptptr(), LevelsForAw(ce.aw()), iova);
  if (w.fault != FaultReason::kNone) {
    t.fault = w.fault;
    return t;
  }
  const uint8_t need = static_cast<uint8_t>(access);
  if ((w.perms & need) == 0) {
    t.fault = access == Access::kWrite ? FaultReason::kWriteNotPermitted
                                       : FaultReason::kReadNotPermitted;
    return t;
  }
  t.hpa = w.page_hpa + (iova & (w.page_size - 1));
  t.page_size = w.page_size;
  t.perms = w.perms;
  return t;
}

Translation TranslateUncached(const PhysMemory& mem, uint64_t rtaddr,
                              uint16_t sid, uint64_t iova, Access access) {
  const ContextLookup c = LookupContext(mem, rtaddr, sid);
  if (c.fault != FaultReason::kNone) {
    Translation t;
    t.fault = c.fault;
    return t;
  }
  return TranslateWithContext(mem, c.entry, iova, access);
}

}  // namespace iommu
