#include "tools/hvd/host_devices.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hv/base/status_macros.h"
#include "vfio/pci.h"
#include "vfio/platform.h"

namespace hv::hvd {

v1::VectorMode ToVectorMode(vfio::IrqMode m) {
  switch (m) {
    case vfio::IrqMode::kHostOwned:
      return v1::VECTOR_MODE_HOST;
    case vfio::IrqMode::kForwardedMediated:
      return v1::VECTOR_MODE_MEDIATED;
    case vfio::IrqMode::kForwardedPosted:
      return v1::VECTOR_MODE_BYPASSED;
  }
  return v1::VECTOR_MODE_UNSPECIFIED;
}

void FillIrqState(const vfio::IrqStatus& st, bool masked, v1::IrqState* out) {
  out->set_index(st.line);
  out->set_mode(ToVectorMode(st.mode));
  out->set_count(st.fired);
  out->set_masked(masked);
  out->set_level(st.level);
  out->set_host_irq(st.irq);
  out->set_host_handled(st.host_handled);
  out->set_guest_delivered(st.guest_delivered);
  out->set_guest_dropped(st.guest_dropped);
  out->set_posted_delivered(st.posted_delivered);
  out->set_coalesced(st.coalesced);
  out->set_queued(st.queued);
}

absl::StatusOr<hwsim::InventorySpec> HostDevices::LoadSpec(
    const std::string& path) {
  if (path.empty()) return hwsim::InventorySpec::Default();
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("hwsim_config: cannot read '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<hwsim::InventorySpec> spec =
      hwsim::InventorySpec::Parse(text.str());
  if (!spec.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hwsim_config: '", path, "': ", spec.status().message()));
  }
  return spec;
}

absl::StatusOr<std::unique_ptr<HostDevices>> HostDevices::Create(
    const hwsim::InventorySpec& spec) {
  std::unique_ptr<HostDevices> h(new HostDevices());
  HV_ASSIGN_OR_RETURN(h->machine_, hwsim::Machine::Create(spec));
  // The host driver: the vfio core counts host_handled and acks/unmasks
  // level sources itself; hvd has nothing further to do with the data.
  h->core_ = std::make_unique<vfio::VfioCore>(
      [](vfio::HostIrq, const vfio::IrqEvent&) {});
  for (const std::unique_ptr<hwsim::Device>& d : h->machine_->devices()) {
    std::unique_ptr<vfio::BusDevice> bus;
    if (d->kind() == hwsim::DeviceKind::kPci) {
      HV_ASSIGN_OR_RETURN(bus, vfio::PciDevice::Probe(d.get()));
    } else {
      HV_ASSIGN_OR_RETURN(bus, vfio::PlatformDevice::Probe(d.get()));
    }
    HV_RETURN_IF_ERROR(h->core_->AddDevice(std::move(bus)));
  }
  HV_RETURN_IF_ERROR(h->core_->Start());
  return h;
}

HostDevices::~HostDevices() {
  if (core_ != nullptr) core_->Stop();
}

v1::HostDevice HostDevices::Describe(const vfio::DeviceInfo& d,
                                     const OwnerName& owner_name) const {
  v1::HostDevice out;
  out.set_id(d.id);
  out.set_kind(d.bus);
  out.set_owner(d.owner == vfio::kHost ? "host" : owner_name(d.owner));
  out.set_requester_id(d.bus == "pci" ? d.requester_id : 0);
  for (const vfio::IrqStatus& st : core_->DeviceStatus(d.id)) {
    vfio::BusDevice* bus = core_->bus_device(st.irq);
    FillIrqState(st, bus != nullptr && bus->Masked(st.line), out.add_irqs());
  }
  return out;
}

std::vector<v1::HostDevice> HostDevices::List(
    const OwnerName& owner_name) const {
  std::vector<v1::HostDevice> out;
  for (const vfio::DeviceInfo& d : core_->ListDevices()) {
    out.push_back(Describe(d, owner_name));
  }
  return out;
}

absl::StatusOr<v1::HostDevice> HostDevices::Get(
    absl::string_view id, const OwnerName& owner_name) const {
  absl::StatusOr<vfio::DeviceInfo> d = core_->GetDevice(id);
  if (!d.ok()) {
    return absl::NotFoundError(
        absl::StrCat("device: no host device '", id, "'"));
  }
  return Describe(*d, owner_name);
}

}  // namespace hv::hvd
