// ITS save/restore into guest memory in KVM's table ABI REV0
// (Documentation/virt/kvm/devices/arm-vgic-its.rst): the device table named
// by GITS_BASER0 (flat or two-level), one ITT per device at its ITT_addr,
// and the collection table named by GITS_BASER1. Entries are 8 bytes,
// little-endian; field layouts are in its_defs.h.
#include <endian.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "vgic/its.h"

namespace vgic {

namespace {

constexpr uint64_t kIdsPerL2Page = its::kTablePageSize / its::kEntrySize;
// Upper bound on table entries a restore examines: a malformed table cannot
// make restore run unboundedly (legitimate tables use the Next fields and
// stay far below this).
constexpr uint64_t kRestoreScanBudget = uint64_t{1} << 24;

uint64_t BaserAddr(uint64_t baser) {
  return (baser & its::kBaserAddr64KMask) | (baser & its::kBaserAddrHighMask)
                                                << 36;  // PA[51:48]
}

uint64_t BaserBytes(uint64_t baser) {
  return ((baser & its::kBaserSizeMask) + 1) * its::kTablePageSize;
}

absl::StatusOr<uint64_t> ReadEntry(const hv::GuestMemory& mem, uint64_t gpa) {
  HV_ASSIGN_OR_RETURN(uint64_t v, mem.ReadObj<uint64_t>(gpa));
  return le64toh(v);
}

absl::Status WriteEntry(hv::GuestMemory& mem, uint64_t gpa, uint64_t v) {
  return mem.WriteObj<uint64_t>(gpa, htole64(v));
}

}  // namespace

absl::StatusOr<uint64_t> Its::DeviceEntryGpa(uint32_t device_id) const {
  if (device_id >= (uint64_t{1} << its::kDeviceIdBits)) {
    return absl::OutOfRangeError("DeviceID beyond GITS_TYPER.Devbits");
  }
  const uint64_t b = baser_[0];
  if (!(b & its::kBaserValid)) {
    return absl::FailedPreconditionError("GITS_BASER0 not valid");
  }
  const uint64_t base = BaserAddr(b);
  const uint64_t bytes = BaserBytes(b);
  if (!(b & its::kBaserIndirect)) {
    if (uint64_t{device_id} * its::kEntrySize >= bytes) {
      return absl::OutOfRangeError("DeviceID beyond the device table");
    }
    return base + uint64_t{device_id} * its::kEntrySize;
  }
  const uint64_t l1 = device_id / kIdsPerL2Page;
  if (l1 * its::kEntrySize >= bytes) {
    return absl::OutOfRangeError("DeviceID beyond the level-1 device table");
  }
  HV_ASSIGN_OR_RETURN(uint64_t entry,
                      ReadEntry(*mem_, base + l1 * its::kEntrySize));
  if (!(entry & its::kL1EntryValid)) {
    return absl::FailedPreconditionError("level-1 device table entry invalid");
  }
  return (entry & its::kL1EntryAddrMask) +
         (device_id % kIdsPerL2Page) * its::kEntrySize;
}

absl::Status Its::SaveTables() {
  hv::MutexLock ml(&cmd_mu_);
  struct DevSnap {
    uint32_t id;
    uint8_t event_bits;
    uint64_t itt_addr;
    size_t first_ite;
    size_t num_ites;
  };
  struct IteSnap {
    uint32_t event;
    Ite ite;
  };
  // Snapshot: size under lock_, allocate outside it, copy under it. The
  // state cannot change in between (every writer holds cmd_mu_).
  size_t ndev = 0, nite = 0;
  {
    hv::SpinLockHolder l(&lock_);
    ndev = devices_.size();
    for (const auto& [d, dev] : devices_) nite += dev.ites.size();
  }
  std::vector<DevSnap> devs;
  devs.reserve(ndev);
  std::vector<IteSnap> ites;
  ites.reserve(nite);
  std::vector<std::pair<uint16_t, uint32_t>> colls;
  colls.reserve(its::kNumCollectionIds);
  {
    hv::SpinLockHolder l(&lock_);
    for (const auto& [d, dev] : devices_) {
      devs.push_back(
          {d, dev.event_bits, dev.itt_addr, ites.size(), dev.ites.size()});
      for (const auto& [e, ite] : dev.ites) ites.push_back({e, ite});
    }
    for (uint32_t icid = 0; icid < its::kNumCollectionIds; ++icid) {
      if (collections_[icid] != kUnmapped) {
        colls.emplace_back(static_cast<uint16_t>(icid), collections_[icid]);
      }
    }
  }

  // Collection table: CTEs back to back, the rest zero (the first invalid
  // entry ends the table on restore).
  const uint64_t b1 = baser_[1];
  if (b1 & its::kBaserValid) {
    const uint64_t base = BaserAddr(b1);
    const uint64_t bytes = BaserBytes(b1);
    if (colls.size() * its::kEntrySize > bytes) {
      return absl::ResourceExhaustedError("collection table too small");
    }
    HV_RETURN_IF_ERROR(mem_->Fill(base, 0, bytes));
    for (size_t i = 0; i < colls.size(); ++i) {
      const uint64_t cte = uint64_t{1} << its::kCteValidShift |
                           uint64_t{colls[i].second} << its::kCteRdbaseShift |
                           colls[i].first;
      HV_RETURN_IF_ERROR(WriteEntry(*mem_, base + i * its::kEntrySize, cte));
    }
  } else if (!colls.empty()) {
    return absl::FailedPreconditionError(
        "collections mapped but GITS_BASER1 is not valid");
  }

  // Device table: zero it (every valid level-2 page if indirect), then DTEs.
  const uint64_t b0 = baser_[0];
  if (b0 & its::kBaserValid) {
    const uint64_t base = BaserAddr(b0);
    const uint64_t bytes = BaserBytes(b0);
    if (!(b0 & its::kBaserIndirect)) {
      const uint64_t used = std::min<uint64_t>(
          bytes, (uint64_t{1} << its::kDeviceIdBits) * its::kEntrySize);
      HV_RETURN_IF_ERROR(mem_->Fill(base, 0, used));
    } else {
      const uint64_t l1_entries = std::min<uint64_t>(
          bytes / its::kEntrySize,
          (uint64_t{1} << its::kDeviceIdBits) / kIdsPerL2Page);
      for (uint64_t i = 0; i < l1_entries; ++i) {
        HV_ASSIGN_OR_RETURN(uint64_t l1,
                            ReadEntry(*mem_, base + i * its::kEntrySize));
        if (l1 & its::kL1EntryValid) {
          HV_RETURN_IF_ERROR(
              mem_->Fill(l1 & its::kL1EntryAddrMask, 0, its::kTablePageSize));
        }
      }
    }
  } else if (!devs.empty()) {
    return absl::FailedPreconditionError(
        "devices mapped but GITS_BASER0 is not valid");
  }
  for (size_t k = 0; k < devs.size(); ++k) {
    const DevSnap& d = devs[k];
    absl::StatusOr<uint64_t> gpa = DeviceEntryGpa(d.id);
    if (!gpa.ok()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("no device table entry for DeviceID %u: %s", d.id,
                          gpa.status().message()));
    }
    const uint64_t next =
        k + 1 < devs.size()
            ? std::min<uint64_t>(devs[k + 1].id - d.id, its::kDteNextMax)
            : 0;
    const uint64_t dte =
        uint64_t{1} << its::kDteValidShift | next << its::kDteNextShift |
        ((d.itt_addr >> 8) & its::kDteIttAddrMask) << its::kDteIttAddrShift |
        (d.event_bits - 1u);
    HV_RETURN_IF_ERROR(WriteEntry(*mem_, *gpa, dte));
    // ITT: zero, then the ITEs in EventID order.
    HV_RETURN_IF_ERROR(mem_->Fill(
        d.itt_addr, 0, (uint64_t{1} << d.event_bits) * its::kEntrySize));
    for (size_t j = 0; j < d.num_ites; ++j) {
      const IteSnap& s = ites[d.first_ite + j];
      const uint64_t inext =
          j + 1 < d.num_ites
              ? std::min<uint64_t>(ites[d.first_ite + j + 1].event - s.event,
                                   its::kIteNextMax)
              : 0;
      const uint64_t ite = inext << its::kIteNextShift |
                           uint64_t{s.ite.intid} << its::kItePintidShift |
                           s.ite.icid;
      HV_RETURN_IF_ERROR(WriteEntry(
          *mem_, d.itt_addr + uint64_t{s.event} * its::kEntrySize, ite));
    }
  }
  return absl::OkStatus();
}

