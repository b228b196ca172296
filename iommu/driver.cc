#include "iommu/driver.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

absl::Status NoDomain(uint16_t did) {
  return absl::NotFoundError(
      absl::StrFormat("no IOMMU domain with DID %d", did));
}

std::string SidName(uint16_t sid) {
  return absl::StrFormat("%02x:%02x.%d", SidBus(sid), SidDevfn(sid) >> 3,
                         SidDevfn(sid) & 7);
}

}  // namespace

absl::StatusOr<std::unique_ptr<IommuDriver>> IommuDriver::Create(
    PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* pages) {
  std::unique_ptr<IommuDriver> d(new IommuDriver(mem, regs, pages));
  hv::MutexLock lock(&d->mu_);
  HV_ASSIGN_OR_RETURN(uint64_t cap_reg, d->io_.Read64(Reg::kCap));
  HV_ASSIGN_OR_RETURN(uint64_t ecap_reg, d->io_.Read64(Reg::kEcap));
  if (((cap_reg >> cap::kSagawShift) & kSagawMask) != kSagawMask ||
      (ecap_reg & ecap::kPt) == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "IOMMU capabilities CAP=0x%x ECAP=0x%x lack the AGAWs or "
        "pass-through this driver needs",
        cap_reg, ecap_reg));
  }
  HV_ASSIGN_OR_RETURN(d->root_table_, pages->Allocate());
  d->owned_pages_.push_back(d->root_table_);
  // §6.5: new root pointer, then global context and IOTLB flush, then TE.
  HV_RETURN_IF_ERROR(d->io_.SetRootTable(d->root_table_));
  HV_RETURN_IF_ERROR(d->io_.InvalidateContextGlobal());
  HV_RETURN_IF_ERROR(d->io_.InvalidateIotlbGlobal());
  HV_RETURN_IF_ERROR(d->io_.SetTranslation(true));
  return d;
}

absl::StatusOr<std::unique_ptr<IommuDriver>> IommuDriver::Adopt(
    PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* pages,
    uint64_t root_table, std::vector<uint64_t> owned_table_pages,
    const std::vector<AdoptedDomain>& domains) {
  std::unique_ptr<IommuDriver> d(new IommuDriver(mem, regs, pages));
  hv::MutexLock lock(&d->mu_);
  HV_ASSIGN_OR_RETURN(uint64_t rtaddr, d->io_.Read64(Reg::kRtaddr));
  if ((rtaddr & kAddrMask) != root_table) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "hardware RTADDR 0x%x is not the adopted root table 0x%x", rtaddr,
        root_table));
  }
  d->root_table_ = root_table;
  d->owned_pages_ = std::move(owned_table_pages);
  uint16_t max_did = 0;
  for (const AdoptedDomain& a : domains) {
    if (a.did == 0 || d->domains_.count(a.did) != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("adopted DID %d is zero or duplicated", a.did));
    }
    auto dom = std::make_unique<Domain>();
    dom->did = a.did;
    dom->pass_through = a.pass_through;
    dom->levels = a.levels;
    dom->root = a.root;
    dom->owns_tables = a.owns_tables;
    const uint64_t limit =
        a.pass_through ? (uint64_t{1} << kHostAddressWidth)
                       : (uint64_t{1} << AgawBitsForAw(AwForLevels(a.levels)));
    dom->iova = std::make_unique<IovaAllocator>(kPageSize, limit);
    for (const auto& [start, size] : a.reserved_iova) {
      HV_RETURN_IF_ERROR(dom->iova->Reserve(start, size));
    }
    for (uint16_t sid : a.sids) {
      dom->sids.insert(sid);
      d->sid_to_did_[sid] = a.did;
    }
    max_did = std::max(max_did, a.did);
    d->domains_[a.did] = std::move(dom);
  }
  d->next_did_ = max_did == kMaxDid ? 1 : max_did + 1;
  return d;
}

