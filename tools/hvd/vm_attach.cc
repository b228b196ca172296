// VmManager: passthrough attachments (AttachDevice, DetachDevice,
// ListAttachments and the VMM events behind them). See vm_manager.h.
#include <sys/eventfd.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "hv/control/failpoint.h"
#include "hv/control/vmm_devices.h"
#include "hv/control/wire.h"
#include "tools/hvd/vm_manager.h"

namespace hv::hvd {
namespace {

using control::Failpoint;

constexpr auto kForceGrace = std::chrono::milliseconds(3000);

}  // namespace

VmManager::AttachEntry::~AttachEntry() {
  kv.reset();  // unforward everything: host-owned, references dropped
  arch.reset();
  for (int fd : efds) close(fd);
}

std::string VmManager::OwnerName(uint64_t id) {
  MutexLock l(&mu_);
  for (const auto& [name, e] : vms_) {
    if (e.vfio_id == id) return name;
  }
  return absl::StrCat("vm#", id);  // a VM deleted meanwhile
}

v1::Attachment VmManager::Describe(const VmEntry& e, const AttachEntry& a) {
  v1::Attachment out;
  out.set_vm(e.vm.name());
  out.set_device(a.device);
  out.set_state(a.state);
  out.set_op_id(a.op_id);
  out.set_slot(a.slot);
  if (options_.devices != nullptr) {
    vfio::VfioCore* core = options_.devices->core();
    for (const vfio::IrqStatus& st : core->DeviceStatus(a.device)) {
      vfio::BusDevice* bus = core->bus_device(st.irq);
      FillIrqState(st, bus != nullptr && bus->Masked(st.line),
                   out.add_vectors());
    }
  }
  return out;
}

v1::Vm VmManager::WithAttachments(const VmEntry& e) {
  v1::Vm vm = e.vm;
  for (const auto& [dev, a] : e.attachments) {
    if (a->ready) *vm.add_attachments() = Describe(e, *a);
  }
  return vm;
}

absl::Status VmManager::SendCommand(VmEntry& e, vmm::v1::VmmCommand& cmd,
                                    absl::Span<const int> fds) {
  if (e.ctl < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("vm: '", e.vm.name(), "' has no running vmm"));
  }
  cmd.set_seq(++e.cmd_seq);
  return control::SendRecord(e.ctl, cmd, fds);
}

void VmManager::SendForceDetach(VmEntry& e, uint32_t slot) {
  vmm::v1::VmmCommand cmd;
  cmd.mutable_detach()->set_slot(slot);
  cmd.mutable_detach()->set_force(true);
  if (SendCommand(e, cmd).ok() && slot < e.slot_draining.size()) {
    e.slot_draining[slot] = true;  // its Detached must not hit a new attach
  }
}

