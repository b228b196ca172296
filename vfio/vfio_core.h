// vfio core (DESIGN §3, second layer): the host device registry, device
// ownership (host-owned, or assigned to exactly one VM) with external-user
// references, host IRQ numbering, and the per-IRQ bi-modal handler.
//
// Host IRQs: every line of every registered device gets a HostIrq at
// AddDevice (stable for the core's lifetime).
//
// Bi-modal handler: an IRQ is host-owned (the HostConsumer — the host driver
// — gets each interrupt; a level line is masked, consumed, its source acked,
// unmasked) or forwarded (an IrqHandler installed by the arch layer gets it;
// a level line stays masked until the owner calls Unmask, i.e. the guest
// deactivated the virtual interrupt). The handler pointer is published
// RCU-style: Dispatch handles each sequence number inside a read-side
// section (readers counter + atomic pointer load, seq_cst); SetForwarded /
// SetHostOwned swap the pointer and wait until no reader that could have
// seen the old one remains before destroying it. So every interrupt goes to
// exactly one side, and a replaced handler is never called after the swap
// returns (no use of a freed trigger).
//
// Modes reported by Status: kHostOwned, kForwardedMediated (the handler
// injects through the VM's vGIC/ITS), kForwardedPosted (the arch layer
// installed a posted remapping entry in the device, SetPosted: interrupts
// bypass Dispatch; messages queued before still drain to the handler).
//
// Locks (outermost first):
//   1. mu_ (hv::Mutex): device registry, ownership/refs, handler swaps
//      (writers are serialised by it; it is held while waiting for readers,
//      which never take it).
//   2. IrqSlot::dispatch_lock (hv::SpinLock, per IRQ): one consumer of a
//      line's message ring at a time. Handlers and the HostConsumer run
//      with it held: they must not call SetForwarded/SetHostOwned/Dispatch
//      of the same IRQ (Unmask is fine).
// Bus-device and hwsim vector locks are leaves below both.
#ifndef VFIO_VFIO_CORE_H_
#define VFIO_VFIO_CORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hv/base/locks.h"
#include "vfio/bus_driver.h"
#include "vfio/bypass.h"

namespace vfio {

using HostIrq = uint32_t;
using VmId = uint64_t;  // 0 = the host
inline constexpr VmId kHost = 0;
inline constexpr uint32_t kMaxHostIrqs = 4096;

enum class IrqMode { kHostOwned, kForwardedMediated, kForwardedPosted };
const char* IrqModeName(IrqMode m);

// One interrupt as a handler sees it.
struct IrqEvent {
  uint64_t seq = 0;    // hardware sequence number; 0: a level line still
                       // asserted after unmask (no new fire)
  bool level = false;  // level line (masked by the core before the call)
};

// Forwarded-mode handler (implemented by the arch layer). Returns true if the
// interrupt was delivered to the guest, false if it was dropped (e.g. the
// (DeviceID, EventID) does not translate) or coalesced with one pending.
class IrqHandler {
 public:
  virtual ~IrqHandler() = default;
  virtual bool Handle(HostIrq irq, const IrqEvent& ev) = 0;
};

// The host driver: gets host-owned interrupts.
using HostConsumer = std::function<void(HostIrq, const IrqEvent&)>;

struct IrqStatus {
  HostIrq irq = 0;
  std::string device;
  uint32_t line = 0;
  bool level = false;
  IrqMode mode = IrqMode::kHostOwned;
  VmId owner = kHost;
  uint64_t fired = 0;             // hardware: interrupts raised
  uint64_t host_handled = 0;      // consumed by the host driver
  uint64_t guest_delivered = 0;   // mediated: accepted by the guest side
  uint64_t guest_dropped = 0;     // mediated: handler returned false
  uint64_t posted_delivered = 0;  // posted: bit newly set by the device
  uint64_t coalesced = 0;  // posted bit already set + level re-fires while
                           // asserted + ring overflow + level dispatch merges
  uint64_t queued = 0;     // raised, not yet dispatched
};

struct DeviceInfo {
  std::string id;
  std::string bus;
  uint16_t requester_id = 0;
  VmId owner = kHost;
  uint32_t refs = 0;
  HostIrq first_irq = 0;
  uint32_t num_irqs = 0;
};

class VfioCore {
 public:
  // `bypass` (optional, outlives the core): forwarded edge IRQs register as
  // bypass producers with token BypassToken(irq) while forwarded.
  explicit VfioCore(HostConsumer host_consumer = nullptr,
                    BypassManager* bypass = nullptr);
  static uint64_t BypassToken(HostIrq irq) { return uint64_t{irq} + 1; }
  ~VfioCore();  // stops the dispatcher; forwarded handlers are destroyed
  VfioCore(const VfioCore&) = delete;
  VfioCore& operator=(const VfioCore&) = delete;

