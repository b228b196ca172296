// Boots the guest kit's images on real KVM through the Vmm API (both GIC
// line delivery modes) and through the hv-vmm binary.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "hv/arch/kvm/kvm_vm.h"
#include "hv/base/locks.h"
#include "hv/guest/builtin_images.h"
#include "hv/guest/programs/irq_latency.h"
#include "hv/vmm/vmm.h"
#include "tests/util/run_vmm.h"
#include "tools/bench_vmm/irq_latency_driver.h"

namespace hv {
namespace {

using arch::IrqDelivery;
using namespace std::chrono_literals;

// Console sink shared with vCPU threads.
class Console {
 public:
  void Put(char c) {
    MutexLock lock(&mu_);
    text_.push_back(c);
  }
  std::string text() const {
    MutexLock lock(&mu_);
    return text_;
  }
  bool WaitFor(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (text().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(1ms);
    }
    return text().find(needle) != std::string::npos;
  }

 private:
  mutable Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
};

class KvmTest : public ::testing::TestWithParam<IrqDelivery> {
 protected:
  void SetUp() override {
    if (!arch::KvmAvailable()) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
  }

  std::unique_ptr<Vmm> Make(const std::string& image, uint32_t vcpus,
                            uint64_t guest_arg = 0) {
    const guest::BuiltinImage* img = guest::FindBuiltinImage(image);
    EXPECT_NE(img, nullptr) << image;
    if (img == nullptr) return nullptr;
    arch::VmConfig vc;
    vc.irq_delivery = GetParam();
    auto vm = arch::KvmVm::Create(vc);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    VmmConfig c;
    c.image.assign(img->data, img->data + img->size);
    c.vcpus = vcpus;
    c.memory_mib = 16;
    c.guest_arg = guest_arg;
    c.console = [this](char ch) { console_.Put(ch); };
    auto vmm = Vmm::Create(std::move(c), std::move(*vm));
    EXPECT_TRUE(vmm.ok()) << vmm.status();
    return vmm.ok() ? std::move(*vmm) : nullptr;
  }

  VmmExit Boot(const std::string& image, uint32_t vcpus,
               uint64_t guest_arg = 0) {
    auto vmm = Make(image, vcpus, guest_arg);
    if (vmm == nullptr) return VmmExit{VmmExit::Kind::kCrash, -1, "no vmm"};
    EXPECT_TRUE(vmm->Start().ok());
    auto exit = vmm->WaitFor(30s);
    EXPECT_TRUE(exit.has_value()) << "guest hung; console:\n"
                                  << console_.text();
    if (!exit) {
      vmm->Stop();
      return vmm->Wait();
    }
    return *exit;
  }

  Console console_;
};

TEST_P(KvmTest, HelloOneVcpu) {
  const VmmExit exit = Boot("hello", 1);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message;
  EXPECT_EQ(exit.exit_code, 0) << console_.text();
  EXPECT_NE(console_.text().find("PASS hello (1 vCPUs)"), std::string::npos)
      << console_.text();
}

TEST_P(KvmTest, HelloFourVcpusViaCpuOn) {
  const VmmExit exit = Boot("hello", 4);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message;
  EXPECT_EQ(exit.exit_code, 0) << console_.text();
  const std::string out = console_.text();
  for (int cpu = 1; cpu < 4; ++cpu) {
    EXPECT_NE(out.find(absl::StrCat("hello from vCPU ", cpu, "\n")),
              std::string::npos)
        << out;
  }
  EXPECT_NE(out.find("PASS hello (4 vCPUs)"), std::string::npos) << out;
}

TEST_P(KvmTest, PlatformSelftestOneAndFourVcpus) {
  for (uint32_t n : {1u, 4u}) {
    auto vmm = Make("platform-selftest", n);
    ASSERT_NE(vmm, nullptr);
    ASSERT_TRUE(vmm->Start().ok());
    auto exit = vmm->WaitFor(30s);
    ASSERT_TRUE(exit.has_value()) << console_.text();
    EXPECT_EQ(exit->kind, VmmExit::Kind::kPowerOff) << exit->message;
    EXPECT_EQ(exit->exit_code, 0) << console_.text();
    EXPECT_NE(console_.text().find(
                  absl::StrCat("PASS platform-selftest (", n, " vCPUs)")),
              std::string::npos)
        << console_.text();
    // The guest's unmapped MMIO/port accesses were counted, not fatal.
    // 5 reads + 1 write to the hole, 1 write to the read-only info block.
    EXPECT_EQ(vmm->mmio_bus().unhandled_count(), 7u);
    EXPECT_EQ(vmm->pio_bus().unhandled_count(), 2u);
  }
}

// kvm-unit-tests' its-trigger scenario through the guest's GICv3 + ITS
// driver; includes a command queue placed outside guest RAM (the ITS stalls,
// the VM keeps running).
TEST_P(KvmTest, ItsSelftestOneAndFourVcpus) {
  for (uint32_t n : {1u, 4u}) {
    auto vmm = Make("its-selftest", n);
    ASSERT_NE(vmm, nullptr);
    ASSERT_TRUE(vmm->Start().ok());
    auto exit = vmm->WaitFor(60s);
    ASSERT_TRUE(exit.has_value()) << console_.text();
    EXPECT_EQ(exit->kind, VmmExit::Kind::kPowerOff) << exit->message;
    EXPECT_EQ(exit->exit_code, 0) << console_.text();
    EXPECT_NE(
        console_.text().find(absl::StrCat("PASS its-selftest (", n, " vCPUs)")),
        std::string::npos)
        << console_.text();
    // The ITS counted the unreadable command queue; the translation state
    // the guest built saves into its (in-RAM) tables.
    EXPECT_TRUE(vmm->its()->SaveTables().ok());
  }
}

TEST_P(KvmTest, TripleFaultIsReportedAsACrash) {
  const VmmExit exit = Boot("crash", 2);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kCrash);
  EXPECT_NE(exit.message.find("triple fault"), std::string::npos)
      << exit.message;
}

TEST_P(KvmTest, ExitCodeIsTheGuestsSystemOffArgument) {
  const VmmExit exit = Boot("exit-code", 1, 42);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff);
  EXPECT_EQ(exit.exit_code, 42);
}

