// hv-vmm's side of hot-attach (DESIGN §2, §3; docs/management.md): the
// hv-virt hot-plug controller on the VM's MMIO bus, and per attached device
// the register window and the mediated MSI path.
//
//   Attach(cmd, fds): fds = [window memfd, one eventfd per MSI-X vector].
//     Maps page 0 of the window (MAP_SHARED with hvd's hwsim), registers it
//     at cmd.window_gpa (RemoteWindow: reads come from the shared page, the
//     plain registers msg_addr/msg_data/gen_* are stored there, side-effect
//     registers — status W1C, fire, gen_count, vector ctrl — are sent to hvd
//     as WindowWrite events, i.e. posted writes), watches the eventfds (an
//     epoll thread: each count read is injected as MSI (requester_id, v)
//     into the ITS, IHI 0069 §5.1 GITS_TRANSLATER path) and only then
//     raises the controller's attach event. Any failure undoes the steps.
//   Detach(slot, force): RequestEject (two-phase; the guest quiesces and
//     acks) or, with force, completes every pending eject now. When the slot
//     is empty: stop watching the eventfds, close them, unregister the
//     window, send Detached{slot, forced}.
//
// Lifetime: MmioBus::Unregister does not wait for in-flight accesses, so the
// RemoteWindow objects and their mappings of detached devices are kept until
// this object is destroyed (one page each).
//
// Locks: mu_ (hv::Mutex) guards the slot table; it is a leaf below the
// hot-plug controller's callbacks (which run with the controller's lock
// released) and is never held while injecting or sending.
#ifndef HV_CONTROL_VMM_DEVICES_H_
#define HV_CONTROL_VMM_DEVICES_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "hv/base/locks.h"
#include "hv/platform/hotplug_controller.h"
#include "hv/vmm/vmm.h"
#include "proto/vmm_control.pb.h"

namespace hv::control {

inline constexpr uint32_t kHotplugSlots = 4;
// Windows of attached devices: one page per slot from here.
inline constexpr uint64_t kDeviceWindowBase = 0xD1000000ull;
inline constexpr uint64_t kDeviceWindowStride = 0x1000ull;

class VmmDevices {
 public:
  using Send = std::function<void(vmm::v1::VmmEvent&)>;
  // Registers the hot-plug controller on `vmm`'s MMIO bus (before Start).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<VmmDevices>> Create(
      Vmm* vmm, Send send);
  ~VmmDevices();

  // Consumes `fds` (closed on error too). InvalidArgument naming the bad
  // field, FailedPrecondition for an occupied slot.
  [[nodiscard]] absl::Status Attach(const vmm::v1::AttachDevice& cmd,
                                    std::vector<int> fds);
  [[nodiscard]] absl::Status Detach(const vmm::v1::DetachDevice& cmd);

 private:
  class RemoteWindow;
  struct Slot {
    bool used = false;
    uint32_t requester_id = 0;
    uint64_t window_gpa = 0;
    std::vector<int> efds;  // per vector
    RemoteWindow* window = nullptr;
  };
  VmmDevices(Vmm* vmm, Send send);
  void Loop();
  void Complete(uint32_t slot, bool forced);  // eject done callback

  Vmm* const vmm_;
  const Send send_;
  std::unique_ptr<HotplugController> hp_;
  int epfd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
  Mutex mu_;
  std::array<Slot, kHotplugSlots> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<RemoteWindow>> windows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hv::control

#endif  // HV_CONTROL_VMM_DEVICES_H_