  // ---- registry
  // AlreadyExists for a duplicate id, ResourceExhausted beyond kMaxHostIrqs.
  [[nodiscard]] absl::Status AddDevice(std::unique_ptr<BusDevice> dev);
  std::vector<DeviceInfo> ListDevices() const;
  [[nodiscard]] absl::StatusOr<DeviceInfo> GetDevice(
      absl::string_view id) const;
  // NotFound (device), InvalidArgument (index/subindex, from the bus driver).
  [[nodiscard]] absl::StatusOr<HostIrq> HostIrqFor(absl::string_view device,
                                                   uint32_t index,
                                                   uint32_t subindex) const;
  // The bus device and line behind `irq` (nullptr if none).
  BusDevice* bus_device(HostIrq irq, uint32_t* line = nullptr) const;

  // ---- ownership and external-user references
  // Takes a reference for `vm` (> 0); the first makes `vm` the owner.
  // NotFound, InvalidArgument (vm 0), FailedPrecondition if another VM owns
  // the device.
  [[nodiscard]] absl::Status AcquireRef(absl::string_view device, VmId vm);
  // Drops one of `vm`'s references; the last returns the device to the host
  // (BusDevice::HostReset: lines enabled and unmasked).
  // Ignores a device `vm` holds no reference to.
  void ReleaseRef(absl::string_view device, VmId vm);

  // ---- bi-modal handler
  // Installs `handler` (forwarded) or the host driver. Returns after every
  // dispatch that could see the previous handler has finished.
  void SetForwarded(HostIrq irq, std::unique_ptr<IrqHandler> handler);
  void SetHostOwned(HostIrq irq);
  // Posted entry of a forwarded edge IRQ: installs it in the device (mode
  // kForwardedPosted) or removes it (back to kForwardedMediated).
  [[nodiscard]] absl::Status SetPosted(HostIrq irq, hwsim::PostedEntry entry);
  void ClearPosted(HostIrq irq);
  // Level lines: the owner is done with the interrupt (guest deactivation /
  // resample); a source still asserting re-triggers.
  void Unmask(HostIrq irq);

  // ---- delivery
  // Consumes the IRQ's trigger and messages and hands each interrupt to the
  // current handler. Thread-safe; the dispatcher thread calls it.
  void Dispatch(HostIrq irq);
  // Dispatcher thread: epoll over every trigger eventfd (devices added later
  // are picked up). Idempotent.
  [[nodiscard]] absl::Status Start();
  void Stop();

  [[nodiscard]] absl::StatusOr<IrqStatus> Status(HostIrq irq) const;
  std::vector<IrqStatus> DeviceStatus(absl::string_view device) const;

 private:
  struct Device;
  class Producer : public BypassProducer {
   public:
    Producer(VfioCore* core, HostIrq irq) : core_(core), irq_(irq) {}
    absl::Status Post(hwsim::PostedEntry entry) override {
      return core_->SetPosted(irq_, std::move(entry));
    }
    void Unpost() override { core_->ClearPosted(irq_); }

   private:
    VfioCore* core_;
    HostIrq irq_;
  };
  struct IrqSlot {
    Device* device = nullptr;
    BusDevice* bus = nullptr;
    uint32_t line = 0;
    bool level = false;
    std::atomic<IrqHandler*> handler{nullptr};  // nullptr: host-owned
    std::unique_ptr<IrqHandler> owned;   // what `handler` points at (mu_)
    std::unique_ptr<Producer> producer;  // edge lines
    bool producer_registered = false;    // (mu_)
    std::atomic<uint32_t> readers{0};
    std::atomic<IrqMode> mode{IrqMode::kHostOwned};
    hv::SpinLock dispatch_lock;
    std::vector<uint64_t> scratch ABSL_GUARDED_BY(dispatch_lock);
    std::atomic<uint64_t> host_handled{0};
    std::atomic<uint64_t> guest_delivered{0};
    std::atomic<uint64_t> guest_dropped{0};
    std::atomic<uint64_t> merged{0};  // level seqs merged in one dispatch
  };
  struct Device {
    std::unique_ptr<BusDevice> bus;
    VmId owner = kHost;
    uint32_t refs = 0;
    HostIrq first_irq = 0;
  };

  Device* FindLocked(absl::string_view id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  IrqSlot* Slot(HostIrq irq) const {
    return irq < kMaxHostIrqs ? slots_[irq].load(std::memory_order_acquire)
                              : nullptr;
  }
  void Swap(IrqSlot* s, std::unique_ptr<IrqHandler> h)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(HostIrq irq, IrqSlot* s, const IrqEvent& ev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->dispatch_lock);
  void Watch(HostIrq irq);  // adds the trigger to epoll (if running)
  void Loop();

  const HostConsumer host_consumer_;
  BypassManager* const bypass_;
  mutable hv::Mutex mu_;
  std::vector<std::unique_ptr<Device>> devices_ ABSL_GUARDED_BY(mu_);
  HostIrq next_irq_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<std::array<std::atomic<IrqSlot*>, kMaxHostIrqs>> slots_ptr_ =
      std::make_unique<std::array<std::atomic<IrqSlot*>, kMaxHostIrqs>>();
  std::array<std::atomic<IrqSlot*>, kMaxHostIrqs>& slots_ = *slots_ptr_;
  std::vector<std::unique_ptr<IrqSlot>> slot_storage_ ABSL_GUARDED_BY(mu_);

  // Dispatcher.
  int epfd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vfio

#endif  // VFIO_VFIO_CORE_H_
