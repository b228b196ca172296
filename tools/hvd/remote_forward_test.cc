#include "tools/hvd/remote_forward.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/kvm_vfio.h"
#include "vfio/pci.h"

namespace hv::hvd {
namespace {

uint64_t ReadCount(int fd) {
  uint64_t n = 0;
  return read(fd, &n, sizeof(n)) == sizeof(n) ? n : 0;
}

// Forwarded vectors of a device signal their own eventfd once per interrupt
// (the VMM's end of the mediated path); unforwarding returns them to the
// host driver and the eventfds stay silent.
TEST(RemoteMsiForwardTest, ForwardsEachVectorToItsEventfd) {
  auto machine = hwsim::Machine::Create(hwsim::InventorySpec::Default());
  ASSERT_TRUE(machine.ok());
  hwsim::Device* dev = (*machine)->Find("0000:03:00.0");
  vfio::VfioCore core;
  ASSERT_TRUE(
      core.AddDevice(std::move(vfio::PciDevice::Probe(dev)).value()).ok());
  std::vector<int> efds;
  for (int i = 0; i < 8; ++i) efds.push_back(eventfd(0, EFD_NONBLOCK));
  RemoteMsiForward arch(&core, dev->requester_id(), efds);
  {
    vfio::KvmVfio kv(3, &core, &arch);
    // Only MSIs of this device with an EventID that has an eventfd.
    EXPECT_EQ(kv.Forward("0000:03:00.0", vfio::kVfioPciMsixIrqIndex, 0,
                         vfio::GuestIrq::Spi(40))
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(kv.Forward("0000:03:00.0", vfio::kVfioPciMsixIrqIndex, 0,
                         vfio::GuestIrq::Msi(0x999, 0))
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(kv.Forward("0000:03:00.0", vfio::kVfioPciMsixIrqIndex, 0,
                         vfio::GuestIrq::Msi(dev->requester_id(), 8))
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(core.GetDevice("0000:03:00.0")->owner, vfio::kHost);  // no refs
    for (uint32_t v = 0; v < 8; ++v) {
      ASSERT_TRUE(kv.Forward("0000:03:00.0", vfio::kVfioPciMsixIrqIndex, v,
                             vfio::GuestIrq::Msi(dev->requester_id(), v))
                      .ok());
    }
    EXPECT_EQ(core.GetDevice("0000:03:00.0")->owner, 3u);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(dev->Fire(5).ok());
    ASSERT_TRUE(dev->Fire(2).ok());
    for (uint32_t v = 0; v < 8; ++v) {
      core.Dispatch(*core.HostIrqFor("0000:03:00.0", 2, v));
    }
    EXPECT_EQ(ReadCount(efds[5]), 3u);
    EXPECT_EQ(ReadCount(efds[2]), 1u);
    EXPECT_EQ(ReadCount(efds[0]), 0u);
    auto st = core.Status(*core.HostIrqFor("0000:03:00.0", 2, 5));
    EXPECT_EQ(st->mode, vfio::IrqMode::kForwardedMediated);
    EXPECT_EQ(st->guest_delivered, 3u);
  }  // kvm-vfio destroyed: everything unforwarded
  EXPECT_EQ(core.GetDevice("0000:03:00.0")->owner, vfio::kHost);
  ASSERT_TRUE(dev->Fire(5).ok());
  const vfio::HostIrq irq = *core.HostIrqFor("0000:03:00.0", 2, 5);
  core.Dispatch(irq);
  EXPECT_EQ(ReadCount(efds[5]), 0u);
  EXPECT_EQ(core.Status(irq)->host_handled, 1u);
  EXPECT_EQ(core.Status(irq)->mode, vfio::IrqMode::kHostOwned);
  for (int fd : efds) close(fd);
}

}  // namespace
}  // namespace hv::hvd