absl::StatusOr<uint16_t> IommuDriver::AllocDidLocked() {
  for (uint32_t i = 0; i < kMaxDid; ++i) {
    const uint16_t did = next_did_;
    next_did_ = next_did_ == kMaxDid ? 1 : next_did_ + 1;
    if (domains_.count(did) == 0) return did;
  }
  return absl::ResourceExhaustedError("all 65535 domain IDs are in use");
}

absl::StatusOr<uint16_t> IommuDriver::CreateDomain(int levels) {
  if (levels < 2 || levels > 5) {
    return absl::InvalidArgumentError(
        absl::StrFormat("domain levels %d not in 2..5", levels));
  }
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(uint16_t did, AllocDidLocked());
  HV_ASSIGN_OR_RETURN(uint64_t root, pages_->Allocate());
  auto dom = std::make_unique<Domain>();
  dom->did = did;
  dom->levels = levels;
  dom->root = root;
  dom->iova = std::make_unique<IovaAllocator>(
      kPageSize, uint64_t{1} << AgawBitsForAw(AwForLevels(levels)));
  domains_[did] = std::move(dom);
  return did;
}

absl::StatusOr<uint16_t> IommuDriver::CreatePassThroughDomain() {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(uint16_t did, AllocDidLocked());
  auto dom = std::make_unique<Domain>();
  dom->did = did;
  dom->pass_through = true;
  dom->iova = std::make_unique<IovaAllocator>(kPageSize,
                                              uint64_t{1} << kHostAddressWidth);
  domains_[did] = std::move(dom);
  return did;
}

absl::StatusOr<IommuDriver::Domain*> IommuDriver::FindLocked(uint16_t did) {
  auto it = domains_.find(did);
  if (it == domains_.end()) return NoDomain(did);
  return it->second.get();
}

absl::StatusOr<IommuDriver::Domain*> IommuDriver::WritableLocked(uint16_t did) {
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  if (d->pass_through) {
    return absl::FailedPreconditionError(
        absl::StrFormat("domain %d is pass-through: nothing to map", did));
  }
  if (!d->owns_tables) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "domain %d uses the crashed instance's page tables (read-only until "
        "its devices are re-attached)",
        did));
  }
  return d;
}

void IommuDriver::FreeTablesLocked(uint64_t table, int level) {
  if (level > 1) {
    const uint64_t* words = mem_->PageWords(table);
    if (words != nullptr) {
      for (int i = 0; i < kEntriesPerTable; ++i) {
        const SlPte e{std::atomic_ref<const uint64_t>(words[i]).load(
            std::memory_order_acquire)};
        if (e.present() && !e.ps()) FreeTablesLocked(e.addr(), level - 1);
      }
    }
  }
  (void)pages_->Free(table);  // tables are only ever from pages_
}

absl::Status IommuDriver::DestroyDomain(uint16_t did) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  if (!d->sids.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "domain %d still has %d device(s) attached", did, d->sids.size()));
  }
  // No device can reach the tables any more (detach flushed the caches).
  if (!d->pass_through && d->owns_tables) FreeTablesLocked(d->root, d->levels);
  domains_.erase(did);
  return absl::OkStatus();
}

