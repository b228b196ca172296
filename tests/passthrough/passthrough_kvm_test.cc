// End to end on KVM, one process (issue 8): hwsim devices → bus drivers →
// vfio core → kvm-vfio → gicv3 forward → the `passthrough` guest. A PCI
// function's 8 MSI-X vectors arrive as LPIs through the ITS (mediated, or
// posted with a KVM_IRQFD doorbell), the platform device's level line as a
// forwarded SPI; the guest's per-vector counts must match hwsim's.
#include <chrono>
#include <cstddef>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/vmm/vmm.h"
#include "tests/passthrough/pt_guest_abi.h"
#include "tools/hwsim/hwsim.h"
#include "vfio/gicv3_forward.h"
#include "vfio/kvm_vfio.h"
#include "vfio/pci.h"
#include "vfio/platform.h"
#include "vfio/vfio_core.h"

namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> ReadImage() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  std::string path = std::string(srcdir ? srcdir : ".") + "/" +
                     (ws ? ws : "hv") +
                     "/tests/passthrough/passthrough-guest.elf";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

class Console {
 public:
  void Put(char c) {
    std::lock_guard<std::mutex> l(mu_);
    text_ += c;
  }
  std::string text() {
    std::lock_guard<std::mutex> l(mu_);
    return text_;
  }

 private:
  std::mutex mu_;
  std::string text_;
};

class PassthroughKvmTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!hv::arch::KvmAvailable()) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
  }

  uint64_t Mb(size_t off) {
    return vmm_->memory().AtomicLoad64(PT_MAILBOX + off).value_or(~0ull);
  }
  uint64_t MsiCount(uint32_t v) {
    return Mb(offsetof(pt_mailbox, msi_count) + 8 * v);
  }
  uint64_t SpiCount() { return Mb(offsetof(pt_mailbox, spi_count)); }
  template <typename Pred>
  bool Wait(Pred p, std::chrono::milliseconds t = 10s) {
    auto end = std::chrono::steady_clock::now() + t;
    while (!p()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(50us);
    }
    return true;
  }

  Console console_;
  std::unique_ptr<hv::Vmm> vmm_;
};