absl::Status Its::RestoreTables() {
  hv::MutexLock ml(&cmd_mu_);
  const uint32_t num_vcpus = sink_->num_vcpus();
  const uint64_t lpi_limit = uint64_t{1} << std::min(sink_->id_bits(), 32u);
  const uint32_t coll_cap = CollectionCapacity();
  uint64_t budget = kRestoreScanBudget;

  // Build the new state entirely outside lock_; install it only if every
  // entry validates.
  std::vector<uint32_t> colls(its::kNumCollectionIds, kUnmapped);
  const uint64_t b1 = baser_[1];
  if (b1 & its::kBaserValid) {
    const uint64_t base = BaserAddr(b1);
    for (uint32_t i = 0; i < coll_cap; ++i) {
      HV_ASSIGN_OR_RETURN(
          uint64_t cte, ReadEntry(*mem_, base + uint64_t{i} * its::kEntrySize));
      if (!(cte >> its::kCteValidShift)) break;  // end of table
      const uint64_t rd = (cte >> its::kCteRdbaseShift) & its::kCteRdbaseMask;
      const uint32_t icid = cte & its::kCteIcidMask;
      if ((cte & ~(uint64_t{1} << its::kCteValidShift |
                   its::kCteRdbaseMask << its::kCteRdbaseShift |
                   its::kCteIcidMask)) != 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("CTE %u: reserved bits set", i));
      }
      if (icid >= coll_cap) {
        return absl::InvalidArgumentError(
            absl::StrFormat("CTE %u: ICID %u out of range", i, icid));
      }
      if (rd >= num_vcpus) {
        return absl::InvalidArgumentError(
            absl::StrFormat("CTE %u: RDbase %u out of range", i, rd));
      }
      if (colls[icid] != kUnmapped) {
        return absl::InvalidArgumentError(
            absl::StrFormat("CTE %u: ICID %u mapped twice", i, icid));
      }
      colls[icid] = static_cast<uint32_t>(rd);
    }
  }

  DeviceMap devs;
  const uint64_t b0 = baser_[0];
  if (b0 & its::kBaserValid) {
    const uint64_t base = BaserAddr(b0);
    const uint64_t bytes = BaserBytes(b0);
    const bool indirect = b0 & its::kBaserIndirect;
    const uint64_t max_ids =
        std::min<uint64_t>(uint64_t{1} << its::kDeviceIdBits,
                           indirect ? bytes / its::kEntrySize * kIdsPerL2Page
                                    : bytes / its::kEntrySize);
    uint64_t id = 0;
    while (id < max_ids) {
      if (budget-- == 0) {
        return absl::ResourceExhaustedError(
            "device table scan budget exceeded");
      }
      uint64_t gpa;
      if (indirect) {
        HV_ASSIGN_OR_RETURN(
            uint64_t l1,
            ReadEntry(*mem_, base + id / kIdsPerL2Page * its::kEntrySize));
        if (!(l1 & its::kL1EntryValid)) {
          id = (id / kIdsPerL2Page + 1) * kIdsPerL2Page;
          continue;
        }
        gpa =
            (l1 & its::kL1EntryAddrMask) + id % kIdsPerL2Page * its::kEntrySize;
      } else {
        gpa = base + id * its::kEntrySize;
      }
      HV_ASSIGN_OR_RETURN(uint64_t dte, ReadEntry(*mem_, gpa));
      if (!(dte >> its::kDteValidShift)) {
        ++id;
        continue;
      }
      const uint64_t next = (dte >> its::kDteNextShift) & its::kDteNextMax;
      Device dev;
      dev.event_bits = static_cast<uint8_t>((dte & its::kDteSizeMask) + 1);
      dev.itt_addr = ((dte >> its::kDteIttAddrShift) & its::kDteIttAddrMask)
                     << 8;
      if (dev.event_bits > its::kEventIdBits) {
        return absl::InvalidArgumentError(
            absl::StrFormat("DTE %u: ITT size %u bits beyond GITS_TYPER.IDbits",
                            id, dev.event_bits));
      }
      const uint64_t max_events = uint64_t{1} << dev.event_bits;
      uint64_t ev = 0;
      while (ev < max_events) {
        if (budget-- == 0) {
          return absl::ResourceExhaustedError("ITT scan budget exceeded");
        }
        HV_ASSIGN_OR_RETURN(
            uint64_t ite,
            ReadEntry(*mem_, dev.itt_addr + ev * its::kEntrySize));
        if (ite == 0) {
          ++ev;
          continue;
        }
        const uint64_t inext = ite >> its::kIteNextShift;
        const uint64_t intid =
            (ite >> its::kItePintidShift) & its::kItePintidMask;
        const uint16_t icid = ite & its::kIteIcidMask;
        if (intid < kFirstLpi || intid >= lpi_limit) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "ITE %u/%u: pINTID %u out of range", id, ev, intid));
        }
        if (icid >= coll_cap) {
          return absl::InvalidArgumentError(
              absl::StrFormat("ITE %u/%u: ICID %u out of range", id, ev, icid));
        }
        dev.ites.emplace(static_cast<uint32_t>(ev),
                         Ite{static_cast<uint32_t>(intid), icid});
        if (inext == 0) break;
        ev += inext;
      }
      devs.emplace(static_cast<uint32_t>(id), std::move(dev));
      if (next == 0) break;
      id += next;
    }
  }

  // Observers learn the new translations of watched pairs first.
  if (HaveWatchers()) {
    std::vector<TranslationChange> changes;
    changes.reserve(watched_.size());
    for (uint64_t key : watched_) {
      const uint32_t d = key >> 32, e = static_cast<uint32_t>(key);
      TranslationChange c;
      c.device_id = d;
      c.event_id = e;
      c.cause = 0;
      {
        hv::SpinLockHolder l(&lock_);
        c.before = ResolveLocked(d, e);
      }
      auto dit = devs.find(d);
      if (ctlr_enabled_ && dit != devs.end()) {
        auto iit = dit->second.ites.find(e);
        if (iit != dit->second.ites.end() &&
            colls[iit->second.icid] != kUnmapped) {
          c.after = Translation{colls[iit->second.icid], iit->second.intid};
        }
      }
      if (c.before != c.after) changes.push_back(c);
    }
    Notify(changes);
  }
  {
    hv::SpinLockHolder l(&lock_);
    devices_.swap(devs);
    collections_.swap(colls);
    FlushCacheLocked();
    ++generation_;
  }
  // `devs` and `colls` now hold the old state; freed here, outside lock_.
  return absl::OkStatus();
}

}  // namespace vgic
