// Hot-attach and two-phase detach on KVM through the hv-virt hot-plug
// controller (issue 8): attach makes an hwsim PCI function appear, the guest
// sets it up from the controller's identity registers and receives its MSIs;
// an eject request is quiesced and acked by the guest and the host then
// unforwards; a guest that never acks is ejected by force after the timeout.
// Either way the device returns to the host (refs 0, host-owned, its
// interrupts reach the host driver again).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <fstream>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/platform/hotplug_controller.h"
#include "hv/vmm/vmm.h"
#include "tests/passthrough/pt_guest_abi.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/gicv3_forward.h"
#include "vfio/kvm_vfio.h"
#include "vfio/pci.h"
#include "vfio/vfio_core.h"

namespace {

using namespace std::chrono_literals;

constexpr const char* kPci = "0000:02:00.0";
constexpr uint64_t kWindowGpa = PT_WINDOW_BASE;

std::vector<uint8_t> ReadImage(const char* name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  std::string path = std::string(srcdir ? srcdir : ".") + "/" +
                     (ws ? ws : "hv") + "/tests/passthrough/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

class HotplugKvmTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!hv::arch::KvmAvailable()) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
  }
  uint64_t Mb(size_t off) {
    return vmm_->memory().AtomicLoad64(PT_MAILBOX + off).value_or(~0ull);
  }
  uint32_t Ready() {
    return static_cast<uint32_t>(Mb(0) >> 32);  // magic | ready << 32
  }
  uint64_t MsiCount(uint32_t v) {
    return Mb(offsetof(pt_mailbox, msi_count) + 8 * v);
  }
  template <typename Pred>
  bool Wait(Pred p, std::chrono::milliseconds t = 10s) {
    auto end = std::chrono::steady_clock::now() + t;
    while (!p()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(100us);
    }
    return true;
  }
  std::string Console() {
    std::lock_guard<std::mutex> l(mu_);
    return console_;
  }

  std::mutex mu_;
  std::string console_;
  std::unique_ptr<hv::Vmm> vmm_;
};