absl::StatusOr<v1::Attachment> VmManager::AttachDevice(
    const v1::AttachDeviceRequest& req) {
  MutexLock l(&mu_);
  // ---- validate everything first
  auto it = vms_.find(req.vm());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("vm: no vm '", req.vm(), "'"));
  }
  VmEntry* e = &it->second;
  HostDevices* devices = options_.devices;
  if (devices == nullptr) {
    return absl::FailedPreconditionError("device: hvd has no host devices");
  }
  absl::StatusOr<vfio::DeviceInfo> info =
      devices->core()->GetDevice(req.device());
  if (!info.ok()) {
    return absl::NotFoundError(
        absl::StrCat("device: no host device '", req.device(), "'"));
  }
  if (e->attachments.count(req.device()) != 0 ||
      (info->owner != vfio::kHost && info->owner == e->vfio_id)) {
    return absl::AlreadyExistsError(absl::StrCat("device: '", req.device(),
                                                 "' is already attached to '",
                                                 req.vm(), "'"));
  }
  if (info->owner != vfio::kHost) {
    std::string owner = absl::StrCat("#", info->owner);
    for (const auto& [n, o] : vms_) {
      if (o.vfio_id == info->owner) owner = n;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "device: '", req.device(), "' is owned by vm '", owner, "'"));
  }
  if (e->vm.state() != v1::VM_STATE_RUNNING || e->ctl < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "vm: '", req.vm(), "' is not running (hot-attach needs a running vm)"));
  }
  if (info->bus != "pci") {
    return absl::FailedPreconditionError(
        absl::StrCat("device: '", req.device(),
                     "' is a platform device; only PCI functions can be "
                     "hot-attached"));
  }
  hwsim::Device* hw = devices->machine()->Find(req.device());
  if (hw == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("device: no host device '", req.device(), "'"));
  }
  e->slot_draining.resize(control::kHotplugSlots, false);
  uint32_t slot = control::kHotplugSlots;
  for (uint32_t s = 0; s < control::kHotplugSlots; ++s) {
    bool used = e->slot_draining[s];
    for (const auto& [d, a] : e->attachments) used |= a->slot == s;
    if (!used) {
      slot = s;
      break;
    }
  }
  if (slot == control::kHotplugSlots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("device: vm '", req.vm(), "' has no free hot-plug slot (",
                     control::kHotplugSlots, ")"));
  }
  if (e->vfio_id == 0) e->vfio_id = next_vfio_id_++;

  // ---- apply, each step with its rollback. The entry is reserved first so
  // a concurrent attach of the same device to this VM sees ALREADY_EXISTS;
  // DeleteVm refuses while it exists.
  const std::string name = req.vm();
  const std::string device = req.device();
  auto owned = std::make_unique<AttachEntry>();
  AttachEntry* a = owned.get();
  a->device = device;
  a->slot = slot;
  a->num_vectors = hw->num_vectors();
  a->requester_id = hw->requester_id();
  e->attachments[device] = std::move(owned);
  auto rollback = [&](absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Re-find: the map may have changed while mu_ was released.
    auto vit = vms_.find(name);
    if (vit != vms_.end()) vit->second.attachments.erase(device);
    cv_.NotifyAll();
    return s;
  };
  // 1. One eventfd per vector (the MSI path to the VMM).
  for (uint32_t v = 0; v < a->num_vectors; ++v) {
    const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      return rollback(absl::ResourceExhaustedError("device: out of eventfds"));
    }
    a->efds.push_back(fd);
  }
  // 2. kvm-vfio: forward every vector (takes the device references → the
  // device is owned by this VM; another VM racing us gets
  // FAILED_PRECONDITION here).
  a->arch = std::make_unique<RemoteMsiForward>(devices->core(), a->requester_id,
                                               a->efds);
  a->kv = std::make_unique<vfio::KvmVfio>(e->vfio_id, devices->core(),
                                          a->arch.get());
  for (uint32_t v = 0; v < a->num_vectors; ++v) {
    if (absl::Status s =
            a->kv->Forward(device, vfio::kVfioPciMsixIrqIndex, v,
                           vfio::GuestIrq::Msi(a->requester_id, v));
        !s.ok()) {
      return rollback(s);  // ~AttachEntry unforwards what was forwarded
    }
  }
  if (absl::Status s = Failpoint("attach.after_forward"); !s.ok()) {
    return rollback(s);
  }
  // 3. The VMM: window + eventfds over SCM_RIGHTS, hot-plug event.
  vmm::v1::VmmCommand cmd;
  vmm::v1::AttachDevice* ad = cmd.mutable_attach();
  ad->set_slot(slot);
  ad->set_device(device);
  ad->set_requester_id(a->requester_id);
  ad->set_num_vectors(a->num_vectors);
  ad->set_window_gpa(control::kDeviceWindowBase +
                     slot * control::kDeviceWindowStride);
  std::vector<int> fds = {hw->window_fd()};
  fds.insert(fds.end(), a->efds.begin(), a->efds.end());
  if (absl::Status s = SendCommand(*e, cmd, fds); !s.ok()) {
    return rollback(s);
  }
  const uint64_t seq = cmd.seq();
  const uint64_t starts = e->vm.start_count();
  const auto deadline =
      std::chrono::steady_clock::now() + options_.attach_timeout;
  for (;;) {
    it = vms_.find(name);
    e = &it->second;  // DeleteVm refuses while the entry exists
    if (e->attach_results.count(seq) != 0 || e->ctl < 0 ||
        e->vm.start_count() != starts ||
        std::chrono::steady_clock::now() > deadline) {
      break;
    }
    cv_.WaitFor(&mu_, std::chrono::milliseconds(50));
  }
  auto res = e->attach_results.find(seq);
  if (e->ctl < 0 || e->vm.start_count() != starts) {
    return rollback(absl::AbortedError(
        absl::StrCat("vm: the vmm of '", name, "' exited during the attach")));
  }
  if (res == e->attach_results.end()) {
    SendForceDetach(*e, slot);  // in case it applies it late
    return rollback(absl::UnavailableError(
        absl::StrCat("vm: the vmm of '", name, "' did not answer the attach")));
  }
  const vmm::v1::AttachResult result = res->second;
  e->attach_results.erase(res);
  if (!result.ok()) {
    return rollback(absl::FailedPreconditionError(
        absl::StrCat("vm: the vmm refused the attach: ", result.message())));
  }
  if (absl::Status s = Failpoint("attach.after_vmm"); !s.ok()) {
    SendForceDetach(*e, slot);
    return rollback(s);
  }
  // 4. SQLite: the attachment row, in this operation's id.
  absl::StatusOr<uint64_t> op = store_->PutAttachment(
      "attach", name, device, v1::ATTACHMENT_STATE_ATTACHED);
  if (!op.ok()) {
    SendForceDetach(*e, slot);
    return rollback(op.status());
  }
  a->op_id = *op;
  a->ready = true;
  v1::VmEvent ev;
  ev.mutable_device()->set_device(device);
  ev.mutable_device()->set_event("attached");
  Broadcast(*e, std::move(ev));
  cv_.NotifyAll();
  return Describe(*e, *a);
}

