// The hv-virt hot-plug controller (issue 8; guest ABI in hv_hotplug.h).
// Host API: Attach fills a slot; RequestEject starts the two-phase detach
// and calls `done(forced)` exactly once: forced = false when the guest acks
// (CMD EJECT_ACK after quiescing), true when the timeout expires first
// (ExpireEjects, driven by the owner's clock or the built-in timer thread).
// Either way the slot is empty when `done` runs, so the host can drop its
// forwards and references (kvm-vfio) and return the device to the host.
//
// Lock: mu_ (hv::Mutex, leaf) guards the slots; the SPI setter and `done`
// callbacks run with it released (they may call into the vGIC / kvm-vfio).
#ifndef HV_PLATFORM_HOTPLUG_CONTROLLER_H_
#define HV_PLATFORM_HOTPLUG_CONTROLLER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "hv/arch/cond_var.h"
#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"
#include "hv/platform/hv_hotplug.h"

namespace hv {

struct HotplugDevice {
  std::string name;   // up to 31 bytes shown to the guest
  uint32_t kind = 1;  // 1 PCI, 2 platform
  uint16_t requester_id = 0;
  uint32_t num_vectors = 0;
  uint32_t spi = 0;
  uint64_t window_gpa = 0;
  uint64_t window_size = 0;
};

enum class SlotState { kEmpty, kPresent, kEjectPending };

class HotplugController : public MmioDevice {
 public:
  using Clock = std::chrono::steady_clock;
  using EjectDone = std::function<void(bool forced)>;

  // `set_irq(level)` drives the controller's SPI. num_slots 1..32. With a
  // non-zero `eject_timeout`, a timer thread forces expired ejects.
  HotplugController(
      uint32_t num_slots, std::function<void(bool)> set_irq,
      std::chrono::milliseconds eject_timeout = std::chrono::milliseconds(0));
  ~HotplugController() override;

  // InvalidArgument (slot, name too long), FailedPrecondition (occupied).
  [[nodiscard]] absl::Status Attach(uint32_t slot, const HotplugDevice& dev);
  // InvalidArgument (slot), FailedPrecondition (empty or already ejecting).
  [[nodiscard]] absl::Status RequestEject(uint32_t slot, EjectDone done);
  // Forces every eject requested at or before now - timeout.
  void ExpireEjects(Clock::time_point now, std::chrono::milliseconds timeout);
  SlotState state(uint32_t slot) const;

  [[nodiscard]] absl::Status Read(const MmioContext& ctx, uint64_t offset,
                                  uint8_t size, uint64_t* value) override;
  [[nodiscard]] absl::Status Write(const MmioContext& ctx, uint64_t offset,
                                   uint8_t size, uint64_t value) override;

 private:
  struct Slot {
    SlotState state = SlotState::kEmpty;
    HotplugDevice dev;
    EjectDone done;
    Clock::time_point requested;
  };
  // Completes slot `s` (lock held); returns the callback to run unlocked.
  EjectDone CompleteLocked(uint32_t s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes the SPI level; returns it (to apply unlocked).
  bool LevelLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return events_ != 0;
  }
  void ApplyIrq();  // re-reads the level under mu_, applies it in order
  void TimerLoop();

  const uint32_t num_slots_;
  const std::function<void(bool)> set_irq_;
  const std::chrono::milliseconds timeout_;
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  uint32_t sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t events_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Mutex irq_mu_;  // orders SPI level updates (leaf, taken without mu_)
  std::thread timer_;
};

}  // namespace hv

#endif  // HV_PLATFORM_HOTPLUG_CONTROLLER_H_