TEST_P(KvmTest, SystemResetRebootsWithClearedRam) {
  const VmmExit exit = Boot("reset", 2);
  EXPECT_EQ(exit.kind, VmmExit::Kind::kPowerOff) << exit.message;
  EXPECT_EQ(exit.exit_code, 0) << console_.text();
  EXPECT_NE(console_.text().find("PASS reset (boot 1, RAM cleared)"),
            std::string::npos)
      << console_.text();
}

TEST_P(KvmTest, PauseResumeStopWithHaltedVcpusAndPromptIrqWake) {
  auto vmm = Make("idle", 4);
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->Start().ok());
  ASSERT_TRUE(console_.WaitFor("idle: 4 vCPUs online", 10s)) << console_.text();
  // Pausing halted vCPUs returns promptly.
  auto t0 = std::chrono::steady_clock::now();
  vmm->Pause();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  // A line raised while paused is taken after resume.
  vmm->vcpu(2).irq_line().SetLevel(true);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(console_.text().find("irq on vCPU 2"), std::string::npos)
      << "a paused vCPU took an interrupt";
  vmm->Resume();
  EXPECT_TRUE(console_.WaitFor("irq on vCPU 2", 5s)) << console_.text();
  vmm->vcpu(2).irq_line().SetLevel(false);
  // Kick of a halted vCPU: raise vCPU 3's line, it wakes promptly.
  t0 = std::chrono::steady_clock::now();
  vmm->vcpu(3).irq_line().SetLevel(true);
  EXPECT_TRUE(console_.WaitFor("irq on vCPU 3", 5s)) << console_.text();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  vmm->vcpu(3).irq_line().SetLevel(false);
  EXPECT_EQ(console_.text().find("irq on vCPU 1"), std::string::npos);
  t0 = std::chrono::steady_clock::now();
  vmm->Stop();
  EXPECT_EQ(vmm->Wait().kind, VmmExit::Kind::kStopped);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