absl::StatusOr<v1::Attachment> VmManager::DetachDevice(
    const v1::DetachDeviceRequest& req) {
  MutexLock l(&mu_);
  auto it = vms_.find(req.vm());
  if (it == vms_.end()) {
    return absl::NotFoundError(absl::StrCat("vm: no vm '", req.vm(), "'"));
  }
  VmEntry* e = &it->second;
  if (options_.devices == nullptr ||
      !options_.devices->core()->GetDevice(req.device()).ok()) {
    return absl::NotFoundError(
        absl::StrCat("device: no host device '", req.device(), "'"));
  }
  auto at = e->attachments.find(req.device());
  if (at == e->attachments.end() || !at->second->ready) {
    return absl::NotFoundError(absl::StrCat(
        "device: '", req.device(), "' is not attached to '", req.vm(), "'"));
  }
  AttachEntry* a = at->second.get();
  if (absl::Status s = Failpoint("detach.before_send"); !s.ok()) return s;
  const std::string name = req.vm();
  const std::string device = req.device();
  e->detached.erase(device);
  if (a->state == v1::ATTACHMENT_STATE_ATTACHED) {
    // Phase 1: eject request to the guest (or forced at once).
    vmm::v1::VmmCommand cmd;
    cmd.mutable_detach()->set_slot(a->slot);
    cmd.mutable_detach()->set_force(req.force());
    if (absl::Status s = SendCommand(*e, cmd); !s.ok()) return s;
    a->force_sent = req.force();
    const std::chrono::milliseconds timeout =
        req.timeout_ms() != 0 ? std::chrono::milliseconds(req.timeout_ms())
                              : options_.detach_default_timeout;
    a->deadline = std::chrono::steady_clock::now() + timeout;
    a->state = v1::ATTACHMENT_STATE_DETACH_PENDING;
    absl::StatusOr<uint64_t> op = store_->PutAttachment(
        "detach-request", name, device, v1::ATTACHMENT_STATE_DETACH_PENDING);
    if (op.ok()) a->op_id = *op;
    v1::VmEvent ev;
    ev.mutable_device()->set_device(device);
    ev.mutable_device()->set_event("detach-pending");
    Broadcast(*e, std::move(ev));
  } else if (req.force() && !a->force_sent) {
    vmm::v1::VmmCommand cmd;
    cmd.mutable_detach()->set_slot(a->slot);
    cmd.mutable_detach()->set_force(true);
    if (absl::Status s = SendCommand(*e, cmd); !s.ok()) return s;
    a->force_sent = true;
    a->deadline = std::chrono::steady_clock::now();
  }
  if (!req.force()) return Describe(*e, *a);
  // Forced: wait for the VMM's Detached (or complete it ourselves).
  const auto deadline = std::chrono::steady_clock::now() + kForceGrace;
  for (;;) {
    e = &vms_.find(name)->second;  // has an attachment: not deletable
    auto done = e->detached.find(device);
    if (done != e->detached.end()) return done->second;
    if (std::chrono::steady_clock::now() > deadline) break;
    cv_.WaitFor(&mu_, std::chrono::milliseconds(20));
  }
  at = e->attachments.find(device);
  if (at != e->attachments.end() && at->second->ready) {
    const uint32_t slot = at->second->slot;
    FinishDetach(*e, device, /*forced=*/true, "detach-force");
    if (slot < e->slot_draining.size()) e->slot_draining[slot] = true;
  }
  auto done = e->detached.find(device);
  if (done != e->detached.end()) return done->second;
  return absl::InternalError("device: detach did not complete");
}

