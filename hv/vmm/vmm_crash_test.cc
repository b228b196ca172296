// crash_kexec and guest kexec wiring on the fake backend (vmm_crash.cc,
// vmm_kexec.cc): which vCPU restarts where with which registers, the
// crashed state, the ELF core header the crash image gets, kexec refusals.
#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "hv/arch/fake_vm.h"
#include "hv/guest/builtin_images.h"
#include "hv/loader/core_header.h"
#include "hv/platform/hv_virt.h"
#include "hv/vmm/vmm.h"

namespace hv {
namespace {

using arch::FakeVcpu;
using arch::FakeVm;
using arch::VcpuExit;
using loader::CrashState;
using namespace std::chrono_literals;

std::vector<uint8_t> Builtin(const char* name) {
  const guest::BuiltinImage* img = guest::FindBuiltinImage(name);
  EXPECT_NE(img, nullptr) << name;
  return std::vector<uint8_t>(img->data, img->data + img->size);
}

VcpuExit Call(uint32_t fn, uint64_t a1 = 0, uint64_t a2 = 0) {
  VcpuExit e;
  e.kind = VcpuExit::Kind::kHypercall;
  e.args[0] = fn;
  e.args[1] = a1;
  e.args[2] = a2;
  return e;
}

struct Fixture {
  Fixture(uint32_t vcpus, bool crash_image) {
    VmmConfig c;
    c.image = Builtin("hello");
    c.vcpus = vcpus;
    c.memory_mib = 64;
    if (crash_image) {
      c.crash_image = Builtin("kdump");
      c.crash_mib = 16;
    }
    c.console = [this](char ch) { console.push_back(ch); };
    auto owned = std::make_unique<FakeVm>(8);
    vm = owned.get();
    auto v = Vmm::Create(std::move(c), std::move(owned));
    EXPECT_TRUE(v.ok()) << v.status();
    vmm = std::move(*v);
  }
  ~Fixture() { Finish(); }
  // Starts the VM and a thread in Wait() (restarts are performed there).
  void Start() {
    ASSERT_TRUE(vmm->Start().ok());
    waiter = std::thread([this] { exit = vmm->Wait(); });
  }
  VmmExit Finish() {
    if (waiter.joinable()) {
      vmm->Stop();
      waiter.join();
    }
    return exit;
  }
  // Waits for the VM to end by itself.
  VmmExit WaitEnd() {
    if (waiter.joinable()) waiter.join();
    return exit;
  }
  FakeVcpu* vcpu(uint32_t i) { return vm->vcpu(i); }
  // Waits until vCPU `i` has been reset `n` times.
  bool WaitResets(uint32_t i, size_t n) {
    for (int k = 0; k < 5000; ++k) {
      if (vcpu(i)->resets().size() >= n) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }
  FakeVm* vm = nullptr;
  std::unique_ptr<Vmm> vmm;
  std::string console;
  std::thread waiter;
  VmmExit exit;
};

TEST(VmmCrashTest, PanicStartsTheCrashImageWithTheCoreHeaderInRdxRcx) {
  Fixture f(2, true);
  const loader::GpaRange region = f.vmm->crash_region();
  EXPECT_EQ(region.base, 48ull << 20);
  EXPECT_EQ(region.size, 16ull << 20);
  f.Start();
  ASSERT_TRUE(f.WaitResets(0, 1));
  f.vcpu(0)->PushExit(Call(HV_CALL_PANIC, 0xdead));
  ASSERT_TRUE(f.WaitResets(0, 2));
  const arch::BootState boot = f.vcpu(0)->resets()[1];
  EXPECT_EQ(boot.rip, 0x3000000u);  // kdump's entry
  EXPECT_EQ(boot.rdi, HV_VIRT_INFO_BASE);
  EXPECT_EQ(boot.rsi, 0u);
  EXPECT_TRUE(region.Covers(boot.rdx, boot.rcx));
  EXPECT_EQ(f.vmm->crash_state(), CrashState::kCrashImageRunning);
  EXPECT_EQ(f.vmm->crash_switches(), 1u);
  // The header describes RAM below the region and both vCPUs.
  std::vector<uint8_t> hdr(boot.rcx);
  ASSERT_TRUE(f.vmm->memory().Read(boot.rdx, hdr.data(), hdr.size()).ok());
  auto parsed = loader::ParseCoreHeader(hdr, boot.rdx);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->preserved.size(), 1u);
  EXPECT_EQ(parsed->preserved[0].base, 0u);
  EXPECT_EQ(parsed->preserved[0].size, region.base);
  EXPECT_EQ(parsed->vcpus.size(), 2u);
  f.Finish();
  EXPECT_NE(f.console.find("switching to the crash image at 0x3000000"),
            std::string::npos);
}

TEST(VmmCrashTest, PanicWithoutCrashImageEntersCrashedState) {
  Fixture f(1, false);
  f.Start();
  f.vcpu(0)->PushExit(Call(HV_CALL_PANIC, 7));
  const VmmExit exit = f.WaitEnd();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash);
  EXPECT_NE(exit.message.find("guest panic, code 0x7"), std::string::npos)
      << exit.message;
  EXPECT_EQ(f.vmm->crash_state(), CrashState::kCrashed);
}

TEST(VmmCrashTest, CrashImageNeedsItsRegion) {
  VmmConfig c;
  c.image = Builtin("hello");
  c.memory_mib = 64;
  c.crash_image = Builtin("kdump");
  auto only_image = Vmm::Create(c, std::make_unique<FakeVm>(8));
  EXPECT_EQ(only_image.status().code(), absl::StatusCode::kInvalidArgument);
  c.crash_mib = 8;  // region [56, 64) MiB: kdump (at 48 MiB) is outside
  auto outside = Vmm::Create(c, std::make_unique<FakeVm>(8));
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kOutOfRange)
      << outside.status();
  EXPECT_NE(outside.status().message().find("crash image"), std::string::npos);
}

