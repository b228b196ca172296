// The gicv3 arch implementation of set_forward (DESIGN §3):
//   - guest SPI n: the vGIC core's forwarded (HW) semantics. Each host
//     interrupt pulses (edge) or raises (level) SPI n; the vGIC marks the
//     physical interrupt active and, when the guest deactivates the virtual
//     one (EOIR1/DIR, IHI 0069 §4.1.1), calls back: the host side unmasks the
//     line (a level source still asserting re-triggers).
//   - guest MSI (DeviceID, EventID): mediated delivery injects through the
//     VM's ITS (Its::InjectMsi, the GITS_TRANSLATER path). With posted mode
//     enabled, the forward also registers as an irqbypass consumer (token
//     VfioCore::BypassToken(host_irq)); once paired, the ITS translation is
//     done ahead of time and the producer's posted entry names the target
//     vCPU's LPI pending bitmap, the LPI and that vCPU's doorbell eventfd
//     (bound with KVM_IRQFD to the vCPU's GIC-line route by the arch
//     backend). The ITS observer hook rewrites (MOVI/MOVALL/MAPC move) or
//     revokes (DISCARD, MAPD V=0, MAPC V=0, ITS disable) the entry before the
//     ITS change takes effect; a revoked vector falls back to mediated.
//
// Locks: mu_ (hv::Mutex) guards the forward table. Order:
//   [ITS cmd_mu_ (observer callbacks)] → BypassManager::mu_ → mu_ →
//   VfioCore::mu_ → ITS lock_ (Translate) / vGIC locks.
// Its::Watch/Unwatch (which take cmd_mu_) are called with no lock held.
#ifndef VFIO_GICV3_FORWARD_H_
#define VFIO_GICV3_FORWARD_H_

#include <functional>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "hv/base/locks.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/arch_forward.h"
#include "vfio/bypass.h"
#include "vfio/vfio_core.h"
#include "vgic/its.h"
#include "vgic/vgic.h"

namespace vfio {

struct Gicv3PostedConfig {
  BypassManager* bypass = nullptr;  // pairing with the vfio core's producers
  // The VM's LPI pending bitmaps (a mapping of Vgic::lpi_pending_layout()).
  std::shared_ptr<hwsim::PostedRegion> pending;
  // vCPU v's doorbell eventfd (not owned), or -1 when v has none.
  std::function<int(uint32_t vcpu)> doorbell;
};

class Gicv3Forward : public ArchForward, private vgic::ItsObserver {
 public:
  // `core` outlives this object; `gic` / `its` may be null (no SPI / MSI
  // forwarding then). With `posted`, MSIs are posted when paired; the ITS
  // observer is installed on `its`.
  Gicv3Forward(VfioCore* core, vgic::Vgic* gic, vgic::Its* its,
               std::optional<Gicv3PostedConfig> posted = std::nullopt);
  ~Gicv3Forward() override;

  [[nodiscard]] absl::Status SetForward(HostIrq host_irq,
                                        const GuestIrq& guest_irq,
                                        bool on) override;

  // Maps a Vgic's pending-bitmap memfd for Gicv3PostedConfig::pending.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<hwsim::PostedRegion>>
  MapPending(const vgic::Vgic& gic);

  // Counters for tests: posted entry installs/rewrites and revocations.
  uint64_t posts() const;
  uint64_t revokes() const;

 private:
  struct Fwd;
  class Consumer : public BypassConsumer {
   public:
    Consumer(Gicv3Forward* owner, HostIrq irq) : owner_(owner), irq_(irq) {}
    absl::Status AddProducer(BypassProducer* p) override;
    void DelProducer(BypassProducer* p) override;

   private:
    Gicv3Forward* owner_;
    HostIrq irq_;
  };
  struct Fwd {
    GuestIrq guest;
    std::unique_ptr<Consumer> consumer;
    BypassProducer* producer = nullptr;  // while paired
    bool posted = false;
  };

  void OnTranslationChange(const vgic::TranslationChange& change) override;
  // Installs/rewrites or revokes `f`'s posted entry for translation `t`.
  void RepostLocked(Fwd& f, const std::optional<vgic::Translation>& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  VfioCore* const core_;
  vgic::Vgic* const gic_;
  vgic::Its* const its_;
  const std::optional<Gicv3PostedConfig> posted_cfg_;
  mutable hv::Mutex mu_;
  std::map<HostIrq, Fwd> fwds_ ABSL_GUARDED_BY(mu_);
  uint64_t posts_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t revokes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vfio

#endif  // VFIO_GICV3_FORWARD_H_
