#include "hv/vmm/vcpu_thread.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "hv/arch/fake_vm.h"

namespace hv {
namespace {

using arch::FakeVcpu;
using arch::VcpuExit;
using namespace std::chrono_literals;

class RecordingHandler : public ExitHandler {
 public:
  uint64_t OnMmio(uint32_t, const VcpuExit& e) override {
    mmio.fetch_add(1);
    return e.addr + 1;
  }
  uint64_t OnPio(uint32_t, const VcpuExit&) override {
    pio.fetch_add(1);
    return 0x5a;
  }
  uint64_t OnHypercall(uint32_t, const VcpuExit& e) override {
    hypercalls.fetch_add(1);
    if (e.args[0] == 1 && self != nullptr) self->PowerOffSelf();
    return e.args[1] * 2;
  }
  void OnFatal(uint32_t, const std::string&) override { fatals.fetch_add(1); }
  std::atomic<int> mmio{0}, pio{0}, hypercalls{0}, fatals{0};
  VcpuThread* self = nullptr;
};

VcpuExit Mmio(uint64_t addr, bool write) {
  VcpuExit e;
  e.kind = VcpuExit::Kind::kMmio;
  e.addr = addr;
  e.size = 4;
  e.is_write = write;
  return e;
}

VcpuExit Hypercall(uint64_t fn, uint64_t a1) {
  VcpuExit e;
  e.kind = VcpuExit::Kind::kHypercall;
  e.args[0] = fn;
  e.args[1] = a1;
  return e;
}

// Polls `cond` for up to 5 s.
template <typename F>
bool Eventually(F cond) {
  for (int i = 0; i < 500; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

TEST(VcpuThreadTest, PowerOnResetsThenDispatchesExits) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  VcpuThread t(&vcpu, &h);
  t.Start();
  vcpu.PushExit(Mmio(0x1000, false));
  // Powered off: nothing runs.
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(vcpu.runs(), 0);
  arch::BootState boot;
  boot.rip = 0x100000;
  boot.rdi = 7;
  ASSERT_EQ(t.PowerOn(boot), VcpuThread::PowerOnResult::kOk);
  ASSERT_TRUE(vcpu.WaitIdle(5s));
  ASSERT_EQ(vcpu.resets().size(), 1u);
  EXPECT_EQ(vcpu.resets()[0].rip, 0x100000u);
  EXPECT_EQ(vcpu.resets()[0].rdi, 7u);
  EXPECT_EQ(h.mmio.load(), 1);
  ASSERT_EQ(vcpu.read_completions().size(), 1u);
  EXPECT_EQ(vcpu.read_completions()[0], 0x1001u);
  EXPECT_EQ(t.power(), VcpuThread::Power::kOn);
  EXPECT_EQ(t.PowerOn(boot), VcpuThread::PowerOnResult::kAlreadyOn);
  // Writes are not completed.
  vcpu.PushExit(Mmio(0x2000, true));
  ASSERT_TRUE(vcpu.WaitIdle(5s));
  EXPECT_EQ(vcpu.read_completions().size(), 1u);
  t.Stop();
}

TEST(VcpuThreadTest, PauseParksOutsideRunAndResumeContinues) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  VcpuThread t(&vcpu, &h);
  t.Start();
  ASSERT_EQ(t.PowerOn({}), VcpuThread::PowerOnResult::kOk);
  ASSERT_TRUE(vcpu.WaitIdle(5s));  // blocked inside Run()
  t.Pause();
  EXPECT_GE(vcpu.kicks(), 1);
  const int runs = vcpu.runs();
  vcpu.PushExit(Mmio(0x10, false));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(h.mmio.load(), 0) << "a paused vCPU handled an exit";
  EXPECT_EQ(vcpu.runs(), runs);
  t.Resume();
  EXPECT_TRUE(Eventually([&] { return h.mmio.load() == 1; }));
  t.Stop();
}

TEST(VcpuThreadTest, HypercallResultAndPowerOffSelf) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  VcpuThread t(&vcpu, &h);
  h.self = &t;
  t.Start();
  ASSERT_EQ(t.PowerOn({}), VcpuThread::PowerOnResult::kOk);
  vcpu.PushExit(Hypercall(0, 21));
  vcpu.PushExit(Hypercall(1, 4));  // handler powers the vCPU off
  vcpu.PushExit(Mmio(0x10, false));
  EXPECT_TRUE(Eventually([&] { return t.power() == VcpuThread::Power::kOff; }));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(vcpu.hypercall_results(), (std::vector<uint64_t>{42, 8}));
  EXPECT_EQ(h.mmio.load(), 0) << "powered-off vCPU kept running";
  // Power it on again: reset, then the queued exit runs.
  ASSERT_EQ(t.PowerOn({}), VcpuThread::PowerOnResult::kOk);
  EXPECT_TRUE(Eventually([&] { return h.mmio.load() == 1; }));
  EXPECT_EQ(vcpu.resets().size(), 2u);
  t.Stop();
}

TEST(VcpuThreadTest, FatalExitPowersOff) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  VcpuThread t(&vcpu, &h);
  t.Start();
  VcpuExit e;
  e.kind = VcpuExit::Kind::kShutdown;
  e.reason = "triple fault";
  vcpu.PushExit(e);
  ASSERT_EQ(t.PowerOn({}), VcpuThread::PowerOnResult::kOk);
  EXPECT_TRUE(Eventually([&] { return h.fatals.load() == 1; }));
  EXPECT_TRUE(Eventually([&] { return t.power() == VcpuThread::Power::kOff; }));
  t.Stop();
}

TEST(VcpuThreadTest, HaltedVcpuWakesWhenIrqLineRises) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  VcpuThread t(&vcpu, &h);
  t.Start();
  ASSERT_EQ(t.PowerOn({}), VcpuThread::PowerOnResult::kOk);
  vcpu.PushHalt();
  vcpu.PushExit(Mmio(0x10, false));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(h.mmio.load(), 0);
  vcpu.irq_line().SetLevel(true);
  EXPECT_TRUE(Eventually([&] { return h.mmio.load() == 1; }));
  t.Stop();
}

TEST(VcpuThreadTest, StopIsIdempotentAndWorksWhileBlocked) {
  FakeVcpu vcpu(0);
  RecordingHandler h;
  auto t = std::make_unique<VcpuThread>(&vcpu, &h);
  t->Start();
  ASSERT_EQ(t->PowerOn({}), VcpuThread::PowerOnResult::kOk);
  vcpu.PushHalt();  // blocked in Run() until kicked
  ASSERT_TRUE(Eventually([&] { return vcpu.runs() >= 1; }));
  t->Stop();
  t->Stop();
  EXPECT_EQ(t->PowerOn({}), VcpuThread::PowerOnResult::kStopped);
  t.reset();
}

}  // namespace
}  // namespace hv