// The GIC line end to end: a vGIC SPI routed to vCPU 0 reaches the halted
// guest, which acknowledges it through ICC_IAR1/EOIR1; with the in-kernel
// LAPIC also KVM's own irqfd path to the same handler.
TEST_P(KvmTest, IrqLatencyProbeTakesGicSpis) {
  auto vmm = Make("irq-latency", 1);
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->Start().ok());
  auto driver = bench::IrqLatencyDriver::Create(vmm.get());
  ASSERT_TRUE(driver.ok()) << driver.status() << console_.text();
  bench::IrqLatencyDriver::RaiseFn by_gic = [&] {
    return vmm->gic()->PulseSpi(IRQ_LAT_SPI).status();
  };
  std::vector<uint64_t> samples;
  for (int i = 0; i < 20; ++i) {
    auto s = (*driver)->Sample(by_gic);
    ASSERT_TRUE(s.ok()) << s.status() << console_.text();
    samples.push_back(*s);
  }
  int irqfd_samples = 0;
  if (GetParam() == IrqDelivery::kLapic) {
    auto* kvm = dynamic_cast<arch::KvmVm*>(&vmm->vm());
    auto efd = kvm->CreateMsiIrqfd(0, kvm->config().irq_vector);
    ASSERT_TRUE(efd.ok()) << efd.status();
    for (int i = 0; i < 10; ++i) {
      auto s = (*driver)->Sample([&]() -> absl::Status {
        const uint64_t one = 1;
        EXPECT_EQ(write(*efd, &one, 8), 8);
        return absl::OkStatus();
      });
      ASSERT_TRUE(s.ok()) << s.status();
      ++irqfd_samples;
    }
    close(*efd);
  }
  ASSERT_TRUE((*driver)->Quit(by_gic).ok());
  auto exit = vmm->WaitFor(10s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << console_.text();
  // Raising lines after the vCPU threads are gone is harmless.
  EXPECT_TRUE(vmm->gic()->PulseSpi(IRQ_LAT_SPI).ok());
  vmm->vcpu(0).irq_line().SetLevel(false);
  vmm->vcpu(0).irq_line().SetLevel(true);
  vmm->vcpu(0).Kick();
  // 21 SPIs were acknowledged through the CPU interface (irqfd ones read
  // 1023 and are not counted).
  EXPECT_NE(console_.text().find("21 GIC SPIs taken"), std::string::npos)
      << console_.text();
  const auto p = bench::ComputePercentiles(samples, **driver);
  EXPECT_GT(p.p50, 0.0);
  EXPECT_LT(p.p50, 10000.0);  // well under 10 ms
  EXPECT_EQ(irqfd_samples, GetParam() == IrqDelivery::kLapic ? 10 : 0);
}

INSTANTIATE_TEST_SUITE_P(Delivery, KvmTest,
                         ::testing::Values(IrqDelivery::kLapic,
                                           IrqDelivery::kInject),
                         [](const auto& info) {
                           return info.param == IrqDelivery::kLapic ? "Lapic"
                                                                    : "Inject";
                         });

// ---- the hv-vmm binary ----

using test::RunVmm;
using Result = test::VmmResult;

class HvVmmBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!arch::KvmAvailable()) {
      GTEST_SKIP() << "/dev/kvm is absent on this machine; KVM tests skipped";
    }
  }
};

TEST_F(HvVmmBinaryTest, ListsBuiltinsAndPrintsHelp) {
  Result r = RunVmm({"--list_builtin"});
  EXPECT_EQ(r.exit_code, 0);
  std::vector<std::string> names =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  for (const char* n : {"hello", "platform-selftest", "exit-code", "reset",
                        "idle", "irq-latency", "its-selftest"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  r = RunVmm({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--image=PATH|builtin:NAME"), std::string::npos);
}

TEST_F(HvVmmBinaryTest, BootsBuiltinHelloOnFourVcpus) {
  Result r = RunVmm({"--image=builtin:hello", "--vcpus=4", "--memory_mib=32"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("PASS hello (4 vCPUs)"), std::string::npos) << r.out;
}

TEST_F(HvVmmBinaryTest, ExitCodeComesFromTheGuest) {
  Result r = RunVmm({"--image=builtin:exit-code", "--guest_arg=42"});
  EXPECT_EQ(r.exit_code, 42) << r.err;
  r = RunVmm({"--image=builtin:exit-code", "--guest_arg=7"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
}

TEST_F(HvVmmBinaryTest, GuestCrashExits126) {
  Result r = RunVmm({"--image=builtin:crash"});
  EXPECT_EQ(r.exit_code, 126) << r.err;
  EXPECT_NE(r.err.find("guest crashed"), std::string::npos) << r.err;
}

TEST_F(HvVmmBinaryTest, BadInputsFailCleanly) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--image=builtin:hello", "--vcpus=0"}, 125, "vcpus=0 is out of range"},
      {{"--image=builtin:hello", "--vcpus=65"},
       125,
       "vcpus=65 is out of range"},
      {{"--image=builtin:hello", "--memory_mib=2"},
       125,
       "does not fit in guest RAM"},
      {{"--image=builtin:hello", "--memory_mib=999999"},
       125,
       "memory_mib=999999 is out of range"},
      {{"--image=builtin:nope"}, 2, "no built-in image 'nope'"},
      {{"--image=/nonexistent/x.elf"}, 125, "cannot open image"},
      {{"--image=builtin:hello", "--vcpus=abc"}, 2, "is not a number"},
      {{"--frobnicate"}, 2, "unknown argument"},
      {{}, 2, "--image is required"},
  };
  for (const Case& c : cases) {
    Result r = RunVmm(c.args);
    EXPECT_EQ(r.exit_code, c.code) << absl::StrJoin(c.args, " ") << "\n"
                                   << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos)
        << absl::StrJoin(c.args, " ") << "\n"
        << r.err;
  }
}

}  // namespace
}  // namespace hv
