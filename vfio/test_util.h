// Shared by the vfio tests: an hwsim machine registered with a VfioCore whose
// host driver records every sequence number it consumes, and recording
// forwarded handlers.
#ifndef VFIO_TEST_UTIL_H_
#define VFIO_TEST_UTIL_H_

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hv/base/locks.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/arch_forward.h"
#include "vfio/pci.h"
#include "vfio/platform.h"
#include "vfio/vfio_core.h"

namespace vfio::testing {

// Thread-safe list of (irq, seq) observations.
class SeqLog {
 public:
  void Add(HostIrq irq, uint64_t seq) {
    hv::MutexLock l(&mu_);
    log_.emplace_back(irq, seq);
  }
  std::vector<uint64_t> For(HostIrq irq) const {
    hv::MutexLock l(&mu_);
    std::vector<uint64_t> out;
    for (const auto& [i, s] : log_) {
      if (i == irq) out.push_back(s);
    }
    return out;
  }
  size_t size() const {
    hv::MutexLock l(&mu_);
    return log_.size();
  }

 private:
  mutable hv::Mutex mu_;
  std::vector<std::pair<HostIrq, uint64_t>> log_ ABSL_GUARDED_BY(mu_);
};

class RecordingHandler : public IrqHandler {
 public:
  explicit RecordingHandler(SeqLog* log) : log_(log) {}
  bool Handle(HostIrq irq, const IrqEvent& ev) override {
    log_->Add(irq, ev.seq);
    return true;
  }

 private:
  SeqLog* log_;
};

// An arch layer that forwards into a RecordingHandler and records calls; can
// be told to reject the next forward.
class FakeArch : public ArchForward {
 public:
  FakeArch(VfioCore* core, SeqLog* log) : core_(core), log_(log) {}
  absl::Status SetForward(HostIrq irq, const GuestIrq&, bool on) override {
    if (on) {
      if (fail_next_) {
        fail_next_ = false;
        return absl::InvalidArgumentError("guest_irq: rejected by the arch");
      }
      ++ons;
      core_->SetForwarded(irq, std::make_unique<RecordingHandler>(log_));
    } else {
      ++offs;
      core_->SetHostOwned(irq);
    }
    return absl::OkStatus();
  }
  void FailNext() { fail_next_ = true; }
  int ons = 0;
  int offs = 0;

 private:
  VfioCore* core_;
  SeqLog* log_;
  bool fail_next_ = false;
};

// hwsim default inventory, every device probed by its bus driver and
// registered with a core whose host driver logs into host_log.
struct Rig {
  explicit Rig(BypassManager* bypass = nullptr) {
    machine = std::move(hwsim::Machine::Create(hwsim::InventorySpec::Default()))
                  .value();
    core = std::make_unique<VfioCore>(
        [this](HostIrq irq, const IrqEvent& ev) { host_log.Add(irq, ev.seq); },
        bypass);
    for (const auto& d : machine->devices()) {
      if (d->kind() == hwsim::DeviceKind::kPci) {
        EXPECT_TRUE(
            core->AddDevice(std::move(PciDevice::Probe(d.get())).value()).ok());
      } else {
        EXPECT_TRUE(
            core->AddDevice(std::move(PlatformDevice::Probe(d.get())).value())
                .ok());
      }
    }
  }
  HostIrq Msix(const char* dev, uint32_t v) {
    return core->HostIrqFor(dev, kVfioPciMsixIrqIndex, v).value();
  }
  HostIrq Plat(const char* dev) { return core->HostIrqFor(dev, 0, 0).value(); }
  hwsim::Device* Dev(const char* id) { return machine->Find(id); }

  SeqLog host_log;
  std::unique_ptr<hwsim::Machine> machine;
  std::unique_ptr<VfioCore> core;
};

// Polls `pred` for up to 10 s.
template <typename Pred>
bool WaitFor(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace vfio::testing

#endif  // VFIO_TEST_UTIL_H_
