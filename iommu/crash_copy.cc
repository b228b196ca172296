#include "iommu/crash_copy.h"

#include <cstring>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "iommu/page_set.h"
#include "iommu/register_io.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

std::string SidName(uint16_t sid) {
  return absl::StrFormat("%02x:%02x.%d", SidBus(sid), SidDevfn(sid) >> 3,
                         SidDevfn(sid) & 7);
}

// One copy in progress. Any error return leaves cleanup to the caller
// (ReleaseCopy on result_), so the copy is all-or-nothing.
class Copier {
 public:
  Copier(PhysMemory* mem, PageAllocator* reserved, CopyStrategy strategy)
      : mem_(mem), reserved_(reserved) {
    result_.strategy = strategy;
  }

  absl::Status Run(uint64_t old_rtaddr);
  CopyResult& result() { return result_; }

 private:
  struct DomainState {
    size_t index = 0;  // in result_.domains
    TranslationType tt = TranslationType::kUntranslated;
    uint8_t aw = 0;
    uint64_t old_root = 0;
    uint64_t new_root = 0;
    // Current run of mapped IOVA (extended while contiguous).
    MappedRange run;
  };

  // Checks that an old table page may be read and has not been seen before.
  absl::StatusOr<const uint64_t*> OldTable(uint64_t hpa, const char* what,
                                           uint16_t sid);
  absl::StatusOr<uint64_t> NewPage(bool zero);
  absl::StatusOr<uint64_t> CopyTree(DomainState* d, uint16_t sid,
                                    uint64_t old_table, int level,
                                    uint64_t base_iova, uint8_t perms);
  void AddLeaf(DomainState* d, uint64_t iova, uint64_t hpa, uint64_t size,
               uint8_t perms);
  void FlushRun(DomainState* d);
  absl::Status CopyContext(uint16_t sid, const ContextEntry& ce,
                           uint64_t* new_lo);

  PhysMemory* const mem_;
  PageAllocator* const reserved_;
  CopyResult result_;
  PageSet seen_tables_{mem_->size()};
  absl::flat_hash_map<uint16_t, DomainState> by_did_;
};

absl::StatusOr<const uint64_t*> Copier::OldTable(uint64_t hpa, const char* what,
                                                 uint16_t sid) {
  const uint64_t* words = mem_->PageWords(hpa);
  if (words == nullptr) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s at 0x%x (reached from %s) is outside physical memory (0x%x bytes)",
        what, hpa, SidName(sid), mem_->size()));
  }
  if (reserved_->Owns(hpa)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s at 0x%x (reached from %s) lies in the reserved region the "
        "crashed instance must never use",
        what, hpa, SidName(sid)));
  }
  if (!seen_tables_.Insert(hpa)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s at 0x%x (reached from %s) is referenced twice: a cycle or a "
        "table shared between trees",
        what, hpa, SidName(sid)));
  }
  return words;
}

absl::StatusOr<uint64_t> Copier::NewPage(bool zero) {
  HV_ASSIGN_OR_RETURN(uint64_t page, reserved_->Allocate(zero));
  result_.new_pages.push_back(page);
  return page;
}

void Copier::FlushRun(DomainState* d) {
  if (d->run.size == 0) return;
  result_.ranges.push_back(d->run);
  result_.domains[d->index].reserved_iova.emplace_back(d->run.iova,
                                                       d->run.size);
  ++result_.stats.ranges;
  d->run = MappedRange{};
}

void Copier::AddLeaf(DomainState* d, uint64_t iova, uint64_t hpa, uint64_t size,
                     uint8_t perms) {
  MappedRange& r = d->run;
  if (r.size != 0 && r.iova + r.size == iova && r.page_size == size &&
      r.perms == perms) {
    r.hpa_contiguous &= r.hpa + r.size == hpa;
    r.size += size;
  } else {
    FlushRun(d);
    r = MappedRange{static_cast<uint16_t>(result_.domains[d->index].did),
                    iova,
                    hpa,
                    size,
                    size,
                    perms,
                    true};
  }
  ++result_.stats.leaf_entries;
  result_.stats.bytes_mapped += size;
}