TEST(VmmCrashTest, GuestKexecNeedsOtherVcpusOffAndValidatesTheList) {
  Fixture f(2, false);
  f.Start();
  ASSERT_TRUE(f.WaitResets(0, 1));
  // vCPU 1 on → DENIED.
  VcpuExit on = Call(PSCI_CPU_ON, 1, 0x100000);
  f.vcpu(0)->PushExit(on);
  ASSERT_TRUE(f.WaitResets(1, 1));
  f.vcpu(0)->PushExit(Call(HV_CALL_KEXEC, HV_KEXEC_IND_DONE, 0x100000));
  ASSERT_TRUE(f.vcpu(0)->WaitIdle(5s));
  f.vcpu(1)->PushExit(Call(PSCI_CPU_OFF));
  for (int k = 0;
       k < 5000 && f.vmm->vcpu_thread(1).power() != VcpuThread::Power::kOff;
       ++k) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(f.vmm->vcpu_thread(1).power(), VcpuThread::Power::kOff);
  // Malformed head, then an entry outside RAM, then a valid empty list.
  f.vcpu(0)->PushExit(Call(HV_CALL_KEXEC, 0x10, 0x100000));
  f.vcpu(0)->PushExit(Call(HV_CALL_KEXEC, HV_KEXEC_IND_DONE, 1ull << 40));
  f.vcpu(0)->PushExit(Call(HV_CALL_KEXEC, HV_KEXEC_IND_DONE, 0x100040));
  ASSERT_TRUE(f.WaitResets(0, 2));
  const std::vector<uint64_t> results = f.vcpu(0)->hypercall_results();
  ASSERT_GE(results.size(), 5u);
  EXPECT_EQ(static_cast<int64_t>(results[1]), PSCI_RET_DENIED);
  EXPECT_EQ(static_cast<int64_t>(results[2]), PSCI_RET_INVALID_PARAMETERS);
  EXPECT_EQ(static_cast<int64_t>(results[3]), PSCI_RET_INVALID_ADDRESS);
  EXPECT_EQ(f.vcpu(0)->resets()[1].rip, 0x100040u);
  EXPECT_EQ(f.vmm->boot_count(), 0u);
  f.Finish();
}

TEST(VmmCrashTest, ApiTriggerCrashOnlyOnce) {
  Fixture f(2, true);
  EXPECT_EQ(f.vmm->TriggerCrash().code(),
            absl::StatusCode::kFailedPrecondition);
  f.Start();
  ASSERT_TRUE(f.WaitResets(0, 1));
  ASSERT_TRUE(f.vmm->TriggerCrash().ok());
  ASSERT_TRUE(f.WaitResets(0, 2));
  EXPECT_EQ(f.vcpu(0)->resets()[1].rip, 0x3000000u);
  // The crash image itself crashing (no crash kernel of its own).
  f.vcpu(0)->PushExit(Call(HV_CALL_PANIC, 1));
  const VmmExit exit = f.WaitEnd();
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash);
  EXPECT_EQ(f.vmm->crash_state(), CrashState::kCrashed);
}

}  // namespace
}  // namespace hv
