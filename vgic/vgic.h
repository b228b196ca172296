// The virtual GICv3 core (DESIGN §4): distributor, one redistributor per
// vCPU, the per-vCPU CPU interface, LPI state (implements vgic::LpiSink for
// the ITS), the per-vCPU interrupt line output and forwarded (HW) interrupts.
//
// The guest sees three MMIO frames (see regs.h and docs/vgic.md):
//   distributor()     64 KiB GICD frame,
//   redistributors()  num_vcpus * 128 KiB, RD_base + SGI_base per vCPU,
//   cpu_interface()   4 KiB ICC_* frame, banked by MmioContext::vcpu.
// The rest of hv injects interrupts with SetSpiLevel/PulseSpi/SetPpiLevel/
// PulsePpi/SendSgi/SetPending and observes each vCPU's interrupt line through
// the IrqLineCallback.
//
// Interpretations (GICv3 allows choices; docs/vgic.md lists them all):
//   - single Security state (GICD_CTLR.DS == 1), affinity routing always on
//     (ARE RAO/WI), only Group 1 is delivered (there is no IAR0);
//   - 5 priority bits (32 levels), ICC_BPR1 minimum 3;
//   - IGROUPR resets to all-ones (Group 1), like KVM, so a guest that never
//     programs groups still gets interrupts;
//   - GICD_TYPER.No1N == 1 (IROUTER.IRM RAZ/WI), DirectLPI == 0, MBIS == 1;
//   - LPIs do not become pending while GICR_CTLR.EnableLPIs == 0 (§5.1);
//   - vCPU i has affinity Aff0 = i % 16, Aff1 = (i / 16) % 256,
//     Aff2 = i / 4096 (Aff3 = 0), like KVM's MPIDR assignment.
//
// Locks (lock order, outermost first; never hold two locks of one level):
//   1. VcpuState::lpi_mu (hv::Mutex, per vCPU): the LPI registers
//      (GICR_CTLR.EnableLPIs, PROPBASER, PENDBASER, WAKER) and the
//      enable/disable transitions that read and write guest memory
//      (pending-table scan and write-back, configuration-table load). Never
//      taken under a spinlock.
//   [the ITS command spinlock sits here: the ITS calls SetPending etc. with it
//    held, so everything below is spinlocks only]
//   2. VcpuState::lock (hv::SpinLock, per vCPU): that vCPU's SGI/PPI state,
//      its CPU-interface state (PMR, BPR1, EOImode, IGRPEN1, active
//      priorities) and its IRQ-line level; SetPending sets LPI bits and the
//      EnableLPIs transitions snapshot/load the bitmap under it. The
//      IrqLineCallback runs with it held. Only one vCPU lock at a time.
//   3. dist_lock_ (hv::SpinLock): SPI state, GICD_CTLR, SPI candidate bitmap.
// Atomics: the LPI pending bitmaps (seq_cst bit operations on shared memory;
// cleared lock-free by ClearPending and read lock-free), the LPI
// configuration cache (relaxed bytes), per-vCPU SPI-candidate counts and
// mirrors of EnableLPIs/PROPBASER/GICD_CTLR for lock-free readers. Host
// callbacks (forwarded deactivation, resample) run with no vGIC lock held.
#ifndef VGIC_VGIC_H_
#define VGIC_VGIC_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/base/locks.h"
#include "hv/memory/guest_memory.h"
#include "hv/mmio/mmio_device.h"
#include "vgic/lpi_sink.h"
#include "vgic/regs.h"

