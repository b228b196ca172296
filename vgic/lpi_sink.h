// The contract between the ITS and the redistributors' LPI state (DESIGN §4).
//
// The ITS translates (DeviceID, EventID) → (pINTID, target vCPU) and then
// acts on LPIs only through this interface; the vGIC core implements it with
// per-vCPU pending bitmaps (atomic bit operations) and a per-LPI cache of the
// configuration byte (priority [7:2], enable [0]) from the guest's
// LPI configuration table (GICR_PROPBASER, shared by all redistributors).
//
// Locking contract: every method is safe to call from any thread. Methods
// that only flip pending bits (SetPending, ClearPending, MovePending) take no
// sleeping lock and never read guest memory, so the ITS may call them while
// holding its spinlock. ReadConfigByte reads guest memory and must be called
// with no ITS lock held; ApplyConfigByte only updates the cache.
#ifndef VGIC_LPI_SINK_H_
#define VGIC_LPI_SINK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vgic {

inline constexpr uint32_t kFirstLpi = 8192;  // GICv3 §1.2: LPIs start at 8192

class LpiSink {
 public:
  virtual ~LpiSink() = default;

  virtual uint32_t num_vcpus() const = 0;
  // GICD_TYPER.IDbits + 1: LPIs are [8192, 2^id_bits). The ITS reports the
  // same value in GITS_TYPER.IDbits.
  virtual uint32_t id_bits() const = 0;

  // Latches `intid` pending on `vcpu` (a second call before acknowledge
  // coalesces) and re-evaluates the vCPU's interrupt line. Returns true if the
  // bit was newly set, false if it was already pending (coalesced).
  // Precondition (checked by the ITS): vcpu < num_vcpus(), intid is an LPI.
  virtual bool SetPending(uint32_t vcpu, uint32_t intid) = 0;
  // Clears pending state; returns whether it was pending.
  virtual bool ClearPending(uint32_t vcpu, uint32_t intid) = 0;
  // Moves pending state of `intid` from one vCPU to another (MOVI/MOVALL).
  virtual void MovePending(uint32_t from_vcpu, uint32_t to_vcpu,
                           uint32_t intid) = 0;
  virtual bool IsPending(uint32_t vcpu, uint32_t intid) const = 0;
  // Moves every pending LPI of `from_vcpu` to `to_vcpu` (MOVALL, IHI 0069
  // §5.3: all of RDbase1's pending LPIs, whatever made them pending). Called
  // under the ITS spinlock: non-sleeping, guest-memory free. The default
  // walks the LPI range with IsPending/MovePending; sinks with a bitmap
  // override it.
  virtual void MoveAllPending(uint32_t from_vcpu, uint32_t to_vcpu) {
    if (from_vcpu == to_vcpu || from_vcpu >= num_vcpus() ||
        to_vcpu >= num_vcpus()) {
      return;
    }
    const uint64_t end = uint64_t{1} << id_bits();
    for (uint64_t intid = kFirstLpi; intid < end; ++intid) {
      const uint32_t i = static_cast<uint32_t>(intid);
      if (IsPending(from_vcpu, i)) MovePending(from_vcpu, to_vcpu, i);
    }
  }

  // Reads the guest's configuration byte of `intid` from the LPI
  // configuration table (PROPBASER of `vcpu`'s redistributor). Guest memory
  // access: never call under the ITS spinlock. FailedPrecondition if the
  // table is not set up / LPIs disabled, OutOfRange if outside guest RAM or
  // beyond PROPBASER.IDbits.
  [[nodiscard]] virtual absl::StatusOr<uint8_t> ReadConfigByte(
      uint32_t vcpu, uint32_t intid) const = 0;
  // Installs a configuration byte previously read by ReadConfigByte into the
  // LPI cache (what INV does after re-validating its mapping).
  virtual void ApplyConfigByte(uint32_t intid, uint8_t config) = 0;
  // INVALL for one redistributor: re-reads every LPI's configuration byte.
  [[nodiscard]] virtual absl::Status InvalidateAll(uint32_t vcpu) = 0;

  // GICR_CTLR.EnableLPIs of `vcpu`'s redistributor.
  virtual bool LpisEnabled(uint32_t vcpu) const = 0;
};

}  // namespace vgic

#endif  // VGIC_LPI_SINK_H_