// Depth-first copy of one page-table page (§9.8 formats). Returns the new
// page (or the old one for kKeepPageTables, which only validates).
absl::StatusOr<uint64_t> Copier::CopyTree(DomainState* d, uint16_t sid,
                                          uint64_t old_table, int level,
                                          uint64_t base_iova, uint8_t perms) {
  HV_ASSIGN_OR_RETURN(const uint64_t* src,
                      OldTable(old_table, "page table", sid));
  ++result_.stats.page_tables;
  const bool deep = result_.strategy == CopyStrategy::kDeepCopy;
  uint64_t new_table = old_table;
  uint64_t* dst = nullptr;
  if (deep) {
    HV_ASSIGN_OR_RETURN(new_table, NewPage(/*zero=*/false));
    dst = mem_->MutablePageWords(new_table);
  }
  const uint64_t entry_size = LevelPageSize(level);
  if (level == 1) {
    const uint64_t rsv = SlReservedMask(1, false);
    // Fast path: a fully populated leaf table mapping one physically
    // contiguous 2 MiB block with identical flags (the common layout of a
    // large buffer). Entry i = entry 0 + i pages, so checking the first and
    // last entry covers the reserved bits of all of them. The copy is fused
    // into the same pass over the source.
    const uint64_t first = src[0];
    bool contiguous = true;
    if (deep) {
      for (int i = 0; i < kEntriesPerTable; ++i) {
        const uint64_t v = src[i];
        dst[i] = v;
        contiguous &= v == first + uint64_t(i) * kPageSize;
      }
    } else {
      for (int i = 1; i < kEntriesPerTable; ++i) {
        contiguous &= src[i] == first + uint64_t(i) * kPageSize;
      }
    }
    if ((first & (SlPte::kRead | SlPte::kWrite)) != 0 && (first & rsv) == 0) {
      const uint64_t last = src[kEntriesPerTable - 1];
      if (contiguous && (last & rsv) == 0 && last > first &&
          ((last ^ first) & ~kAddrMask) == 0) {
        const uint8_t p = static_cast<uint8_t>(perms & first & kPermRW);
        AddLeaf(d, base_iova, first & kAddrMask, kPageSize, p);
        MappedRange& r = d->run;
        r.size += (kEntriesPerTable - 1) * kPageSize;
        result_.stats.leaf_entries += kEntriesPerTable - 1;
        result_.stats.bytes_mapped += (kEntriesPerTable - 1) * kPageSize;
        return new_table;
      }
    }
    // Per-entry path, with the current run kept in locals.
    const uint16_t did = result_.domains[d->index].did;
    MappedRange run = d->run;
    uint64_t leaves = 0;
    for (int i = 0; i < kEntriesPerTable; ++i) {
      const uint64_t v = src[i];
      if ((v & (SlPte::kRead | SlPte::kWrite)) == 0) continue;
      const uint64_t iova = base_iova + i * kPageSize;
      if ((v & rsv) != 0) {
        d->run = run;
        return absl::InvalidArgumentError(absl::StrFormat(
            "PTE 0x%x for IOVA 0x%x (DID %d) has reserved bits set", v, iova,
            did));
      }
      const uint64_t hpa = v & kAddrMask;
      const uint8_t p = static_cast<uint8_t>(perms & v & kPermRW);
      ++leaves;
      if (run.size != 0 && run.iova + run.size == iova &&
          run.page_size == kPageSize && run.perms == p) {
        run.hpa_contiguous &= run.hpa + run.size == hpa;
        run.size += kPageSize;
        continue;
      }
      d->run = run;
      FlushRun(d);
      run = MappedRange{did, iova, hpa, kPageSize, kPageSize, p, true};
    }
    d->run = run;
    result_.stats.leaf_entries += leaves;
    result_.stats.bytes_mapped += leaves * kPageSize;
    return new_table;
  }
  // Non-leaf: not-present and superpage entries are copied as is, table
  // pointers are replaced below.
  if (deep) std::memcpy(dst, src, kPageSize);
  for (int i = 0; i < kEntriesPerTable; ++i) {
    const SlPte e{src[i]};
    if (!e.present()) continue;
    const uint64_t iova = base_iova + i * entry_size;
    if ((e.v & SlReservedMask(level, e.ps())) != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "level-%d entry 0x%x for IOVA 0x%x (DID %d) has reserved bits set",
          level, e.v, iova, result_.domains[d->index].did));
    }
    const uint8_t p = static_cast<uint8_t>(perms & e.v & kPermRW);
    if (e.ps()) {
      AddLeaf(d, iova, e.addr(), entry_size, p);
      continue;
    }
    HV_ASSIGN_OR_RETURN(uint64_t child,
                        CopyTree(d, sid, e.addr(), level - 1, iova, p));
    if (deep) dst[i] = (e.v & ~kAddrMask) | child;
  }
  return new_table;
}