namespace vgic {

inline constexpr uint32_t kMaxVcpus = 512;
inline constexpr uint32_t kMinLpiIdBits = 14;  // at least 8192 LPIs' INTIDs
inline constexpr uint32_t kMaxLpiIdBits = 19;  // see lpi_pending layout
inline constexpr uint32_t kNoVcpu = 0xffffffff;

// Called whenever "vcpu has an interrupt that ICC_IAR1 would acknowledge"
// changes. Runs with that vCPU's spinlock held: it must not block or call
// back into the Vgic (kick/wake the vCPU thread, e.g. write an eventfd).
using IrqLineCallback = std::function<void(uint32_t vcpu, bool level)>;
// Forwarded interrupt: the guest deactivated the virtual interrupt bound to
// `host_irq`, so the host must deactivate/unmask the physical one.
using HostDeactivateCallback = std::function<void(uint32_t host_irq)>;
// Non-forwarded level interrupt: the guest deactivated `intid`; the virtual
// line was lowered and the host re-asserts it if the source is still active
// (KVM's irqfd resample semantics).
using ResampleCallback = std::function<void(uint32_t intid)>;

struct VgicConfig {
  uint32_t num_vcpus = 1;             // 1..kMaxVcpus
  uint32_t num_spis = 32;             // 32..960 in multiples of 32, or 988
  uint32_t lpi_id_bits = 16;          // LPIs are [8192, 2^lpi_id_bits)
  hv::GuestMemory* memory = nullptr;  // not owned; outlives the Vgic
  IrqLineCallback irq_line;           // may be empty
};

// Where each vCPU's LPI pending bitmap lives, for a posted-interrupt producer
// in another process: a memfd; vCPU v's bitmap starts at offset(v) and has
// the layout of a GICR pending table (bit n = INTID n, one bit per INTID up to
// 2^lpi_id_bits). Bits of INTIDs < 8192 (the first 1 KiB, IMPLEMENTATION
// DEFINED in a real pending table) hold a summary: bit k set means 64-bit word
// k may be non-zero. A producer sets the LPI bit first, then the summary bit
// k = intid / 64, both with atomic OR, then kicks the vCPU (Vgic::Kick or a
// doorbell the arch layer turns into Kick).
struct LpiPendingLayout {
  int fd = -1;
  uint64_t bytes_per_vcpu = 0;  // page aligned
  uint64_t offset(uint32_t vcpu) const { return vcpu * bytes_per_vcpu; }
};

class Vgic final : public LpiSink {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Vgic>> Create(
      VgicConfig config);
  ~Vgic() override;
  Vgic(const Vgic&) = delete;
  Vgic& operator=(const Vgic&) = delete;

  // Replaces the IRQ-line callback. Not synchronised with line changes: call
  // before vCPU and injection threads start.
  void SetIrqLineCallback(IrqLineCallback cb);

  // ---- MMIO frames (each documents its width rules in docs/vgic.md).
  hv::MmioDevice& distributor() { return dist_frame_; }
  hv::MmioDevice& redistributors() { return redist_frame_; }
  hv::MmioDevice& cpu_interface() { return cpuif_frame_; }
  uint64_t redistributor_region_size() const {
    return uint64_t{num_vcpus_} * kRedistributorStride;
  }

  // ---- CPU interface access for the arch layer and tests (what the MMIO
  // frame calls). ReadIcc of IAR1 acknowledges.
  [[nodiscard]] absl::StatusOr<uint64_t> ReadIcc(uint32_t vcpu, IccReg reg);
  [[nodiscard]] absl::Status WriteIcc(uint32_t vcpu, IccReg reg,
                                      uint64_t value);

  // ---- Injection. Errors: InvalidArgument for an INTID/vCPU out of range.
  // Level of a level-sensitive input line (an edge-configured SPI latches
  // pending on a 0→1 transition).
  [[nodiscard]] absl::Status SetSpiLevel(uint32_t intid, bool level);
  // An edge event: latches the SPI pending whatever its configuration.
  // Returns true if the pending latch was newly set, false if the event
  // coalesced with one not yet acknowledged.
  [[nodiscard]] absl::StatusOr<bool> PulseSpi(uint32_t intid);
  [[nodiscard]] absl::Status SetPpiLevel(uint32_t vcpu, uint32_t intid,
                                         bool level);
  [[nodiscard]] absl::StatusOr<bool> PulsePpi(uint32_t vcpu, uint32_t intid);
  // Pends SGI `intid` (0..15) on `target_vcpu`; true if newly pending.
  [[nodiscard]] absl::StatusOr<bool> SendSgi(uint32_t target_vcpu,
                                             uint32_t intid);
  // The vCPU SPI `intid` is routed to by GICD_IROUTER; NotFound if IROUTER
  // names an affinity no vCPU has.
  [[nodiscard]] absl::StatusOr<uint32_t> SpiTargetVcpu(uint32_t intid) const;

