#include "iommu/verify.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "iommu/formats.h"
#include "iommu/page_set.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

class Verifier {
 public:
  explicit Verifier(const PhysMemory& mem) : mem_(mem) {}
  absl::Status Run(uint64_t old_rt, uint64_t new_rt);
  const VerifyReport& report() const { return report_; }

 private:
  absl::StatusOr<const uint64_t*> Table(uint64_t hpa, bool is_new,
                                        const char* what);
  absl::Status CompareTree(uint16_t sid, uint64_t o, uint64_t n, int level,
                           uint64_t base);
  absl::Status Mismatch(uint16_t sid, uint64_t iova, const char* what,
                        uint64_t o, uint64_t n) {
    return absl::DataLossError(absl::StrFormat(
        "translation of %02x:%02x.%d IOVA 0x%x differs: %s (old 0x%x, new "
        "0x%x)",
        SidBus(sid), SidDevfn(sid) >> 3, SidDevfn(sid) & 7, iova, what, o, n));
  }

  const PhysMemory& mem_;
  VerifyReport report_;
  PageSet seen_old_{mem_.size()}, seen_new_{mem_.size()};
  absl::flat_hash_map<uint64_t, uint64_t> verified_roots_;  // old → new
};

absl::StatusOr<const uint64_t*> Verifier::Table(uint64_t hpa, bool is_new,
                                                const char* what) {
  const uint64_t* w = mem_.PageWords(hpa);
  if (w == nullptr) {
    return absl::OutOfRangeError(
        absl::StrFormat("%s %s at 0x%x is outside physical memory",
                        is_new ? "new" : "old", what, hpa));
  }
  if (!(is_new ? seen_new_ : seen_old_).Insert(hpa)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s %s at 0x%x is reached twice", is_new ? "new" : "old", what, hpa));
  }
  return w;
}

// Parallel walk of two page-table trees with the walker's rules: R=W=0 is
// not present (other bits irrelevant); a leaf (level 1 or PS) must be equal
// in every bit; a non-leaf must be equal except for the table address.
absl::Status Verifier::CompareTree(uint16_t sid, uint64_t o_table,
                                   uint64_t n_table, int level, uint64_t base) {
  HV_ASSIGN_OR_RETURN(const uint64_t* o, Table(o_table, false, "page table"));
  HV_ASSIGN_OR_RETURN(const uint64_t* n, Table(n_table, true, "page table"));
  ++report_.page_tables_compared;
  const uint64_t entry_size = LevelPageSize(level);
  if (level == 1) {
    // One pass: identical leaf tables translate identically; count them.
    uint64_t diff = 0, present = 0;
    for (int i = 0; i < kEntriesPerTable; ++i) {
      diff |= o[i] ^ n[i];
      present += (o[i] & 3) != 0;
    }
    if (diff == 0) {
      report_.leaf_entries += present;
      report_.bytes_mapped += present * entry_size;
      return absl::OkStatus();
    }
  }
  for (int i = 0; i < kEntriesPerTable; ++i) {
    const SlPte oe{o[i]}, ne{n[i]};
    if (!oe.present() && !ne.present()) continue;
    const uint64_t iova = base + i * entry_size;
    if (oe.present() != ne.present()) {
      return Mismatch(sid, iova, "present bit", oe.v, ne.v);
    }
    if (level == 1 || oe.ps()) {
      if (oe.v != ne.v) return Mismatch(sid, iova, "leaf entry", oe.v, ne.v);
      ++report_.leaf_entries;
      report_.bytes_mapped += entry_size;
      continue;
    }
    if ((oe.v & ~kAddrMask) != (ne.v & ~kAddrMask)) {
      return Mismatch(sid, iova, "non-leaf entry flags", oe.v, ne.v);
    }
    HV_RETURN_IF_ERROR(CompareTree(sid, oe.addr(), ne.addr(), level - 1, iova));
  }
  return absl::OkStatus();
}

absl::Status Verifier::Run(uint64_t old_rt, uint64_t new_rt) {
  HV_ASSIGN_OR_RETURN(const uint64_t* o_root,
                      Table(old_rt, false, "root table"));
  HV_ASSIGN_OR_RETURN(const uint64_t* n_root,
                      Table(new_rt, true, "root table"));
  for (int bus = 0; bus < kRootEntries; ++bus) {
    const RootEntry o_re{o_root[2 * bus], o_root[2 * bus + 1]};
    const RootEntry n_re{n_root[2 * bus], n_root[2 * bus + 1]};
    const uint16_t bus_sid = MakeSid(static_cast<uint8_t>(bus), 0);
    if (o_re.present() != n_re.present() ||
        (o_re.present() &&
         (o_re.reserved_bits_set() || n_re.reserved_bits_set()))) {
      return Mismatch(bus_sid, 0, "root entry", o_re.lo, n_re.lo);
    }
    if (!o_re.present()) continue;
    HV_ASSIGN_OR_RETURN(const uint64_t* o_ctx,
                        Table(o_re.ctp(), false, "context table"));
    HV_ASSIGN_OR_RETURN(const uint64_t* n_ctx,
                        Table(n_re.ctp(), true, "context table"));
    for (int devfn = 0; devfn < kContextEntries; ++devfn) {
      const uint16_t sid =
          MakeSid(static_cast<uint8_t>(bus), static_cast<uint8_t>(devfn));
      const ContextEntry oc{o_ctx[2 * devfn], o_ctx[2 * devfn + 1]};
      const ContextEntry nc{n_ctx[2 * devfn], n_ctx[2 * devfn + 1]};
      if (oc.present() != nc.present()) {
        return Mismatch(sid, 0, "context present bit", oc.lo, nc.lo);
      }
      if (!oc.present()) continue;
      if (oc.hi != nc.hi || (oc.lo & ~kAddrMask) != (nc.lo & ~kAddrMask)) {
        return Mismatch(sid, 0, "context entry", oc.hi, nc.hi);
      }
      if (ValidateContext(oc) != FaultReason::kNone) {
        return Mismatch(sid, 0, "context entry invalid", oc.lo, oc.hi);
      }
      ++report_.contexts;
      if (oc.tt() == TranslationType::kPassThrough) {
        ++report_.pass_through_contexts;
        continue;  // address field unused (§9.3)
      }
      const uint64_t o_pt = oc.slptptr(), n_pt = nc.slptptr();
      auto it = verified_roots_.find(o_pt);
      if (it != verified_roots_.end()) {
        if (it->second != n_pt) {
          return Mismatch(sid, 0, "page-table root of a shared tree", o_pt,
                          n_pt);
        }
        continue;  // same pair of trees, already proven equal
      }
      verified_roots_.emplace(o_pt, n_pt);
      if (o_pt == n_pt) {
        ++report_.shared_trees;  // literally the same tables
        continue;
      }
      HV_RETURN_IF_ERROR(CompareTree(sid, o_pt, n_pt, LevelsForAw(oc.aw()), 0));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VerifyReport> VerifyTranslationsEqual(const PhysMemory& mem,
                                                     uint64_t old_rtaddr,
                                                     uint64_t new_rtaddr) {
  Verifier v(mem);
  HV_RETURN_IF_ERROR(v.Run(old_rtaddr & kAddrMask, new_rtaddr & kAddrMask));
  return v.report();
}

}  // namespace iommu