TEST_P(HotplugKvmTest, AttachUseDetach) {
  const bool guest_acks = GetParam();
  auto machine =
      std::move(hwsim::Machine::Create(hwsim::InventorySpec::Default()))
          .value();
  hwsim::Device* pci = machine->Find(kPci);
  std::atomic<uint64_t> host_irqs{0};
  vfio::VfioCore core(
      [&](vfio::HostIrq, const vfio::IrqEvent&) { host_irqs.fetch_add(1); });
  ASSERT_TRUE(
      core.AddDevice(std::move(vfio::PciDevice::Probe(pci)).value()).ok());
  ASSERT_TRUE(core.Start().ok());

  hv::arch::VmConfig vc;
  auto vm = hv::arch::KvmVm::Create(vc);
  ASSERT_TRUE(vm.ok()) << vm.status();
  hv::VmmConfig c;
  c.image = ReadImage("hotplug-guest.elf");
  ASSERT_FALSE(c.image.empty());
  c.memory_mib = 16;
  c.num_spis = 96;  // the controller's SPI 90
  c.guest_arg = guest_acks ? 0 : 1;
  c.console = [this](char ch) {
    std::lock_guard<std::mutex> l(mu_);
    console_ += ch;
  };
  auto vmm = hv::Vmm::Create(std::move(c), std::move(*vm));
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  vmm_ = std::move(*vmm);
  vgic::Vgic* gic = vmm_->gic();
  hv::HotplugController hp(4, [gic](bool level) {
    gic->SetSpiLevel(HV_HOTPLUG_SPI, level).IgnoreError();
  });
  ASSERT_TRUE(vmm_->mmio_bus()
                  .Register(HV_HOTPLUG_BASE, HV_HOTPLUG_SIZE, &hp, "hotplug")
                  .ok());
  vfio::Gicv3Forward arch(&core, vmm_->gic(), vmm_->its());
  vfio::KvmVfio kv(1, &core, &arch);
  ASSERT_TRUE(vmm_->Start().ok());
  ASSERT_TRUE(Wait([&] { return Ready() & 1; }, 20s)) << Console();

  // ---- attach (transactional order: forwards + window, then announce).
  for (uint32_t v = 0; v < pci->num_vectors(); ++v) {
    ASSERT_TRUE(kv.Forward(kPci, vfio::kVfioPciMsixIrqIndex, v,
                           vfio::GuestIrq::Msi(pci->requester_id(), v))
                    .ok());
  }
  hwsim::WindowMmio window(machine.get(), pci);
  ASSERT_TRUE(vmm_->mmio_bus()
                  .Register(kWindowGpa, HWSIM_WINDOW_GUEST_SIZE, &window, kPci)
                  .ok());
  ASSERT_TRUE(hp.Attach(0, {kPci, 1, pci->requester_id(), pci->num_vectors(), 0,
                            kWindowGpa, HWSIM_WINDOW_GUEST_SIZE})
                  .ok());
  ASSERT_TRUE(Wait([&] { return Ready() & 2; })) << Console();
  for (int r = 0; r < 10; ++r) {
    for (uint32_t v = 0; v < pci->num_vectors(); ++v) {
      ASSERT_TRUE(pci->Fire(v).ok());
      ASSERT_TRUE(Wait([&] { return MsiCount(v) == uint64_t(r + 1); }))
          << "vector " << v << " round " << r << "\n"
          << Console();
    }
  }
  EXPECT_EQ(core.GetDevice(kPci)->refs, pci->num_vectors());
  EXPECT_EQ(host_irqs.load(), 0u);

  // ---- detach: eject request → guest quiesces (→ acks) → host completes.
  std::atomic<int> done{0};  // 1 acked, 2 forced
  ASSERT_TRUE(hp.RequestEject(0, [&](bool forced) {
                  kv.Destroy();  // unforward everything, drop the refs
                  vmm_->mmio_bus().Unregister(kWindowGpa).IgnoreError();
                  done = forced ? 2 : 1;
                }).ok());
  ASSERT_TRUE(Wait([&] { return Ready() & 4; })) << Console();  // quiesced
  if (guest_acks) {
    ASSERT_TRUE(Wait([&] { return done.load() != 0; })) << Console();
    EXPECT_EQ(done.load(), 1);
  } else {
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(done.load(), 0);  // the guest never acks
    hp.ExpireEjects(hv::HotplugController::Clock::now(), 50ms);
    EXPECT_EQ(done.load(), 2);
  }
  EXPECT_EQ(hp.state(0), hv::SlotState::kEmpty);
  auto info = core.GetDevice(kPci);
  EXPECT_EQ(info->refs, 0u);
  EXPECT_EQ(info->owner, vfio::kHost);
  for (const auto& st : core.DeviceStatus(kPci)) {
    EXPECT_EQ(st.mode, vfio::IrqMode::kHostOwned);
  }
  // Back on the host: its interrupts reach the host driver, not the guest.
  const uint64_t guest_before = MsiCount(0);
  ASSERT_TRUE(pci->Fire(0).ok());
  EXPECT_TRUE(Wait([&] { return host_irqs.load() == 1; }));
  EXPECT_EQ(MsiCount(0), guest_before);

  ASSERT_TRUE(
      vmm_->memory()
          .WriteObj<uint32_t>(PT_MAILBOX + offsetof(pt_mailbox, stop), 1)
          .ok());
  ASSERT_TRUE(vmm_->gic()->PulseSpi(PT_WAKE_SPI).ok());
  auto exit = vmm_->WaitFor(20s);
  ASSERT_TRUE(exit.has_value()) << Console();
  EXPECT_EQ(exit->exit_code, 0) << Console();
  EXPECT_NE(Console().find("PASS hotplug"), std::string::npos) << Console();
  core.Stop();
}

INSTANTIATE_TEST_SUITE_P(Eject, HotplugKvmTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "GuestAcks" : "Forced";
                         });

}  // namespace