  // ---- Forwarded (HW) interrupts. While bound, every host injection of the
  // interrupt (SetSpiLevel(true)/PulseSpi, or the PPI forms) marks the
  // physical interrupt active; `deactivate(host_irq)` is called exactly once
  // when the virtual interrupt is next neither pending nor active (guest
  // EOIR1 with EOImode 0, DIR with EOImode 1, ICPENDR/ICACTIVER), or at
  // Unforward if still outstanding. For a level-sensitive forwarded line the
  // virtual level is lowered at deactivation (the host re-injects if the
  // physical line is still asserted after deactivating it).
  [[nodiscard]] absl::Status ForwardSpi(uint32_t intid, uint32_t host_irq,
                                        HostDeactivateCallback deactivate);
  [[nodiscard]] absl::Status ForwardPpi(uint32_t vcpu, uint32_t intid,
                                        uint32_t host_irq,
                                        HostDeactivateCallback deactivate);
  // Cannot fail; ignores interrupts that are not forwarded.
  void UnforwardSpi(uint32_t intid);
  void UnforwardPpi(uint32_t vcpu, uint32_t intid);
  bool IsForwarded(uint32_t vcpu, uint32_t intid) const;
  // Resample notification for a non-forwarded level-sensitive SPI (host-owned
  // line: mask, signal, unmask on resample). Empty `cb` removes it.
  [[nodiscard]] absl::Status SetSpiResampler(uint32_t intid,
                                             ResampleCallback cb);

  // ---- IRQ line.
  bool IrqLine(uint32_t vcpu) const;
  // Re-evaluates vcpu's line (after a posted producer set pending bits).
  void Kick(uint32_t vcpu);

  // ---- LPI pending bitmaps (shared memory).
  const LpiPendingLayout& lpi_pending_layout() const { return lpi_layout_; }

  // ---- Affinity: MPIDR_EL1-style value (Aff0 [7:0], Aff1 [15:8],
  // Aff2 [23:16], Aff3 [39:32]) of vCPU `vcpu`, and the inverse.
  static uint64_t VcpuMpidr(uint32_t vcpu);
  uint32_t VcpuForMpidr(uint64_t mpidr) const;  // kNoVcpu if none

  uint32_t num_spis() const { return num_spis_; }

  // ---- LpiSink.
  uint32_t num_vcpus() const override { return num_vcpus_; }
  uint32_t id_bits() const override { return lpi_id_bits_; }
  bool SetPending(uint32_t vcpu, uint32_t intid) override;
  bool ClearPending(uint32_t vcpu, uint32_t intid) override;
  void MovePending(uint32_t from_vcpu, uint32_t to_vcpu,
                   uint32_t intid) override;
  bool IsPending(uint32_t vcpu, uint32_t intid) const override;
  void MoveAllPending(uint32_t from_vcpu, uint32_t to_vcpu) override;
  [[nodiscard]] absl::StatusOr<uint8_t> ReadConfigByte(
      uint32_t vcpu, uint32_t intid) const override;
  void ApplyConfigByte(uint32_t intid, uint8_t config) override;
  [[nodiscard]] absl::Status InvalidateAll(uint32_t vcpu) override;
  bool LpisEnabled(uint32_t vcpu) const override;

 private:
  // Host-side hook of an SGI/PPI/SPI: a forward binding or a resampler.
  struct HostHook {
    bool forwarded = false;
    uint32_t host_irq = 0;
    HostDeactivateCallback deactivate;  // forwarded
    ResampleCallback resample;          // !forwarded
  };

  // State of one SGI/PPI/SPI (§4.1.2 interrupt life cycle).
  struct Irq {
    bool enabled = false;
    bool pending_latch = false;  // edge latch / ISPENDR
    bool line = false;           // input level of a level-sensitive source
    bool active = false;
    bool group1 = true;
    bool edge = false;       // ICFGR: 1 = edge-triggered
    bool hw_active = false;  // forwarded: the physical interrupt is active
    uint8_t priority = 0;
    uint64_t irouter = 0;  // SPIs
    uint32_t target = 0;   // SPIs: resolved vCPU or kNoVcpu
    // SPIs: the vCPU whose spi_candidates counter includes this SPI.
    uint32_t counted = kNoVcpu;
    std::shared_ptr<const HostHook> hook;

    bool pending() const { return pending_latch || (!edge && line); }
    bool candidate() const { return enabled && group1 && pending() && !active; }
  };

  struct CpuInterface {
    uint8_t pmr = 0;
    uint8_t bpr1 = kMinBpr1;
    bool eoimode = false;
    bool igrpen1 = false;
    uint32_t ap = 0;  // ICC_AP1R0: bit n = preemption level n<<3 active
  };

  struct VcpuState {
    hv::SpinLock lock;
    Irq priv[kNumPrivate] ABSL_GUARDED_BY(lock);
    CpuInterface cpu ABSL_GUARDED_BY(lock);
    bool line ABSL_GUARDED_BY(lock) = false;
    std::atomic<bool> line_mirror{false};
    // Number of SPI candidates targeting this vCPU (changed under
    // dist_lock_ by SettleSpi). Lets FindBest skip the distributor lock when
    // no SPI is pending for this vCPU: a stale zero is harmless because the
    // injector re-evaluates the target's line after publishing the SPI.
    std::atomic<uint32_t> spi_candidates{0};