absl::Status IommuDriver::Attach(uint16_t sid, uint16_t did) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  if (auto it = sid_to_did_.find(sid); it != sid_to_did_.end()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("device %s is already attached to domain %d",
                        SidName(sid), it->second));
  }
  const uint64_t re_addr = root_table_ + SidBus(sid) * sizeof(RootEntry);
  HV_ASSIGN_OR_RETURN(uint64_t re_lo, mem_->Load64(re_addr));
  uint64_t ctx_table = RootEntry{re_lo, 0}.ctp();
  if (!RootEntry{re_lo, 0}.present()) {
    HV_ASSIGN_OR_RETURN(ctx_table, pages_->Allocate());
    owned_pages_.push_back(ctx_table);
    HV_RETURN_IF_ERROR(mem_->Store64(re_addr + 8, 0));
    HV_RETURN_IF_ERROR(mem_->Store64(re_addr, RootEntry::Make(ctx_table).lo));
  }
  const ContextEntry ce =
      d->pass_through
          ? ContextEntry::Make(0, TranslationType::kPassThrough,
                               /*aw=largest supported*/ 3, did)
          : ContextEntry::Make(d->root, TranslationType::kUntranslated,
                               AwForLevels(d->levels), did);
  const uint64_t ce_addr = ctx_table + SidDevfn(sid) * sizeof(ContextEntry);
  // hi first, lo (with P) last: a walk never sees P with a stale hi.
  HV_RETURN_IF_ERROR(mem_->Store64(ce_addr + 8, ce.hi));
  HV_RETURN_IF_ERROR(mem_->Store64(ce_addr, ce.lo));
  // CAP.CM = 0: a not-present entry is never cached, so no flush is needed.
  d->sids.insert(sid);
  sid_to_did_[sid] = did;
  return absl::OkStatus();
}

absl::Status IommuDriver::Detach(uint16_t sid) {
  hv::MutexLock lock(&mu_);
  auto it = sid_to_did_.find(sid);
  if (it == sid_to_did_.end()) {
    return absl::NotFoundError(
        absl::StrFormat("device %s is not attached", SidName(sid)));
  }
  const uint16_t did = it->second;
  HV_ASSIGN_OR_RETURN(
      uint64_t re_lo,
      mem_->Load64(root_table_ + SidBus(sid) * sizeof(RootEntry)));
  const uint64_t ce_addr =
      RootEntry{re_lo, 0}.ctp() + SidDevfn(sid) * sizeof(ContextEntry);
  // 1. clear (P=0; hi is left as is so a racing walk stays consistent),
  // 2. flush the device's context-cache entry, 3. flush the domain's IOTLB.
  HV_RETURN_IF_ERROR(mem_->Store64(ce_addr, 0));
  HV_RETURN_IF_ERROR(io_.InvalidateContextDevice(sid, did));
  HV_RETURN_IF_ERROR(io_.InvalidateIotlbDomain(did));
  sid_to_did_.erase(it);
  if (auto d = domains_.find(did); d != domains_.end()) {
    d->second->sids.erase(sid);
  }
  return absl::OkStatus();
}

absl::Status IommuDriver::ValidateRange(const Domain& d, uint64_t iova,
                                        uint64_t size) {
  if (size == 0 || iova % kPageSize != 0 || size % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IOVA range [0x%x, +0x%x) must be non-empty and page aligned", iova,
        size));
  }
  const uint64_t limit = uint64_t{1} << AgawBitsForAw(AwForLevels(d.levels));
  if (iova >= limit || size > limit - iova) {
    return absl::OutOfRangeError(absl::StrFormat(
        "IOVA range [0x%x, +0x%x) exceeds domain %d's %d-bit address width",
        iova, size, d.did, AgawBitsForAw(AwForLevels(d.levels))));
  }
  return absl::OkStatus();
}

absl::Status IommuDriver::SetLeafLocked(const Domain& d, uint64_t iova,
                                        int leaf_level, uint64_t value,
                                        std::vector<uint64_t>* new_pages) {
  uint64_t table = d.root;
  for (int level = d.levels; level > leaf_level; --level) {
    const uint64_t slot = table + LevelIndex(iova, level) * sizeof(SlPte);
    HV_ASSIGN_OR_RETURN(uint64_t v, mem_->Load64(slot));
    SlPte e{v};
    if (!e.present()) {
      HV_ASSIGN_OR_RETURN(uint64_t page, pages_->Allocate());
      new_pages->push_back(page);
      // Non-leaf entries grant R and W: rights are ANDed down the walk.
      e.v = page | SlPte::kRead | SlPte::kWrite;
      HV_RETURN_IF_ERROR(mem_->Store64(slot, e.v));
    } else if (e.ps()) {
      return absl::InternalError("superpage in the way of a smaller mapping");
    }
    table = e.addr();
  }
  return mem_->Store64(table + LevelIndex(iova, leaf_level) * sizeof(SlPte),
                       value);
}

