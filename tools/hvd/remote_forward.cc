#include "tools/hvd/remote_forward.h"

#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace hv::hvd {
namespace {

// Mediated delivery to the VMM: one eventfd increment per interrupt. A full
// counter (the VMM stopped reading) drops it — counted as guest_dropped.
class EventfdHandler : public vfio::IrqHandler {
 public:
  explicit EventfdHandler(int fd) : fd_(fd) {}
  bool Handle(vfio::HostIrq, const vfio::IrqEvent&) override {
    const uint64_t one = 1;
    return write(fd_, &one, sizeof(one)) == sizeof(one);
  }

 private:
  const int fd_;
};

}  // namespace

absl::Status RemoteMsiForward::SetForward(vfio::HostIrq host_irq,
                                          const vfio::GuestIrq& guest_irq,
                                          bool on) {
  if (!on) {
    core_->SetHostOwned(host_irq);
    return absl::OkStatus();
  }
  if (guest_irq.kind != vfio::GuestIrq::Kind::kMsi ||
      guest_irq.device_id != device_id_ || guest_irq.event_id >= efds_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest_irq: ", guest_irq.ToString(),
                     " is not an MSI of device ", device_id_));
  }
  core_->SetForwarded(
      host_irq, std::make_unique<EventfdHandler>(efds_[guest_irq.event_id]));
  return absl::OkStatus();
}

}  // namespace hv::hvd
