// Bus drivers (DESIGN §3, first layer): a host device as the vfio core sees
// it. A bus driver turns VFIO's (index, subindex) into a device-local line,
// exposes each line's trigger (an eventfd), the sequence numbers the hardware
// attached to its interrupts, and mask/unmask/ack of the physical source.
// Implementations: PciDevice (MSI-X vectors, pci.h) and PlatformDevice
// (wired level lines, platform.h), both over hv-hwsim devices; a real VFIO
// backend would implement the same interface.
//
// Threading: every method is thread-safe except Drain, which has one caller
// per line at a time (the vfio core's per-IRQ dispatch lock).
#ifndef VFIO_BUS_DRIVER_H_
#define VFIO_BUS_DRIVER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/hwsim/hwsim.h"

namespace vfio {

// VFIO uapi IRQ indices (linux/vfio.h): vfio-pci numbers INTx 0, MSI 1,
// MSI-X 2; vfio-platform numbers its lines from 0.
inline constexpr uint32_t kVfioPciMsixIrqIndex = 2;

class BusDevice {
 public:
  virtual ~BusDevice() = default;

  virtual const std::string& id() const = 0;
  virtual const char* bus() const = 0;  // "pci" | "platform"
  // PCI requester ID (bus << 8 | devfn): the ITS DeviceID of its MSIs.
  virtual uint16_t requester_id() const = 0;
  virtual uint32_t num_lines() const = 0;
  // (VFIO index, subindex) → line. InvalidArgument naming the bad field.
  [[nodiscard]] virtual absl::StatusOr<uint32_t> Line(
      uint32_t index, uint32_t subindex) const = 0;
  virtual bool level(uint32_t line) const = 0;
  // The line's trigger eventfd (owned by the device).
  virtual int trigger_fd(uint32_t line) const = 0;
  // Pops the sequence numbers of interrupts raised since the last call.
  virtual void Drain(uint32_t line, std::vector<uint64_t>* seqs) = 0;
  // Level lines: whether the source is asserting the line now.
  virtual bool Asserted(uint32_t line) const = 0;
  virtual void Mask(uint32_t line) = 0;
  virtual bool Masked(uint32_t line) const = 0;
  // Re-enables the line; a source still asserting (or queued messages)
  // re-triggers.
  virtual void Unmask(uint32_t line) = 0;
  // The host driver's handler quiesces the source (clears the device's
  // interrupt status).
  virtual void AckSource(uint32_t line) = 0;
  // The device returned to the host: the host driver re-initialises it
  // (every line enabled and unmasked, whatever a guest driver left).
  virtual void HostReset() = 0;
  // Posted remapping entry of an edge line (DESIGN §3 bypass).
  [[nodiscard]] virtual absl::Status SetPosted(uint32_t line,
                                               hwsim::PostedEntry entry) = 0;
  virtual void ClearPosted(uint32_t line) = 0;
  virtual hwsim::VectorCounters counters(uint32_t line) const = 0;
};

// Common part of both bus drivers: one hwsim device, line n = vector n.
class HwsimBusDevice : public BusDevice {
 public:
  explicit HwsimBusDevice(hwsim::Device* dev) : dev_(dev) {}
  const std::string& id() const override { return dev_->id(); }
  uint16_t requester_id() const override { return dev_->requester_id(); }
  uint32_t num_lines() const override { return dev_->num_vectors(); }
  bool level(uint32_t) const override { return dev_->level(); }
  int trigger_fd(uint32_t line) const override { return dev_->irq_fd(line); }
  void Drain(uint32_t line, std::vector<uint64_t>* seqs) override {
    dev_->Drain(line, seqs);
  }
  bool Asserted(uint32_t) const override {
    return dev_->level() && dev_->asserted();
  }
  void Mask(uint32_t line) override { dev_->SetMasked(line, true); }
  bool Masked(uint32_t line) const override { return dev_->masked(line); }
  void Unmask(uint32_t line) override { dev_->SetMasked(line, false); }
  void AckSource(uint32_t) override { dev_->ClearStatus(); }
  void HostReset() override {
    for (uint32_t v = 0; v < dev_->num_vectors(); ++v) {
      dev_->SetEnabled(v, true);
      dev_->SetMasked(v, false);
    }
  }
  absl::Status SetPosted(uint32_t line, hwsim::PostedEntry entry) override {
    return dev_->SetPosted(line, std::move(entry));
  }
  void ClearPosted(uint32_t line) override { dev_->ClearPosted(line); }
  hwsim::VectorCounters counters(uint32_t line) const override {
    return dev_->counters(line);
  }
  hwsim::Device* hwsim_device() const { return dev_; }

 protected:
  hwsim::Device* const dev_;
};

}  // namespace vfio

#endif  // VFIO_BUS_DRIVER_H_