    // LPI registers (GICR_CTLR.EnableLPIs, PROPBASER, PENDBASER).
    hv::Mutex lpi_mu;
    uint64_t propbaser ABSL_GUARDED_BY(lpi_mu) = 0;
    uint64_t pendbaser ABSL_GUARDED_BY(lpi_mu) = 0;
    bool ptz ABSL_GUARDED_BY(lpi_mu) = false;  // last PTZ written
    uint32_t waker ABSL_GUARDED_BY(lpi_mu) =
        kGicrWakerProcessorSleep | kGicrWakerChildrenAsleep;
    // Mirrors for lock-free readers. lpis_enabled changes under `lock` too,
    // so evaluation under `lock` sees a stable value.
    std::atomic<bool> lpis_enabled{false};
    std::atomic<uint64_t> prop_mirror{0};
    std::atomic<uint32_t> lpi_limit{0};  // INTIDs < lpi_limit are in range

    std::atomic<uint64_t>* pending = nullptr;  // bitmap in shared memory
  };

  // Work that must run with no vGIC lock held.
  struct Deferred {
    absl::InlinedVector<uint32_t, 4> update_vcpus;
    absl::InlinedVector<std::pair<std::shared_ptr<const HostHook>, uint32_t>,
                        2>
        calls;  // (hook, intid)
    void Update(uint32_t v) {
      if (v == kNoVcpu) return;
      for (uint32_t u : update_vcpus)
        if (u == v) return;
      update_vcpus.push_back(v);
    }
  };

  // The best candidate for a vCPU.
  struct Best {
    uint32_t intid = kSpuriousIntid;
    uint8_t priority = kIdlePriority;
  };

  // An MMIO frame forwarding to the Vgic.
  class Frame : public hv::MmioDevice {
   public:
    enum class Kind { kDist, kRedist, kCpuIf };
    Frame(Vgic* vgic, Kind kind) : vgic_(vgic), kind_(kind) {}
    absl::Status Read(const hv::MmioContext& ctx, uint64_t offset, uint8_t size,
                      uint64_t* value) override;
    absl::Status Write(const hv::MmioContext& ctx, uint64_t offset,
                       uint8_t size, uint64_t value) override;

   private:
    Vgic* const vgic_;
    const Kind kind_;
  };

  explicit Vgic(const VgicConfig& config);
  absl::Status Init();