TEST_P(PassthroughKvmTest, GuestCountsMatchHwsim) {
  const bool posted = GetParam();
  constexpr int kRounds = 40;  // per vector
  constexpr int kSpis = 40;
  const char* kPci = "0000:01:00.0";

  auto machine =
      std::move(hwsim::Machine::Create(hwsim::InventorySpec::Default()))
          .value();
  hwsim::Device* pci = machine->Find(kPci);
  hwsim::Device* plat = machine->Find("plat0");
  vfio::BypassManager bypass;
  vfio::VfioCore core(nullptr, posted ? &bypass : nullptr);
  ASSERT_TRUE(
      core.AddDevice(std::move(vfio::PciDevice::Probe(pci)).value()).ok());
  ASSERT_TRUE(
      core.AddDevice(std::move(vfio::PlatformDevice::Probe(plat)).value())
          .ok());
  ASSERT_TRUE(core.Start().ok());

  hv::arch::VmConfig vc;
  vc.irq_delivery = hv::arch::IrqDelivery::kLapic;
  auto vm = hv::arch::KvmVm::Create(vc);
  ASSERT_TRUE(vm.ok()) << vm.status();
  hv::arch::KvmVm* kvm = vm->get();
  hv::VmmConfig c;
  c.image = ReadImage();
  ASSERT_FALSE(c.image.empty());
  c.vcpus = 1;
  c.memory_mib = 16;
  c.console = [this](char ch) { console_.Put(ch); };
  auto vmm = hv::Vmm::Create(std::move(c), std::move(*vm));
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  vmm_ = std::move(*vmm);
  hwsim::WindowMmio w0(machine.get(), pci), w1(machine.get(), plat);
  ASSERT_TRUE(vmm_->mmio_bus()
                  .Register(PT_WINDOW_BASE, HWSIM_WINDOW_GUEST_SIZE, &w0, "pt0")
                  .ok());
  ASSERT_TRUE(vmm_->mmio_bus()
                  .Register(PT_WINDOW_BASE + PT_WINDOW_STRIDE,
                            HWSIM_WINDOW_GUEST_SIZE, &w1, "pt1")
                  .ok());

  std::optional<vfio::Gicv3PostedConfig> pcfg;
  int bell = -1;
  if (posted) {
    auto fd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
    ASSERT_TRUE(fd.ok()) << fd.status();
    bell = *fd;
    auto region = vfio::Gicv3Forward::MapPending(*vmm_->gic());
    ASSERT_TRUE(region.ok()) << region.status();
    pcfg = vfio::Gicv3PostedConfig{
        &bypass, *region, [bell](uint32_t v) { return v == 0 ? bell : -1; }};
  }
  vfio::Gicv3Forward arch(&core, vmm_->gic(), vmm_->its(), pcfg);
  vfio::KvmVfio kv(1, &core, &arch);
  for (uint32_t v = 0; v < 8; ++v) {
    ASSERT_TRUE(kv.Forward(kPci, vfio::kVfioPciMsixIrqIndex, v,
                           vfio::GuestIrq::Msi(pci->requester_id(), v))
                    .ok());
  }
  ASSERT_TRUE(
      kv.Forward("plat0", 0, 0, vfio::GuestIrq::Spi(PT_PLATFORM_SPI)).ok());

  ASSERT_TRUE(vmm_->Start().ok());
  ASSERT_TRUE(Wait([&] { return Mb(0) >> 32 == 1; }, 20s))
      << "guest not ready; console:\n"
      << console_.text();
  if (posted) {
    // The guest mapped its EventIDs after the forwards: the ITS observer
    // posted every vector.
    for (uint32_t v = 0; v < 8; ++v) {
      EXPECT_EQ(core.Status(core.HostIrqFor(kPci, 2, v).value())->mode,
                vfio::IrqMode::kForwardedPosted)
          << v;
    }
  }

  // Lockstep: each fire is handled before the next, so nothing coalesces and
  // the guest's counts must equal hwsim's exactly.
  for (int r = 0; r < kRounds; ++r) {
    for (uint32_t v = 0; v < 8; ++v) {
      ASSERT_TRUE(pci->Fire(v).ok());
      ASSERT_TRUE(Wait([&] { return MsiCount(v) == uint64_t(r + 1); }))
          << "vector " << v << " round " << r << " guest count " << MsiCount(v)
          << "\n"
          << console_.text();
    }
  }
  for (int k = 0; k < kSpis; ++k) {
    ASSERT_TRUE(plat->Fire(0).ok());
    ASSERT_TRUE(Wait([&] { return SpiCount() == uint64_t(k + 1); }))
        << "spi " << k << "\n"
        << console_.text();
    // The guest cleared the status before its EOI; the line was unmasked at
    // deactivation.
    ASSERT_TRUE(Wait([&] { return !plat->masked(0); }));
  }
  ASSERT_TRUE(
      vmm_->memory()
          .WriteObj<uint32_t>(PT_MAILBOX + offsetof(pt_mailbox, stop), 1)
          .ok());
  ASSERT_TRUE(vmm_->gic()->PulseSpi(PT_WAKE_SPI).ok());
  auto exit = vmm_->WaitFor(20s);
  ASSERT_TRUE(exit.has_value()) << console_.text();
  EXPECT_EQ(exit->exit_code, 0) << console_.text();
  EXPECT_NE(console_.text().find("PASS passthrough"), std::string::npos)
      << console_.text();

  for (uint32_t v = 0; v < 8; ++v) {
    auto st = core.Status(core.HostIrqFor(kPci, 2, v).value());
    EXPECT_EQ(MsiCount(v), uint64_t{kRounds});
    EXPECT_EQ(st->fired, uint64_t{kRounds});
    EXPECT_EQ(posted ? st->posted_delivered : st->guest_delivered,
              uint64_t{kRounds})
        << v;
    EXPECT_EQ(st->host_handled, 0u);
  }
  auto sst = core.Status(core.HostIrqFor("plat0", 0, 0).value());
  EXPECT_EQ(SpiCount(), uint64_t{kSpis});
  EXPECT_EQ(sst->fired, uint64_t{kSpis});
  EXPECT_EQ(sst->guest_delivered, uint64_t{kSpis});
  EXPECT_EQ(Mb(offsetof(pt_mailbox, spi_spurious)), 0u);
  EXPECT_EQ(Mb(offsetof(pt_mailbox, unexpected)), 0u);

  kv.Destroy();
  EXPECT_EQ(core.GetDevice(kPci)->refs, 0u);
  EXPECT_FALSE(pci->posted(0));
  core.Stop();
  if (bell >= 0) close(bell);
}

INSTANTIATE_TEST_SUITE_P(Modes, PassthroughKvmTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Posted" : "Mediated";
                         });

}  // namespace
