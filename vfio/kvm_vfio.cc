#include "vfio/kvm_vfio.h"

#include "absl/strings/str_cat.h"

namespace vfio {

std::string GuestIrq::ToString() const {
  if (kind == Kind::kSpi) return absl::StrCat("SPI ", spi);
  return absl::StrCat("MSI (DeviceID 0x", absl::Hex(device_id), ", EventID ",
                      event_id, ")");
}

absl::Status KvmVfio::Forward(absl::string_view device, uint32_t index,
                              uint32_t subindex, const GuestIrq& guest_irq) {
  auto irq = core_->HostIrqFor(device, index, subindex);
  if (!irq.ok()) return irq.status();
  hv::MutexLock l(&mu_);
  for (const auto& f : fwds_) {
    if (f.host_irq == *irq) {
      return absl::InvalidArgumentError(
          absl::StrCat(device, " index ", index, " subindex ", subindex,
                       " is already forwarded to ", f.guest_irq.ToString()));
    }
    if (f.guest_irq == guest_irq) {
      return absl::InvalidArgumentError(absl::StrCat(
          "guest_irq: ", guest_irq.ToString(), " is already used by ", f.device,
          " index ", f.index, " subindex ", f.subindex));
    }
  }
  // Registration takes the reference (fails if another VM owns the device).
  if (absl::Status s = core_->AcquireRef(device, vm_); !s.ok()) return s;
  if (absl::Status s = arch_->SetForward(*irq, guest_irq, true); !s.ok()) {
    core_->ReleaseRef(device, vm_);
    return s;
  }
  fwds_.push_back({std::string(device), index, subindex, *irq, guest_irq});
  return absl::OkStatus();
}

void KvmVfio::UnforwardLocked(const ForwardInfo& f) {
  arch_->SetForward(f.host_irq, f.guest_irq, false).IgnoreError();  // void
  core_->ReleaseRef(f.device, vm_);
}

void KvmVfio::Unforward(absl::string_view device, uint32_t index,
                        uint32_t subindex) {
  hv::MutexLock l(&mu_);
  for (auto it = fwds_.begin(); it != fwds_.end(); ++it) {
    if (it->device == device && it->index == index &&
        it->subindex == subindex) {
      UnforwardLocked(*it);
      fwds_.erase(it);
      return;
    }
  }
  ++unknown_unforwards_;
}

void KvmVfio::Destroy() {
  hv::MutexLock l(&mu_);
  // Newest first, like a stack of registrations.
  while (!fwds_.empty()) {
    UnforwardLocked(fwds_.back());
    fwds_.pop_back();
  }
}

std::vector<ForwardInfo> KvmVfio::List() const {
  hv::MutexLock l(&mu_);
  return fwds_;
}

uint64_t KvmVfio::unknown_unforwards() const {
  hv::MutexLock l(&mu_);
  return unknown_unforwards_;
}

}  // namespace vfio