  // ---- vgic.cc: state, evaluation, injection.
  bool ValidSpi(uint32_t intid) const {
    return intid >= kFirstSpi && intid < kFirstSpi + num_spis_;
  }
  Irq& SpiRef(uint32_t intid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(dist_lock_) {
    return spis_[intid - kFirstSpi];
  }
  // Keeps the SPI candidate bitmap and hw_active invariant in step with
  // `intid`'s state; queues host callbacks / line updates in `d`.
  void SettleSpi(uint32_t intid, Deferred* d)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(dist_lock_);
  // Same for a private interrupt of vcpu `v` (v's lock held by caller).
  void SettlePrivate(Irq& irq, uint32_t intid, Deferred* d);
  void RunDeferred(Deferred* d);
  static void DeactivateIrq(Irq& irq, uint32_t intid, Deferred* d);
  // One-bit-per-INTID registers at 0x080..0x3ff (IGROUPR, IS/ICENABLER,
  // IS/ICPENDR, IS/ICACTIVER): `index` = offset >> 7 (1..7).
  static bool ReadIrqBit(const Irq& irq, uint32_t index);
  // Applies bit value `bit` of register `index` to `irq` (set/clear
  // registers act only on 1 bits).
  static void WriteIrqBit(Irq& irq, uint32_t index, bool bit, uint32_t intid,
                          Deferred* d);
  // Validates an access width for a register that allows `allowed` sizes
  // (bit mask of 1<<size) and natural alignment.
  static absl::Status CheckAccess(const char* frame, uint64_t offset,
                                  uint8_t size, uint32_t allowed);

  Best FindBest(VcpuState& vc, uint32_t v)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lock) ABSL_LOCKS_EXCLUDED(dist_lock_);
  static bool GroupEnabledFor(const CpuInterface& cpu, uint32_t gicd_ctlr);
  static uint32_t PreemptionLevel(const CpuInterface& cpu, uint8_t prio);
  static uint8_t RunningPriority(const CpuInterface& cpu);
  static bool Deliverable(const CpuInterface& cpu, const Best& best);
  // Recomputes vcpu v's line; invokes the callback on change.
  void UpdateLineLocked(VcpuState& vc, uint32_t v)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lock);
  void UpdateLine(uint32_t v);
  void UpdateAllLines();
  void SetLine(VcpuState& vc, uint32_t v, bool level)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lock);
  uint32_t ResolveRoute(uint64_t irouter) const;
  // Deactivation of a non-LPI INTID by vCPU v (EOIR1/DIR, §4.1.1).
  void Deactivate(VcpuState& vc, uint32_t v, uint32_t intid, Deferred* d)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lock);
  // Return whether the pending latch was newly set.
  absl::StatusOr<bool> InjectSpi(uint32_t intid, bool pulse, bool level);
  absl::StatusOr<bool> InjectPpi(uint32_t vcpu, uint32_t intid, bool pulse,
                                 bool level);

  // ---- lpi.cc: LPI bitmaps and tables.
  bool LpiBitSet(uint32_t v, uint32_t intid);    // returns newly set
  bool LpiBitClear(uint32_t v, uint32_t intid);  // returns was set
  Best FindBestLpi(VcpuState& vc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lock);
  absl::Status EnableLpis(VcpuState& vc, uint32_t v)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lpi_mu);
  absl::Status DisableLpis(VcpuState& vc, uint32_t v)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(vc.lpi_mu);
  absl::Status LoadConfigTable(uint64_t propbaser, uint32_t limit);
  uint32_t LpiLimitFor(uint64_t propbaser) const;
  uint32_t lpi_words() const { return (1u << lpi_id_bits_) / 64; }

  // ---- distributor.cc / redistributor.cc / cpu_interface.cc.
  absl::Status DistRead(uint64_t offset, uint8_t size, uint64_t* value);
  absl::Status DistWrite(uint64_t offset, uint8_t size, uint64_t value);
  absl::Status RedistRead(uint32_t v, uint64_t offset, uint8_t size,
                          uint64_t* value);
  absl::Status RedistWrite(uint32_t v, uint64_t offset, uint8_t size,
                           uint64_t value);
  absl::Status SgiRead(uint32_t v, uint64_t offset, uint8_t size,
                       uint64_t* value);
  absl::Status SgiWrite(uint32_t v, uint64_t offset, uint8_t size,
                        uint64_t value);
  absl::Status CpuIfRead(const hv::MmioContext& ctx, uint64_t offset,
                         uint8_t size, uint64_t* value);
  absl::Status CpuIfWrite(const hv::MmioContext& ctx, uint64_t offset,
                          uint8_t size, uint64_t value);
  uint32_t Acknowledge(uint32_t v);
  void WriteEoir1(uint32_t v, uint32_t intid);
  void WriteDir(uint32_t v, uint32_t intid);
  void WriteSgi1r(uint32_t v, uint64_t value);
  uint64_t ReadIccCtlr(uint32_t v);

  const uint32_t num_vcpus_;
  const uint32_t num_spis_;
  const uint32_t lpi_id_bits_;
  hv::GuestMemory* const memory_;
  IrqLineCallback irq_line_;

  Frame dist_frame_{this, Frame::Kind::kDist};
  Frame redist_frame_{this, Frame::Kind::kRedist};
  Frame cpuif_frame_{this, Frame::Kind::kCpuIf};

  std::vector<std::unique_ptr<VcpuState>> vcpus_;

  mutable hv::SpinLock dist_lock_;
  uint32_t gicd_ctlr_ ABSL_GUARDED_BY(dist_lock_) = kGicdCtlrAre | kGicdCtlrDs;
  std::atomic<uint32_t> gicd_ctlr_mirror_{kGicdCtlrAre | kGicdCtlrDs};
  std::vector<Irq> spis_ ABSL_GUARDED_BY(dist_lock_);
  // Bit i set ⇔ SPI 32+i is a candidate (enabled, group 1, pending, not
  // active) with a valid target.
  std::vector<uint64_t> spi_candidates_ ABSL_GUARDED_BY(dist_lock_);

  // LPI configuration cache, index intid - 8192; written only by
  // ApplyConfigByte / InvalidateAll / EnableLPIs (table load).
  std::unique_ptr<std::atomic<uint8_t>[]> lpi_config_;

  LpiPendingLayout lpi_layout_;
  void* lpi_map_ = nullptr;
  uint64_t lpi_map_size_ = 0;
};

}  // namespace vgic

#endif  // VGIC_VGIC_H_