absl::Status Copier::CopyContext(uint16_t sid, const ContextEntry& ce,
                                 uint64_t* new_lo) {
  const FaultReason why = ValidateContext(ce);
  if (why != FaultReason::kNone) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "context entry of %s (lo 0x%x hi 0x%x) is malformed: %s%s",
        SidName(sid), ce.lo, ce.hi, FaultReasonName(why),
        ce.tt() == TranslationType::kReserved ? " (reserved TT)"
        : why == FaultReason::kInvalidContext
            ? absl::StrFormat(" (AW %d not supported)", ce.aw())
            : ""));
  }
  ++result_.stats.contexts;
  const bool pt = ce.tt() == TranslationType::kPassThrough;
  if (pt) ++result_.stats.pass_through_contexts;
  const uint16_t did = ce.did();
  auto it = by_did_.find(did);
  if (it != by_did_.end()) {
    DomainState& d = it->second;
    const bool d_pt = d.tt == TranslationType::kPassThrough;
    if (d_pt != pt || d.aw != ce.aw() || (!pt && d.old_root != ce.slptptr())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "DID %d is used by %s with a different tree (TT %d AW %d root 0x%x) "
          "than by earlier devices (TT %d AW %d root 0x%x)",
          did, SidName(sid), static_cast<int>(ce.tt()), ce.aw(), ce.slptptr(),
          static_cast<int>(d.tt), d.aw, d.old_root));
    }
    result_.domains[d.index].sids.push_back(sid);
    *new_lo = pt ? ce.lo : (ce.lo & ~kAddrMask) | d.new_root;
    return absl::OkStatus();
  }
  DomainState d;
  d.index = result_.domains.size();
  d.tt = ce.tt();
  d.aw = ce.aw();
  AdoptedDomain ad;
  ad.did = did;
  ad.pass_through = pt;
  ad.levels = LevelsForAw(ce.aw());
  ad.owns_tables = result_.strategy == CopyStrategy::kDeepCopy;
  ad.sids.push_back(sid);
  result_.domains.push_back(std::move(ad));
  ++result_.stats.domains;
  if (!pt) {
    d.old_root = ce.slptptr();
    HV_ASSIGN_OR_RETURN(d.new_root, CopyTree(&d, sid, d.old_root,
                                             LevelsForAw(ce.aw()), 0, kPermRW));
    FlushRun(&d);
    result_.domains[d.index].root = d.new_root;
  }
  *new_lo = pt ? ce.lo : (ce.lo & ~kAddrMask) | d.new_root;
  by_did_.emplace(did, d);
  return absl::OkStatus();
}

