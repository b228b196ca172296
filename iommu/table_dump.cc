#include "iommu/table_dump.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iommu/walker.h"

namespace iommu {
namespace {

struct Walker {
  const PhysMemory& mem;
  DeviceDump* dev;
  size_t max_ranges;
  absl::flat_hash_set<uint64_t> seen;

  void Leaf(uint64_t iova, uint64_t hpa, uint64_t size, uint8_t perms) {
    if (!dev->ranges.empty()) {
      DumpRange& r = dev->ranges.back();
      if (r.iova + r.size == iova && r.hpa + r.size == hpa &&
          r.page_size == size && r.perms == perms) {
        r.size += size;
        return;
      }
    }
    if (dev->ranges.size() >= max_ranges) {
      if (dev->error.empty()) dev->error = "too many ranges, output truncated";
      return;
    }
    dev->ranges.push_back(DumpRange{iova, hpa, size, size, perms});
  }

  bool Walk(uint64_t table, int level, uint64_t base, uint8_t perms) {
    const uint64_t* w = mem.PageWords(table);
    if (w == nullptr || !seen.insert(table).second) {
      dev->error = absl::StrFormat(
          "level-%d table at 0x%x is %s", level, table,
          w == nullptr ? "outside physical memory" : "reached twice");
      return false;
    }
    for (int i = 0; i < kEntriesPerTable; ++i) {
      const SlPte e{w[i]};
      if (!e.present()) continue;
      const uint64_t iova = base + i * LevelPageSize(level);
      if ((e.v & SlReservedMask(level, e.ps())) != 0) {
        dev->error = absl::StrFormat(
            "level-%d entry 0x%x at IOVA 0x%x has reserved bits set", level,
            e.v, iova);
        return false;
      }
      const uint8_t p = static_cast<uint8_t>(perms & e.v & kPermRW);
      if (level == 1 || e.ps()) {
        Leaf(iova, e.addr(), LevelPageSize(level), p);
      } else if (!Walk(e.addr(), level - 1, iova, p)) {
        return false;
      }
    }
    return true;
  }
};

std::string PermString(uint8_t p) {
  return absl::StrCat((p & kPermR) ? "r" : "-", (p & kPermW) ? "w" : "-");
}

std::string SizeString(uint64_t s) {
  if (s >= (uint64_t{1} << 30) && s % (uint64_t{1} << 30) == 0)
    return absl::StrCat(s >> 30, "G");
  if (s >= (1u << 20) && s % (1u << 20) == 0) return absl::StrCat(s >> 20, "M");
  return absl::StrCat(s >> 10, "K");
}

}  // namespace

std::vector<DeviceDump> DumpTables(const PhysMemory& mem, uint64_t rtaddr,
                                   std::optional<uint16_t> only_sid,
                                   size_t max_ranges) {
  std::vector<DeviceDump> out;
  const uint64_t* root = mem.PageWords(rtaddr & kAddrMask);
  if (root == nullptr) {
    DeviceDump d;
    d.error =
        absl::StrFormat("root table 0x%x is outside physical memory", rtaddr);
    out.push_back(d);
    return out;
  }
  for (int bus = 0; bus < kRootEntries; ++bus) {
    if (only_sid && SidBus(*only_sid) != bus) continue;
    const RootEntry re{root[2 * bus], root[2 * bus + 1]};
    if (!re.present()) continue;
    const uint64_t* ctx = mem.PageWords(re.ctp());
    if (ctx == nullptr || re.reserved_bits_set()) {
      DeviceDump d;
      d.sid = MakeSid(static_cast<uint8_t>(bus), 0);
      d.error = absl::StrFormat("root entry 0x%x of bus %02x is malformed",
                                re.lo, bus);
      out.push_back(d);
      continue;
    }
    for (int devfn = 0; devfn < kContextEntries; ++devfn) {
      const uint16_t sid =
          MakeSid(static_cast<uint8_t>(bus), static_cast<uint8_t>(devfn));
      if (only_sid && *only_sid != sid) continue;
      const ContextEntry ce{ctx[2 * devfn], ctx[2 * devfn + 1]};
      if (!ce.present()) continue;
      DeviceDump d;
      d.sid = sid;
      d.context = ce;
      const FaultReason why = ValidateContext(ce);
      if (why != FaultReason::kNone) {
        d.error = std::string(FaultReasonName(why));
      } else if (ce.tt() != TranslationType::kPassThrough) {
        Walker w{mem, &d, max_ranges, {}};
        w.Walk(ce.slptptr(), LevelsForAw(ce.aw()), 0, kPermRW);
      }
      out.push_back(std::move(d));
    }
  }
  return out;
}

std::string FormatDump(const std::vector<DeviceDump>& devices) {
  std::string s;
  for (const DeviceDump& d : devices) {
    const ContextEntry& ce = d.context;
    absl::StrAppendFormat(&s, "%02x:%02x.%d", SidBus(d.sid),
                          SidDevfn(d.sid) >> 3, SidDevfn(d.sid) & 7);
    if (ce.present()) {
      const char* tt = ce.tt() == TranslationType::kPassThrough ? "pass-through"
                       : ce.tt() == TranslationType::kReserved  ? "reserved"
                                                                : "translated";
      absl::StrAppendFormat(&s, " did=%d %s aw=%d (%d-level, %d-bit)%s",
                            ce.did(), tt, ce.aw(), LevelsForAw(ce.aw()),
                            AgawBitsForAw(ce.aw()), ce.fpd() ? " fpd" : "");
      if (ce.tt() != TranslationType::kPassThrough) {
        absl::StrAppendFormat(&s, " pgtbl=0x%x ranges=%d", ce.slptptr(),
                              d.ranges.size());
      }
    }
    if (!d.error.empty()) absl::StrAppend(&s, " ERROR: ", d.error);
    s += "\n";
    for (const DumpRange& r : d.ranges) {
      absl::StrAppendFormat(
          &s, "  iova 0x%x-0x%x -> hpa 0x%x-0x%x %s %s pages\n", r.iova,
          r.iova + r.size - 1, r.hpa, r.hpa + r.size - 1, PermString(r.perms),
          SizeString(r.page_size));
    }
  }
  return s;
}

}  // namespace iommu
