// LPI state of the redistributors (GICv3 §5.1): per-vCPU pending bitmaps in
// shared memory, the configuration cache, the enable/disable transitions
// that scan and write back the guest's pending table, and the LpiSink
// interface the ITS uses.
#include <bit>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "vgic/vgic.h"

namespace vgic {

// Bitmap layout (see LpiPendingLayout): word k holds INTIDs [64k, 64k+64);
// bit k of the bitmap (word k/64, bit k%64) summarises word k. Data words of
// LPIs start at 8192/64 = 128, so the summary lives in words 2..127, inside
// the pending table's IMPLEMENTATION DEFINED first 1 KiB.
namespace {
constexpr uint32_t kFirstLpiWord = kFirstLpi / 64;
}  // namespace

bool Vgic::LpiBitSet(uint32_t v, uint32_t intid) {
  std::atomic<uint64_t>* bm = vcpus_[v]->pending;
  const uint32_t word = intid / 64;
  const uint64_t bit = uint64_t{1} << (intid % 64);
  if (bm[word].fetch_or(bit) & bit) return false;
  bm[word / 64].fetch_or(uint64_t{1} << (word % 64));
  return true;
}

bool Vgic::LpiBitClear(uint32_t v, uint32_t intid) {
  std::atomic<uint64_t>* bm = vcpus_[v]->pending;
  const uint64_t bit = uint64_t{1} << (intid % 64);
  // The summary bit is cleared lazily by the scanner.
  return (bm[intid / 64].fetch_and(~bit) & bit) != 0;
}

Vgic::Best Vgic::FindBestLpi(VcpuState& vc) {
  Best best;
  if (!vc.lpis_enabled.load(std::memory_order_relaxed)) return best;
  const uint32_t limit = vc.lpi_limit.load(std::memory_order_relaxed);
  const uint32_t nwords = limit / 64;
  std::atomic<uint64_t>* bm = vc.pending;
  for (uint32_t sw = kFirstLpiWord / 64; sw * 64 < nwords; ++sw) {
    uint64_t summary = bm[sw].load();
    while (summary != 0) {
      const uint32_t k =
          sw * 64 + static_cast<uint32_t>(std::countr_zero(summary));
      summary &= summary - 1;
      if (k >= nwords) break;
      uint64_t w = bm[k].load();
      if (w == 0) {
        // Clear the stale summary bit, then re-check: a setter sets the word
        // before the summary, so one of us sees the other (seq_cst).
        const uint64_t sbit = uint64_t{1} << (k % 64);
        bm[sw].fetch_and(~sbit);
        w = bm[k].load();
        if (w == 0) continue;
        bm[sw].fetch_or(sbit);
      }
      while (w != 0) {
        const uint32_t intid =
            k * 64 + static_cast<uint32_t>(std::countr_zero(w));
        w &= w - 1;
        const uint8_t cfg =
            lpi_config_[intid - kFirstLpi].load(std::memory_order_relaxed);
        if ((cfg & kLpiConfigEnable) == 0) continue;
        const uint8_t prio =
            static_cast<uint8_t>(cfg & kLpiConfigPriorityMask & kPriorityMask);
        if (prio < best.priority) best = {intid, prio};
      }
    }
  }
  return best;
}

uint32_t Vgic::LpiLimitFor(uint64_t propbaser) const {
  // PROPBASER.IDbits + 1 bits of INTID; fewer than 14 means no LPI is in
  // range (§12.10.21). Capped by what this GIC implements (GICD_TYPER).
  uint32_t bits = static_cast<uint32_t>(propbaser & kPropbaserIdbitsMask) + 1;
  if (bits < kMinLpiIdBits) return 0;
  if (bits > lpi_id_bits_) bits = lpi_id_bits_;
  return 1u << bits;
}

absl::Status Vgic::LoadConfigTable(uint64_t propbaser, uint32_t limit) {
  if (limit <= kFirstLpi) return absl::OkStatus();
  std::vector<uint8_t> table(limit - kFirstLpi);
  HV_RETURN_IF_ERROR(
      memory_->Read(propbaser & kPropbaserPaMask, table.data(), table.size()));
  for (size_t i = 0; i < table.size(); ++i) {
    lpi_config_[i].store(table[i], std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status Vgic::EnableLpis(VcpuState& vc, uint32_t v) {
  const uint64_t prop = vc.propbaser;
  const uint64_t pend_pa = vc.pendbaser & kPendbaserPaMask;
  const uint32_t limit = LpiLimitFor(prop);
  std::vector<uint8_t> pending;
  if (limit > kFirstLpi) {
    const uint64_t prop_pa = prop & kPropbaserPaMask;
    if (!memory_->Contains(prop_pa, limit - kFirstLpi)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "GICR_PROPBASER of vCPU %d: configuration table [0x%x, +0x%x) is "
          "outside guest RAM",
          v, prop_pa, limit - kFirstLpi));
    }
    if (!memory_->Contains(pend_pa, limit / 8)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "GICR_PENDBASER of vCPU %d: pending table [0x%x, +0x%x) is outside "
          "guest RAM",
          v, pend_pa, limit / 8));
    }
    pending.assign(limit / 8 - kPendingTableLpiOffset, 0);
    if (!vc.ptz) {
      // §5.1.2: with PTZ == 0 the table holds the pending state to load.
      HV_RETURN_IF_ERROR(memory_->Read(pend_pa + kPendingTableLpiOffset,
                                       pending.data(), pending.size()));
    }
    HV_RETURN_IF_ERROR(LoadConfigTable(prop, limit));
  }
  {
    // Nothing can be pending while EnableLPIs == 0 (SetPending refuses it
    // under this lock), so the bitmap becomes exactly the table's contents;
    // stray bits a posted producer set meanwhile are discarded.
    hv::SpinLockHolder l(&vc.lock);
    std::atomic<uint64_t>* bm = vc.pending;
    for (uint32_t k = 0; k < lpi_words(); ++k) bm[k].store(0);
    for (size_t off = 0; off < pending.size(); off += 8) {
      uint64_t w;
      std::memcpy(&w, pending.data() + off, 8);  // little-endian table
      if (w == 0) continue;
      const uint32_t k = kFirstLpiWord + static_cast<uint32_t>(off / 8);
      bm[k].store(w);
      bm[k / 64].fetch_or(uint64_t{1} << (k % 64));
    }
    vc.lpi_limit.store(limit);
    vc.lpis_enabled.store(true);
    UpdateLineLocked(vc, v);
  }
  // The configuration cache is shared: other vCPUs' LPIs may have changed.
  for (uint32_t u = 0; u < num_vcpus_; ++u) {
    if (u != v) UpdateLine(u);
  }
  return absl::OkStatus();
}