absl::Status Copier::Run(uint64_t old_rtaddr) {
  result_.old_rtaddr = old_rtaddr & kAddrMask;
  HV_ASSIGN_OR_RETURN(const uint64_t* old_root,
                      OldTable(result_.old_rtaddr, "root table", 0));
  HV_ASSIGN_OR_RETURN(result_.new_rtaddr, NewPage(/*zero=*/true));
  result_.context_pages.push_back(result_.new_rtaddr);
  uint64_t* new_root = mem_->MutablePageWords(result_.new_rtaddr);
  for (int bus = 0; bus < kRootEntries; ++bus) {
    const RootEntry re{old_root[2 * bus], old_root[2 * bus + 1]};
    if (!re.present()) continue;
    const uint16_t bus_sid = MakeSid(static_cast<uint8_t>(bus), 0);
    if (re.reserved_bits_set()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "root entry of bus %02x (lo 0x%x hi 0x%x) has reserved bits set", bus,
          re.lo, re.hi));
    }
    HV_ASSIGN_OR_RETURN(const uint64_t* old_ctx,
                        OldTable(re.ctp(), "context table", bus_sid));
    HV_ASSIGN_OR_RETURN(uint64_t new_ctx_page, NewPage(/*zero=*/true));
    result_.context_pages.push_back(new_ctx_page);
    uint64_t* new_ctx = mem_->MutablePageWords(new_ctx_page);
    for (int devfn = 0; devfn < kContextEntries; ++devfn) {
      const ContextEntry ce{old_ctx[2 * devfn], old_ctx[2 * devfn + 1]};
      if (!ce.present()) continue;
      const uint16_t sid =
          MakeSid(static_cast<uint8_t>(bus), static_cast<uint8_t>(devfn));
      uint64_t lo = 0;
      HV_RETURN_IF_ERROR(CopyContext(sid, ce, &lo));
      new_ctx[2 * devfn + 1] = ce.hi;
      new_ctx[2 * devfn] = lo;
    }
    new_root[2 * bus] = RootEntry::Make(new_ctx_page).lo;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CopyResult> CopyTables(PhysMemory* mem, uint64_t old_rtaddr,
                                      PageAllocator* reserved,
                                      CopyStrategy strategy) {
  Copier copier(mem, reserved, strategy);
  absl::Status s = copier.Run(old_rtaddr);
  if (!s.ok()) {
    ReleaseCopy(&copier.result(), reserved);
    return s;
  }
  return std::move(copier.result());
}

void ReleaseCopy(CopyResult* copy, PageAllocator* reserved) {
  for (uint64_t page : copy->new_pages) (void)reserved->Free(page);
  copy->new_pages.clear();
  copy->context_pages.clear();
}

absl::Status SwitchRootTable(hv::MmioDevice* regs, uint64_t new_rtaddr) {
  RegisterIo io(regs);
  HV_RETURN_IF_ERROR(io.SetRootTable(new_rtaddr));
  HV_RETURN_IF_ERROR(io.InvalidateContextGlobal());
  return io.InvalidateIotlbGlobal();
}

absl::StatusOr<RecoveryReport> RecoverTables(PhysMemory* mem,
                                             hv::MmioDevice* regs,
                                             PageAllocator* reserved,
                                             CopyStrategy strategy) {
  RegisterIo io(regs);
  HV_ASSIGN_OR_RETURN(uint32_t gsts, io.Read32(Reg::kGsts));
  if ((gsts & gsts::kTes) == 0 || (gsts & gsts::kRtps) == 0) {
    return absl::FailedPreconditionError(
        "IOMMU translation is not enabled: no tables to recover");
  }
  HV_ASSIGN_OR_RETURN(uint64_t rtaddr, io.Read64(Reg::kRtaddr));
  RecoveryReport report;
  HV_ASSIGN_OR_RETURN(report.copy, CopyTables(mem, rtaddr, reserved, strategy));
  auto verify = VerifyTranslationsEqual(*mem, report.copy.old_rtaddr,
                                        report.copy.new_rtaddr);
  if (!verify.ok()) {
    ReleaseCopy(&report.copy, reserved);
    return verify.status();
  }
  report.verify = *verify;
  HV_RETURN_IF_ERROR(SwitchRootTable(regs, report.copy.new_rtaddr));
  return report;
}

absl::StatusOr<std::unique_ptr<IommuDriver>> AdoptRecovered(
    PhysMemory* mem, hv::MmioDevice* regs, PageAllocator* reserved,
    const RecoveryReport& report) {
  std::vector<uint64_t> owned = report.copy.context_pages;
  return IommuDriver::Adopt(mem, regs, reserved, report.copy.new_rtaddr,
                            std::move(owned), report.copy.domains);
}

}  // namespace iommu
