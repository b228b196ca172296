#include "tools/hvd/host_devices.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hv::hvd {
namespace {

using ::testing::HasSubstr;

std::string Name(vfio::VmId id) { return absl::StrCat("vm", id); }

// Polls `cond` (the dispatcher thread handles interrupts asynchronously).
bool WaitFor(const std::function<bool()>& cond) {
  for (int i = 0; i < 2000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

v1::HostDevice Dev(const HostDevices& h, const std::string& id) {
  absl::StatusOr<v1::HostDevice> d = h.Get(id, Name);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : v1::HostDevice();
}

TEST(HostDevicesTest, DefaultInventoryIsHostOwned) {
  auto h = HostDevices::Create(hwsim::InventorySpec::Default());
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<v1::HostDevice> list = (*h)->List(Name);
  ASSERT_EQ(list.size(), 6u);
  EXPECT_EQ(list[0].id(), "0000:01:00.0");
  EXPECT_EQ(list[0].kind(), "pci");
  EXPECT_EQ(list[0].requester_id(), 0x100u);
  EXPECT_EQ(list[3].id(), "0000:04:00.0");
  EXPECT_EQ(list[3].requester_id(), 0x400u);
  EXPECT_EQ(list[4].id(), "plat0");
  EXPECT_EQ(list[4].kind(), "platform");
  EXPECT_EQ(list[4].requester_id(), 0u);
  uint32_t host_irq = 0;
  for (const v1::HostDevice& d : list) {
    EXPECT_EQ(d.owner(), "host") << d.id();
    ASSERT_EQ(d.irqs_size(), d.kind() == "pci" ? 8 : 1) << d.id();
    for (int i = 0; i < d.irqs_size(); ++i) {
      const v1::IrqState& q = d.irqs(i);
      EXPECT_EQ(q.index(), static_cast<uint32_t>(i));
      EXPECT_EQ(q.mode(), v1::VECTOR_MODE_HOST);
      EXPECT_EQ(q.level(), d.kind() == "platform");
      EXPECT_EQ(q.count(), 0u);
      EXPECT_FALSE(q.masked());
      EXPECT_EQ(q.host_irq(), host_irq++);  // stable, dense numbering
    }
  }
  absl::StatusOr<v1::HostDevice> bad = (*h)->Get("0000:09:00.0", Name);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("device"));
}

TEST(HostDevicesTest, HostDriverHandlesFiresPerVector) {
  auto h = HostDevices::Create(hwsim::InventorySpec::Default());
  ASSERT_TRUE(h.ok()) << h.status();
  hwsim::Device* pci = (*h)->machine()->Find("0000:02:00.0");
  ASSERT_NE(pci, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pci->Fire(3).ok());
  ASSERT_TRUE(WaitFor(
      [&] { return Dev(**h, "0000:02:00.0").irqs(3).host_handled() == 5; }));
  v1::HostDevice d = Dev(**h, "0000:02:00.0");
  EXPECT_EQ(d.irqs(3).count(), 5u);
  EXPECT_EQ(d.irqs(3).queued(), 0u);
  EXPECT_EQ(d.irqs(3).guest_delivered(), 0u);
  for (int v = 0; v < 8; ++v) {
    if (v != 3) {
      EXPECT_EQ(d.irqs(v).count(), 0u) << v;
    }
  }

  // A level line: the host driver acks the source and unmasks.
  hwsim::Device* plat = (*h)->machine()->Find("plat1");
  ASSERT_NE(plat, nullptr);
  ASSERT_TRUE(plat->Fire(0).ok());
  ASSERT_TRUE(
      WaitFor([&] { return Dev(**h, "plat1").irqs(0).host_handled() == 1; }));
  ASSERT_TRUE(WaitFor([&] { return !plat->asserted(); }));
  v1::HostDevice p = Dev(**h, "plat1");
  EXPECT_EQ(p.irqs(0).count(), 1u);
  EXPECT_FALSE(p.irqs(0).masked());
  EXPECT_EQ(Dev(**h, "plat0").irqs(0).count(), 0u);
}

class CountingHandler : public vfio::IrqHandler {
 public:
  explicit CountingHandler(std::atomic<int>* n) : n_(n) {}
  bool Handle(vfio::HostIrq, const vfio::IrqEvent&) override {
    n_->fetch_add(1);
    return true;
  }

 private:
  std::atomic<int>* n_;
};

TEST(HostDevicesTest, ReportsOwnerAndForwardedMode) {
  auto h = HostDevices::Create(hwsim::InventorySpec::Default());
  ASSERT_TRUE(h.ok()) << h.status();
  vfio::VfioCore* core = (*h)->core();
  ASSERT_TRUE(core->AcquireRef("0000:03:00.0", 7).ok());
  absl::StatusOr<vfio::HostIrq> irq =
      core->HostIrqFor("0000:03:00.0", vfio::kVfioPciMsixIrqIndex, 1);
  ASSERT_TRUE(irq.ok()) << irq.status();
  std::atomic<int> n{0};
  core->SetForwarded(*irq, std::make_unique<CountingHandler>(&n));
  v1::HostDevice d = Dev(**h, "0000:03:00.0");
  EXPECT_EQ(d.owner(), "vm7");
  EXPECT_EQ(d.irqs(1).mode(), v1::VECTOR_MODE_MEDIATED);
  EXPECT_EQ(d.irqs(0).mode(), v1::VECTOR_MODE_HOST);
  ASSERT_TRUE((*h)->machine()->Find("0000:03:00.0")->Fire(1).ok());
  ASSERT_TRUE(WaitFor(
      [&] { return Dev(**h, "0000:03:00.0").irqs(1).guest_delivered() == 1; }));
  EXPECT_EQ(n.load(), 1);
  EXPECT_EQ(Dev(**h, "0000:03:00.0").irqs(1).host_handled(), 0u);
  EXPECT_EQ(Dev(**h, "0000:01:00.0").owner(), "host");

  core->SetHostOwned(*irq);
  core->ReleaseRef("0000:03:00.0", 7);
  d = Dev(**h, "0000:03:00.0");
  EXPECT_EQ(d.owner(), "host");
  EXPECT_EQ(d.irqs(1).mode(), v1::VECTOR_MODE_HOST);
}

TEST(HostDevicesTest, LoadSpecFromConfigFile) {
  auto def = HostDevices::LoadSpec("");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->pci.size(), 4u);

  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/inv.conf";
  {
    std::ofstream out(path);
    out << "# two devices\npci 0000:05:00.0 vectors=2\nplatform timer0\n";
  }
  auto spec = HostDevices::LoadSpec(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto h = HostDevices::Create(*spec);
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<v1::HostDevice> list = (*h)->List(Name);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id(), "0000:05:00.0");
  EXPECT_EQ(list[0].irqs_size(), 2);
  EXPECT_EQ(list[1].id(), "timer0");

  {
    std::ofstream out(path);
    out << "pci nonsense\n";
  }
  auto bad = HostDevices::LoadSpec(path);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("hwsim_config"));
  auto missing = HostDevices::LoadSpec(path + ".absent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hv::hvd