absl::Status Vgic::DisableLpis(VcpuState& vc, uint32_t v) {
  // Under vc.lock: SetPending sets bits under the same lock after checking
  // EnableLPIs, so every LPI it reported as pending is either acknowledged
  // or captured here and written back to the guest's table (§5.1.2).
  const uint32_t limit = vc.lpi_limit.load();
  std::vector<uint8_t> table(
      limit > kFirstLpi ? limit / 8 - kPendingTableLpiOffset : 0, 0);
  {
    hv::SpinLockHolder l(&vc.lock);
    vc.lpis_enabled.store(false);
    std::atomic<uint64_t>* bm = vc.pending;
    for (uint32_t k = kFirstLpiWord; k < lpi_words(); ++k) {
      const uint64_t w = bm[k].exchange(0);
      const uint64_t off = uint64_t{k - kFirstLpiWord} * 8;
      if (off + 8 <= table.size()) std::memcpy(table.data() + off, &w, 8);
    }
    for (uint32_t k = 0; k < kFirstLpiWord; ++k) bm[k].store(0);
    UpdateLineLocked(vc, v);
  }
  if (!table.empty()) {
    HV_RETURN_IF_ERROR(memory_->Write(
        (vc.pendbaser & kPendbaserPaMask) + kPendingTableLpiOffset,
        table.data(), table.size()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// LpiSink.

bool Vgic::SetPending(uint32_t vcpu, uint32_t intid) {
  if (vcpu >= num_vcpus_ || intid < kFirstLpi ||
      intid >= (1u << lpi_id_bits_)) {
    return false;
  }
  VcpuState& vc = *vcpus_[vcpu];
  // Cheap pre-check; the authoritative check is under vc.lock, which
  // EnableLPIs transitions also hold, so a pend is either captured by the
  // disable write-back or refused (§5.1: with EnableLPIs == 0 LPIs cannot
  // become pending).
  if (!vc.lpis_enabled.load() || intid >= vc.lpi_limit.load()) return false;
  hv::SpinLockHolder l(&vc.lock);
  if (!vc.lpis_enabled.load() || intid >= vc.lpi_limit.load()) return false;
  if (!LpiBitSet(vcpu, intid)) return false;  // coalesced: 1-bit latch
  if (!vc.line) {
    // Only this LPI can have made the line rise.
    const uint8_t cfg =
        lpi_config_[intid - kFirstLpi].load(std::memory_order_relaxed);
    if ((cfg & kLpiConfigEnable) != 0 &&
        GroupEnabledFor(vc.cpu, gicd_ctlr_mirror_.load())) {
      const Best b{intid, static_cast<uint8_t>(cfg & kLpiConfigPriorityMask &
                                               kPriorityMask)};
      if (Deliverable(vc.cpu, b)) SetLine(vc, vcpu, true);
    }
  }
  return true;
}

bool Vgic::ClearPending(uint32_t vcpu, uint32_t intid) {
  if (vcpu >= num_vcpus_ || intid < kFirstLpi ||
      intid >= (1u << lpi_id_bits_)) {
    return false;
  }
  if (!LpiBitClear(vcpu, intid)) return false;
  VcpuState& vc = *vcpus_[vcpu];
  hv::SpinLockHolder l(&vc.lock);
  if (vc.line) UpdateLineLocked(vc, vcpu);
  return true;
}

void Vgic::MovePending(uint32_t from_vcpu, uint32_t to_vcpu, uint32_t intid) {
  if (from_vcpu == to_vcpu || to_vcpu >= num_vcpus_) return;
  if (ClearPending(from_vcpu, intid)) SetPending(to_vcpu, intid);
}

void Vgic::MoveAllPending(uint32_t from_vcpu, uint32_t to_vcpu) {
  if (from_vcpu == to_vcpu || from_vcpu >= num_vcpus_ ||
      to_vcpu >= num_vcpus_) {
    return;
  }
  // Walk the summary of the source bitmap; each set LPI bit is taken with an
  // atomic clear (so a concurrent acknowledge or ClearPending wins or loses
  // cleanly) and pended on the target like SetPending (which re-checks the
  // target's EnableLPIs and range under its lock).
  std::atomic<uint64_t>* bm = vcpus_[from_vcpu]->pending;
  const uint32_t nwords = lpi_words();
  bool moved = false;
  for (uint32_t sw = kFirstLpiWord / 64; sw * 64 < nwords; ++sw) {
    uint64_t summary = bm[sw].load();
    while (summary != 0) {
      const uint32_t k =
          sw * 64 + static_cast<uint32_t>(std::countr_zero(summary));
      summary &= summary - 1;
      if (k < kFirstLpiWord || k >= nwords) continue;
      uint64_t w = bm[k].exchange(0);
      while (w != 0) {
        const uint32_t intid =
            k * 64 + static_cast<uint32_t>(std::countr_zero(w));
        w &= w - 1;
        SetPending(to_vcpu, intid);
        moved = true;
      }
    }
  }
  if (moved) {
    VcpuState& vc = *vcpus_[from_vcpu];
    hv::SpinLockHolder l(&vc.lock);
    UpdateLineLocked(vc, from_vcpu);
  }
}

bool Vgic::IsPending(uint32_t vcpu, uint32_t intid) const {
  if (vcpu >= num_vcpus_ || intid < kFirstLpi ||
      intid >= (1u << lpi_id_bits_)) {
    return false;
  }
  const uint64_t bit = uint64_t{1} << (intid % 64);
  return (vcpus_[vcpu]->pending[intid / 64].load() & bit) != 0;
}

absl::StatusOr<uint8_t> Vgic::ReadConfigByte(uint32_t vcpu,
                                             uint32_t intid) const {
  if (vcpu >= num_vcpus_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vCPU %d out of range", vcpu));
  }
  const VcpuState& vc = *vcpus_[vcpu];
  if (!vc.lpis_enabled.load()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("LPIs are disabled on vCPU %d's redistributor", vcpu));
  }
  const uint32_t limit = vc.lpi_limit.load();
  if (intid < kFirstLpi || intid >= limit) {
    return absl::OutOfRangeError(absl::StrFormat(
        "INTID %d outside the LPI range [8192, %d) of GICR_PROPBASER", intid,
        limit));
  }
  return memory_->ReadObj<uint8_t>((vc.prop_mirror.load() & kPropbaserPaMask) +
                                   (intid - kFirstLpi));
}

void Vgic::ApplyConfigByte(uint32_t intid, uint8_t config) {
  if (intid < kFirstLpi || intid >= (1u << lpi_id_bits_)) return;
  lpi_config_[intid - kFirstLpi].store(config, std::memory_order_relaxed);
  for (uint32_t v = 0; v < num_vcpus_; ++v) {
    if (IsPending(v, intid)) UpdateLine(v);
  }
}

absl::Status Vgic::InvalidateAll(uint32_t vcpu) {
  if (vcpu >= num_vcpus_) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vCPU %d out of range", vcpu));
  }
  const VcpuState& vc = *vcpus_[vcpu];
  if (!vc.lpis_enabled.load()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("LPIs are disabled on vCPU %d's redistributor", vcpu));
  }
  HV_RETURN_IF_ERROR(
      LoadConfigTable(vc.prop_mirror.load(), vc.lpi_limit.load()));
  UpdateAllLines();
  return absl::OkStatus();
}

bool Vgic::LpisEnabled(uint32_t vcpu) const {
  return vcpu < num_vcpus_ && vcpus_[vcpu]->lpis_enabled.load();
}

}  // namespace vgic