absl::Status IommuDriver::Map(uint16_t did, uint64_t iova, uint64_t hpa,
                              uint64_t size, uint8_t perms) {
  if ((perms & kPermRW) == 0 || (perms & ~kPermRW) != 0) {
    return absl::InvalidArgumentError("map permissions must be R, W or RW");
  }
  if (hpa % kPageSize != 0 || (hpa >> kHostAddressWidth) != 0 ||
      hpa + size < hpa || ((hpa + size - 1) >> kHostAddressWidth) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "HPA 0x%x (+0x%x) is unaligned or beyond the %d-bit host address "
        "width",
        hpa, size, kHostAddressWidth));
  }
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, WritableLocked(did));
  HV_RETURN_IF_ERROR(ValidateRange(*d, iova, size));
  // Pass 1: everything in the range must be unmapped.
  for (uint64_t a = iova; a < iova + size;) {
    const PageWalk w = WalkPageTables(*mem_, d->root, d->levels, a);
    if (w.fault != FaultReason::kNone) {
      return absl::InternalError("domain page tables are corrupt");
    }
    if (w.perms != kPermNone) {
      return absl::AlreadyExistsError(
          absl::StrFormat("IOVA 0x%x in domain %d is already mapped", a, did));
    }
    const uint64_t step = LevelPageSize(w.stop_level);
    a = (a & ~(step - 1)) + step;
    if (a == 0) break;  // wrapped at the top of the address space
  }
  // Pass 2: install, biggest page that fits first.
  std::vector<uint64_t> new_pages;
  uint64_t done = 0;
  absl::Status status;
  while (done < size) {
    const uint64_t a = iova + done, p = hpa + done;
    int level = 1;
    for (int l = std::min(d->levels, 4); l >= 2; --l) {
      const uint64_t ps = LevelPageSize(l);
      if (SuperpageAllowed(l) && a % ps == 0 && p % ps == 0 &&
          size - done >= ps) {
        // Only where no table already hangs at that slot.
        const PageWalk w = WalkPageTables(*mem_, d->root, d->levels, a);
        if (w.perms == kPermNone && w.stop_level >= l) {
          level = l;
          break;
        }
      }
    }
    const uint64_t value = p | perms | (level > 1 ? SlPte::kPageSizeBit : 0);
    status = SetLeafLocked(*d, a, level, value, &new_pages);
    if (!status.ok()) break;
    done += LevelPageSize(level);
  }
  if (!status.ok()) {
    // Roll back: nothing stays mapped. A DMA may have used the new entries
    // meanwhile, so flush after clearing.
    if (done > 0) {
      (void)ClearRangeLocked(*d, iova, done);
      (void)io_.InvalidateIotlbRange(did, iova, done);
    }
    return status;
  }
  return absl::OkStatus();
}

absl::Status IommuDriver::ClearRangeLocked(const Domain& d, uint64_t iova,
                                           uint64_t size) {
  for (uint64_t a = iova; a < iova + size;) {
    uint64_t table = d.root;
    int level = d.levels;
    for (;; --level) {
      const uint64_t slot = table + LevelIndex(a, level) * sizeof(SlPte);
      HV_ASSIGN_OR_RETURN(uint64_t v, mem_->Load64(slot));
      const SlPte e{v};
      if (!e.present()) {
        return absl::NotFoundError(
            absl::StrFormat("IOVA 0x%x in domain %d is not mapped", a, d.did));
      }
      if (level == 1 || e.ps()) {
        HV_RETURN_IF_ERROR(mem_->Store64(slot, 0));
        a += LevelPageSize(level);
        break;
      }
      table = e.addr();
    }
  }
  return absl::OkStatus();
}