void VmManager::FinishDetach(VmEntry& e, const std::string& device, bool forced,
                             absl::string_view op_kind) {
  auto at = e.attachments.find(device);
  if (at == e.attachments.end()) return;
  // kvm-vfio destroy (unforward all → host-owned), fds closed.
  std::unique_ptr<AttachEntry> a = std::move(at->second);
  e.attachments.erase(at);
  a.reset();
  // Returning to the host resets the device's activity: a generator the
  // guest started stops (what a function-level reset would do).
  if (options_.devices != nullptr) {
    options_.devices->machine()->StopGenerator(device);
  }
  v1::Attachment out;
  out.set_vm(e.vm.name());
  out.set_device(device);
  out.set_state(v1::ATTACHMENT_STATE_DETACHED);
  out.set_forced(forced);
  absl::StatusOr<uint64_t> op = store_->DeleteAttachment(
      std::string_view(op_kind.data(), op_kind.size()), e.vm.name(), device);
  if (op.ok()) {
    out.set_op_id(*op);
  } else {
    std::fprintf(stderr, "hvd: deleting attachment %s/%s: %s\n",
                 e.vm.name().c_str(), device.c_str(),
                 op.status().ToString().c_str());
  }
  e.detached[device] = out;
  v1::VmEvent ev;
  ev.mutable_device()->set_device(device);
  ev.mutable_device()->set_event(forced ? "detached (forced)" : "detached");
  Broadcast(e, std::move(ev));
  cv_.NotifyAll();
}

void VmManager::HandleDeviceEvent(VmEntry& e, const vmm::v1::VmmEvent& ev) {
  if (ev.has_attach_result()) {
    e.attach_results[ev.attach_result().command_seq()] = ev.attach_result();
    cv_.NotifyAll();
    return;
  }
  if (ev.has_window_write()) {
    const vmm::v1::WindowWrite& w = ev.window_write();
    for (const auto& [dev, a] : e.attachments) {
      if (a->slot != w.slot() || a->kv == nullptr) continue;
      hwsim::Machine* m = options_.devices->machine();
      hwsim::Device* hw = m->Find(dev);
      if (hw == nullptr) return;
      hwsim::WindowMmio window(m, hw);
      // A bad access from the guest is dropped (the VMM checked bounds).
      (void)window.Write(MmioContext{}, w.offset(),
                         static_cast<uint8_t>(w.size()), w.value());
      return;
    }
    return;
  }
  if (ev.has_detached()) {
    const uint32_t slot = ev.detached().slot();
    if (slot < e.slot_draining.size() && e.slot_draining[slot]) {
      e.slot_draining[slot] = false;  // a rollback's / forced detach's echo
      return;
    }
    for (const auto& [dev, a] : e.attachments) {
      if (a->slot == slot && a->ready) {
        const std::string device = dev;
        FinishDetach(e, device, ev.detached().forced(),
                     ev.detached().forced() ? "detach-forced" : "detach");
        return;
      }
    }
  }
}

void VmManager::ReleaseAttachments(VmEntry& e) {
  std::vector<std::string> ready;
  for (const auto& [dev, a] : e.attachments) {
    if (a->ready) ready.push_back(dev);
  }
  // Attachments still being set up are rolled back by their AttachDevice
  // call (it sees the VMM gone).
  for (const std::string& dev : ready) FinishDetach(e, dev, true, "vmm-exit");
  e.attach_results.clear();
  e.slot_draining.assign(e.slot_draining.size(), false);
  e.cmd_seq = 1;
}

void VmManager::CheckDetachDeadlines() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& [name, e] : vms_) {
    std::vector<std::string> expired;
    for (auto& [dev, a] : e.attachments) {
      if (!a->ready || a->state != v1::ATTACHMENT_STATE_DETACH_PENDING ||
          now < a->deadline) {
        continue;
      }
      if (!a->force_sent) {
        // The guest did not ack in time: force the eject.
        vmm::v1::VmmCommand cmd;
        cmd.mutable_detach()->set_slot(a->slot);
        cmd.mutable_detach()->set_force(true);
        (void)SendCommand(e, cmd);
        a->force_sent = true;
      } else if (now > a->deadline + kForceGrace) {
        expired.push_back(dev);  // the VMM does not answer: complete here
      }
    }
    for (const std::string& dev : expired) {
      const uint32_t slot = e.attachments[dev]->slot;
      FinishDetach(e, dev, true, "detach-expired");
      if (slot < e.slot_draining.size()) e.slot_draining[slot] = true;
    }
  }
}

absl::StatusOr<std::vector<v1::Attachment>> VmManager::ListAttachments(
    const std::string& vm) {
  MutexLock l(&mu_);
  if (!vm.empty() && vms_.count(vm) == 0) {
    return absl::NotFoundError(absl::StrCat("vm: no vm '", vm, "'"));
  }
  std::vector<v1::Attachment> out;
  for (const auto& [name, e] : vms_) {
    if (!vm.empty() && name != vm) continue;
    for (const auto& [dev, a] : e.attachments) {
      if (a->ready) out.push_back(Describe(e, *a));
    }
  }
  return out;
}

}  // namespace hv::hvd
