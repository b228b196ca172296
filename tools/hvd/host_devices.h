// hvd's host-device inventory (DESIGN §2, §3): the hardware (hv-hwsim), the
// bus drivers (vfio/pci.h, vfio/platform.h) over it, and the vfio core that
// owns every host IRQ, device ownership and the per-IRQ bi-modal handler.
//
// First step (documented in docs/management.md): the hv-hwsim *library* runs
// inside hvd (one hwsim::Machine built from an inventory spec) instead of a
// separate hv-hwsim process; the bus drivers, the vfio core and its
// dispatcher thread are the same code a separate process would be driven by.
//
// Host-owned interrupts go to the host driver (the vfio core's HostConsumer:
// it consumes the message and, for a level line, acks the source and
// unmasks), counted as host_handled.
//
// Locks: none of its own. The vfio core's mu_ and per-IRQ dispatch locks and
// the hwsim vector spinlocks are below any lock of the caller (VmManager::mu_
// may be held while calling List).
#ifndef TOOLS_HVD_HOST_DEVICES_H_
#define TOOLS_HVD_HOST_DEVICES_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/hv.pb.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/vfio_core.h"

namespace hv::hvd {

class HostDevices {
 public:
  // Builds the machine from `spec`, probes every device with its bus driver,
  // registers it with the vfio core and starts the core's dispatcher.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HostDevices>> Create(
      const hwsim::InventorySpec& spec);
  // Reads the inventory from a config file (hwsim::InventorySpec::Parse
  // format); an empty path = the default inventory. InvalidArgument naming
  // the file for unreadable/invalid configs.
  [[nodiscard]] static absl::StatusOr<hwsim::InventorySpec> LoadSpec(
      const std::string& path);
  ~HostDevices();  // stops the dispatcher before the devices go away

  // Maps a vfio owner (VM id, > 0) to the VM name ListHostDevices shows.
  using OwnerName = std::function<std::string(vfio::VmId)>;
  // Every device with owner ("host" or the VM's name) and per-IRQ state.
  std::vector<v1::HostDevice> List(const OwnerName& owner_name) const;
  // One device; NotFound naming the `device` field.
  [[nodiscard]] absl::StatusOr<v1::HostDevice> Get(
      absl::string_view id, const OwnerName& owner_name) const;

  hwsim::Machine* machine() const { return machine_.get(); }
  vfio::VfioCore* core() const { return core_.get(); }

 private:
  HostDevices() = default;
  v1::HostDevice Describe(const vfio::DeviceInfo& d,
                          const OwnerName& owner_name) const;

  // Declaration order = destruction order reversed: the core (dispatcher,
  // bus drivers) goes before the machine whose devices they reference.
  std::unique_ptr<hwsim::Machine> machine_;
  std::unique_ptr<vfio::VfioCore> core_;
};

v1::VectorMode ToVectorMode(vfio::IrqMode m);
void FillIrqState(const vfio::IrqStatus& st, bool masked, v1::IrqState* out);

}  // namespace hv::hvd

#endif  // TOOLS_HVD_HOST_DEVICES_H_
