// Vmm on the fake arch backend: configuration checks, boot state, device
// dispatch, PSCI, power-off / crash / reset outcomes, pause.
#include "hv/vmm/vmm.h"

#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "hv/arch/fake_vm.h"
#include "hv/guest/builtin_images.h"
#include "hv/loader/elf_image.h"
#include "hv/platform/hv_virt.h"

namespace hv {
namespace {

using arch::FakeVcpu;
using arch::FakeVm;
using arch::VcpuExit;
using namespace std::chrono_literals;

std::vector<uint8_t> HelloImage() {
  const guest::BuiltinImage* img = guest::FindBuiltinImage("hello");
  EXPECT_NE(img, nullptr);
  return std::vector<uint8_t>(img->data, img->data + img->size);
}

VcpuExit Exit(VcpuExit::Kind kind, uint64_t addr = 0, uint8_t size = 0,
              bool write = false, uint64_t data = 0) {
  VcpuExit e;
  e.kind = kind;
  e.addr = addr;
  e.size = size;
  e.is_write = write;
  e.data = data;
  return e;
}

VcpuExit Psci(uint32_t fn, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0) {
  VcpuExit e = Exit(VcpuExit::Kind::kHypercall);
  e.args[0] = fn;
  e.args[1] = a1;
  e.args[2] = a2;
  e.args[3] = a3;
  return e;
}

struct Fixture {
  explicit Fixture(uint32_t vcpus = 2) {
    VmmConfig c;
    c.image = HelloImage();
    c.vcpus = vcpus;
    c.memory_mib = 8;
    c.guest_arg = 99;
    c.console = [this](char ch) { console.push_back(ch); };
    auto owned = std::make_unique<FakeVm>(8);
    vm = owned.get();
    auto v = Vmm::Create(std::move(c), std::move(owned));
    EXPECT_TRUE(v.ok()) << v.status();
    vmm = std::move(*v);
  }
  FakeVcpu* vcpu(uint32_t i) { return vm->vcpu(i); }
  FakeVm* vm = nullptr;
  std::unique_ptr<Vmm> vmm;
  std::string console;  // written by the vCPU thread, read after Wait()
};

absl::Status CreateWith(uint32_t vcpus, uint64_t mib,
                        std::vector<uint8_t> image) {
  VmmConfig c;
  c.image = std::move(image);
  c.vcpus = vcpus;
  c.memory_mib = mib;
  return Vmm::Create(std::move(c), std::make_unique<FakeVm>(8)).status();
}

TEST(VmmTest, RejectsBadConfiguration) {
  EXPECT_EQ(CreateWith(0, 8, HelloImage()).code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status too_many = CreateWith(9, 8, HelloImage());
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.message().find("vcpus=9"), std::string::npos);
  EXPECT_EQ(CreateWith(1, 1, HelloImage()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateWith(1, kMaxMemoryMib + 1, HelloImage()).code(),
            absl::StatusCode::kInvalidArgument);
  // The image's bss (per-CPU stacks) does not fit in 2 MiB.
  const absl::Status small = CreateWith(1, 2, HelloImage());
  EXPECT_EQ(small.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(small.message().find("does not fit in guest RAM"),
            std::string::npos);
  EXPECT_EQ(CreateWith(1, 8, {1, 2, 3}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VmmTest, BootsVcpu0InLongModeAtTheEntry) {
  Fixture f;
  ASSERT_TRUE(f.vmm->Start().ok());
  ASSERT_TRUE(f.vcpu(0)->WaitIdle(5s));
  const auto resets = f.vcpu(0)->resets();
  ASSERT_EQ(resets.size(), 1u);
  const std::vector<uint8_t> hello = HelloImage();
  auto image = hv::loader::ParseElfImage(hello);
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(resets[0].rip, image->entry);
  EXPECT_EQ(resets[0].rdi, HV_VIRT_INFO_BASE);
  EXPECT_EQ(resets[0].rsi, 0u);
  EXPECT_EQ(resets[0].cr3, HV_VIRT_BOOT_PML4);
  EXPECT_EQ(resets[0].gdt_base, HV_VIRT_BOOT_GDT);
  EXPECT_TRUE(f.vcpu(1)->resets().empty());  // secondaries wait for CPU_ON
  f.vmm->Stop();
  EXPECT_EQ(f.vmm->Wait().kind, VmmExit::Kind::kStopped);
}

TEST(VmmTest, DispatchesUartPlatformInfoAndUnmappedAccesses) {
  Fixture f;
  FakeVcpu* v = f.vcpu(0);
  v->PushExit(Exit(VcpuExit::Kind::kPio, HV_VIRT_UART_PORT, 1, true, 'o'));
  v->PushExit(Exit(VcpuExit::Kind::kPio, HV_VIRT_UART_PORT, 1, true, 'k'));
  v->PushExit(Exit(VcpuExit::Kind::kMmio, HV_VIRT_INFO_BASE, 8));
  v->PushExit(Exit(VcpuExit::Kind::kMmio,
                   HV_VIRT_INFO_BASE + offsetof(hv_virt_info, user_arg), 8));
  v->PushExit(Exit(VcpuExit::Kind::kMmio, 0xd0f00000, 4));  // unmapped
  v->PushExit(Exit(VcpuExit::Kind::kMmio, 0xd0f00000, 4, true, 1));
  v->PushExit(Exit(VcpuExit::Kind::kPio, 0x2f8, 1));  // unmapped
  v->PushExit(Psci(PSCI_SYSTEM_OFF, 0));
  ASSERT_TRUE(f.vmm->Start().ok());
  const VmmExit exit = f.vmm->Wait();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff);
  EXPECT_EQ(f.console, "ok");
  EXPECT_EQ(v->read_completions(),
            (std::vector<uint64_t>{HV_VIRT_INFO_MAGIC, 99, 0xffffffff, 0xff}));
  EXPECT_EQ(f.vmm->mmio_bus().unhandled_count(), 2u);
  EXPECT_EQ(f.vmm->pio_bus().unhandled_count(), 1u);
}

TEST(VmmTest, PsciCpuOnValidatesAndStartsTheTarget) {
  Fixture f(3);
  FakeVcpu* v = f.vcpu(0);
  v->PushExit(Psci(PSCI_VERSION));
  v->PushExit(Psci(PSCI_AFFINITY_INFO, 1, 0));
  v->PushExit(Psci(PSCI_CPU_ON, 3, 0x100000, 0));         // no such CPU
  v->PushExit(Psci(PSCI_CPU_ON, 1, 0xfff0000000ull, 0));  // not in RAM
  v->PushExit(Psci(PSCI_CPU_ON, 1, 0x100040, 0xc0ffee));
  v->PushExit(Psci(PSCI_CPU_ON, 0, 0x100040, 0));  // self
  v->PushExit(Psci(PSCI_AFFINITY_INFO, 0, 1));     // bad level
  v->PushExit(Psci(0x8400ffff));                   // unknown
  ASSERT_TRUE(f.vmm->Start().ok());
  ASSERT_TRUE(v->WaitIdle(5s));
  ASSERT_TRUE(f.vcpu(1)->WaitIdle(5s));
  const auto r = v->hypercall_results();
  ASSERT_EQ(r.size(), 8u);
  EXPECT_EQ(r[0], 0x10000u);
  EXPECT_EQ(r[1], 1u);  // OFF
  EXPECT_EQ(static_cast<int64_t>(r[2]), PSCI_RET_INVALID_PARAMETERS);
  EXPECT_EQ(static_cast<int64_t>(r[3]), PSCI_RET_INVALID_ADDRESS);
  EXPECT_EQ(static_cast<int64_t>(r[4]), PSCI_RET_SUCCESS);
  EXPECT_EQ(static_cast<int64_t>(r[5]), PSCI_RET_ALREADY_ON);
  EXPECT_EQ(static_cast<int64_t>(r[6]), PSCI_RET_INVALID_PARAMETERS);
  EXPECT_EQ(static_cast<int64_t>(r[7]), PSCI_RET_NOT_SUPPORTED);
  const auto resets = f.vcpu(1)->resets();
  ASSERT_EQ(resets.size(), 1u);
  EXPECT_EQ(resets[0].rip, 0x100040u);
  EXPECT_EQ(resets[0].rdi, 0xc0ffeeu);
  EXPECT_EQ(resets[0].rsi, 1u);
  EXPECT_EQ(resets[0].cr3, HV_VIRT_BOOT_PML4);
  EXPECT_TRUE(f.vcpu(2)->resets().empty());
  // CPU_OFF from vCPU 1, then AFFINITY_INFO sees it OFF.
  f.vcpu(1)->PushExit(Psci(PSCI_CPU_OFF));
  for (int i = 0;
       i < 500 && f.vmm->vcpu_thread(1).power() != VcpuThread::Power::kOff;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(f.vmm->vcpu_thread(1).power(), VcpuThread::Power::kOff);
  v->PushExit(Psci(PSCI_SYSTEM_OFF, 0x1234));
  const VmmExit exit = f.vmm->Wait();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff);
  EXPECT_EQ(exit.exit_code, 0x34);  // low 8 bits
}

TEST(VmmTest, TripleFaultIsACrash) {
  Fixture f;
  VcpuExit e = Exit(VcpuExit::Kind::kShutdown);
  e.reason = "shutdown (triple fault)";
  f.vcpu(0)->PushExit(e);
  ASSERT_TRUE(f.vmm->Start().ok());
  const VmmExit exit = f.vmm->Wait();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash);
  EXPECT_NE(exit.message.find("triple fault"), std::string::npos);
}

TEST(VmmTest, SystemResetReloadsAndRestartsVcpu0) {
  Fixture f;
  ASSERT_TRUE(f.vmm->memory().WriteObj<uint64_t>(0x700000, 0x1234).ok());
  // Guest-visible GIC state before the reset: GICD_CTLR.EnableGrp1 set.
  uint64_t ctlr = 0;
  f.vmm->mmio_bus().Write({}, HV_VIRT_GICD_BASE, 4, 0x2);
  f.vmm->mmio_bus().Read({}, HV_VIRT_GICD_BASE, 4, &ctlr);
  EXPECT_EQ(ctlr & 0x2, 0x2u);
  f.vcpu(0)->PushExit(Psci(PSCI_CPU_ON, 1, 0x100000, 0));
  f.vcpu(0)->PushExit(Psci(PSCI_SYSTEM_RESET));
  ASSERT_TRUE(f.vmm->Start().ok());
  auto early = f.vmm->WaitFor(200ms);
  EXPECT_FALSE(early.has_value());
  EXPECT_EQ(f.vmm->boot_count(), 1u);
  EXPECT_EQ(f.vmm->platform_info().info().boot_count, 1u);
  EXPECT_EQ(*f.vmm->memory().ReadObj<uint64_t>(0x700000), 0u);  // cleared
  EXPECT_EQ(f.vcpu(0)->resets().size(), 2u);
  EXPECT_EQ(f.vmm->vcpu_thread(1).power(), VcpuThread::Power::kOff);
  // The GIC came back in reset state (EnableGrp1 clear, ARE/DS set).
  f.vmm->mmio_bus().Read({}, HV_VIRT_GICD_BASE, 4, &ctlr);
  EXPECT_EQ(ctlr & 0x2, 0u);
  EXPECT_EQ(f.vmm->mmio_bus().unhandled_count(), 0u);
  f.vcpu(0)->PushExit(Psci(PSCI_SYSTEM_OFF, 3));
  EXPECT_EQ(f.vmm->Wait().exit_code, 3);
}

TEST(VmmTest, PauseStopsAllVcpusAndResumeContinues) {
  Fixture f;
  f.vcpu(0)->PushExit(Psci(PSCI_CPU_ON, 1, 0x100000, 0));
  ASSERT_TRUE(f.vmm->Start().ok());
  ASSERT_TRUE(f.vcpu(0)->WaitIdle(5s));
  ASSERT_TRUE(f.vcpu(1)->WaitIdle(5s));
  f.vmm->Pause();
  const uint64_t exits = f.vmm->vcpu_thread(1).exits();
  f.vcpu(1)->PushExit(
      Exit(VcpuExit::Kind::kPio, HV_VIRT_UART_PORT, 1, true, 'x'));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(f.vmm->vcpu_thread(1).exits(), exits) << "paused vCPU ran";
  f.vmm->Resume();
  f.vcpu(1)->PushExit(Psci(PSCI_SYSTEM_OFF, 0));
  EXPECT_EQ(f.vmm->Wait().kind, VmmExit::Kind::kPowerOff);
  EXPECT_EQ(f.console, "x");
}

}  // namespace
}  // namespace hv