absl::Status IommuDriver::Unmap(uint16_t did, uint64_t iova, uint64_t size) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, WritableLocked(did));
  HV_RETURN_IF_ERROR(ValidateRange(*d, iova, size));
  // Check first so a bad request changes nothing.
  for (uint64_t a = iova; a < iova + size;) {
    const PageWalk w = WalkPageTables(*mem_, d->root, d->levels, a);
    if (w.perms == kPermNone) {
      return absl::NotFoundError(
          absl::StrFormat("IOVA 0x%x in domain %d is not mapped", a, did));
    }
    if (a % w.page_size != 0 || w.page_size > iova + size - a) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unmap [0x%x, +0x%x) would split the 0x%x-byte page at 0x%x", iova,
          size, w.page_size, a & ~(w.page_size - 1)));
    }
    a += w.page_size;
  }
  HV_RETURN_IF_ERROR(ClearRangeLocked(*d, iova, size));
  HV_RETURN_IF_ERROR(io_.InvalidateIotlbRange(did, iova, size));
  std::vector<uint64_t> unlinked;
  UnlinkEmptyTablesLocked(d->root, d->levels, 0, iova, size, &unlinked);
  if (!unlinked.empty()) {
    // The invalidation drains in-flight requests: after it, no walk can
    // still be reading an unlinked page, so it can be reused.
    HV_RETURN_IF_ERROR(io_.InvalidateIotlbRange(did, iova, size));
    for (uint64_t page : unlinked) (void)pages_->Free(page);
  }
  return absl::OkStatus();
}

void IommuDriver::UnlinkEmptyTablesLocked(uint64_t table, int level,
                                          uint64_t base, uint64_t iova,
                                          uint64_t size,
                                          std::vector<uint64_t>* unlinked) {
  if (level == 1) return;
  const uint64_t span = LevelPageSize(level);
  const uint64_t end = iova + size - 1;  // inclusive: no overflow at the top
  const int first = iova <= base ? 0 : static_cast<int>((iova - base) / span);
  const int last = static_cast<int>(
      std::min<uint64_t>((end - base) / span, kEntriesPerTable - 1));
  for (int i = first; i <= last; ++i) {
    const uint64_t slot = table + i * sizeof(SlPte);
    auto v = mem_->Load64(slot);
    if (!v.ok()) return;
    const SlPte e{*v};
    if (!e.present() || e.ps()) continue;
    const uint64_t child_base = base + i * span;
    UnlinkEmptyTablesLocked(e.addr(), level - 1, child_base, iova, size,
                            unlinked);
    const uint64_t* words = mem_->PageWords(e.addr());
    if (words == nullptr) continue;
    bool empty = true;
    for (int j = 0; j < kEntriesPerTable && empty; ++j) {
      empty = (std::atomic_ref<const uint64_t>(words[j]).load(
                   std::memory_order_acquire) &
               (SlPte::kRead | SlPte::kWrite)) == 0;
    }
    if (empty) {
      (void)mem_->Store64(slot, 0);
      unlinked->push_back(e.addr());
    }
  }
}

absl::StatusOr<uint64_t> IommuDriver::AllocIova(uint16_t did, uint64_t size,
                                                uint64_t align) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  return d->iova->Allocate(size, align);
}

absl::Status IommuDriver::FreeIova(uint16_t did, uint64_t iova, uint64_t size) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  return d->iova->Free(iova, size);
}

absl::StatusOr<IovaAllocator*> IommuDriver::iova_allocator(uint16_t did) {
  hv::MutexLock lock(&mu_);
  HV_ASSIGN_OR_RETURN(Domain * d, FindLocked(did));
  return d->iova.get();
}

uint64_t IommuDriver::root_table() const {
  hv::MutexLock lock(&mu_);
  return root_table_;
}

std::vector<uint16_t> IommuDriver::dids() const {
  hv::MutexLock lock(&mu_);
  std::vector<uint16_t> out;
  for (const auto& [did, d] : domains_) out.push_back(did);
  return out;
}

}  // namespace iommu
