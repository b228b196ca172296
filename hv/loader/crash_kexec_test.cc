#include "hv/loader/crash_kexec.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hv/loader/test_util.h"

namespace hv::loader {
namespace {

using testing::Pattern;

constexpr uint64_t kRam = 4 << 20;
constexpr GpaRange kCrash{0x200000, 0x100000};

// Fakes for the interfaces the hypervisor core implements.
class FakeVcpus : public VcpuStopper, public VcpuRegisterSource {
 public:
  explicit FakeVcpus(size_t n) : n_(n) {}
  size_t NumVcpus() const override { return n_; }
  absl::Status StopAllExcept(size_t keep) override {
    std::lock_guard<std::mutex> l(mu_);
    stop_calls_.push_back(keep);
    stopped_ = true;
    return stop_status_;
  }
  absl::StatusOr<X86VcpuState> CaptureState(size_t vcpu) override {
    std::lock_guard<std::mutex> l(mu_);
    EXPECT_TRUE(stopped_) << "registers read before the vCPUs were stopped";
    X86VcpuState s{};
    s.rip = 0xffff0000 + vcpu;
    s.rsp = 0x8000 * (vcpu + 1);
    s.cr3 = 0x1000;
    return s;
  }
  std::vector<size_t> stop_calls() {
    std::lock_guard<std::mutex> l(mu_);
    return stop_calls_;
  }
  void set_stop_status(absl::Status s) { stop_status_ = std::move(s); }

 private:
  const size_t n_;
  std::mutex mu_;
  std::vector<size_t> stop_calls_;
  bool stopped_ = false;
  absl::Status stop_status_;
};

class CrashKexecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory_ = std::move(*GuestMemory::Create({{0, kRam}}));
    ASSERT_TRUE(memory_->Fill(0, 0x5c, kRam).ok());
    loader_ = std::move(*KexecLoader::Create(memory_.get(), kCrash));
    image_bytes_ = Pattern(0x2000, 77);
  }
  void LoadCrashImage() {
    ASSERT_TRUE(
        loader_
            ->Load(Slot::kCrash, {0x200040,
                                  {{image_bytes_.data(), image_bytes_.size(),
                                    0x200000, 0x2000}}})
            .ok());
  }
  std::vector<uint8_t> Outside() {
    std::vector<uint8_t> out(kRam - kCrash.size);
    EXPECT_TRUE(memory_->Read(0, out.data(), kCrash.base).ok());
    EXPECT_TRUE(
        memory_
            ->Read(kCrash.end(), out.data() + kCrash.base, kRam - kCrash.end())
            .ok());
    return out;
  }

  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<KexecLoader> loader_;
  std::vector<uint8_t> image_bytes_;
};

TEST_F(CrashKexecTest, StartsCrashImageWithCoreHeader) {
  LoadCrashImage();
  const auto outside = Outside();
  FakeVcpus vcpus(4);
  CrashKexec crash(loader_.get(), &vcpus, &vcpus, /*boot_vcpu=*/0);
  EXPECT_EQ(crash.state(), CrashState::kRunning);
  CrashOutcome out = crash.TriggerCrash(CrashReason::kPanicHypercall, 2);
  ASSERT_EQ(out.action, CrashOutcome::Action::kStartCrashImage) << out.why;
  EXPECT_EQ(out.reason, CrashReason::kPanicHypercall);
  EXPECT_EQ(out.boot_vcpu, 0u);
  EXPECT_EQ(out.jump.entry, 0x200040u);
  EXPECT_TRUE(
      kCrash.Covers(out.jump.core_header_gpa, out.jump.core_header_size));
  EXPECT_EQ(vcpus.stop_calls(), std::vector<size_t>{2});
  EXPECT_EQ(crash.state(), CrashState::kCrashImageRunning);
  // What the kdump program will read.
  std::vector<uint8_t> hdr(out.jump.core_header_size);
  ASSERT_TRUE(
      memory_->Read(out.jump.core_header_gpa, hdr.data(), hdr.size()).ok());
  auto core = ParseCoreHeader(hdr, out.jump.core_header_gpa);
  ASSERT_TRUE(core.ok()) << core.status();
  ASSERT_EQ(core->vcpus.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(core->vcpus[i].vcpu_id, i);
    EXPECT_EQ(core->vcpus[i].state.rip, 0xffff0000u + i);
    EXPECT_EQ(core->vcpus[i].state.rsp, 0x8000u * (i + 1));
  }
  ASSERT_EQ(core->preserved.size(), 2u);
  EXPECT_EQ(Outside(), outside);  // old memory untouched
  // The crash image is frozen: loads now fail.
  EXPECT_EQ(loader_->Unload(Slot::kCrash).code(),
            absl::StatusCode::kFailedPrecondition);
  // The crash image itself panics → crashed; after that, parking only.
  CrashOutcome again = crash.TriggerCrash(CrashReason::kTripleFault, 0);
  EXPECT_EQ(again.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(crash.state(), CrashState::kCrashed);
  EXPECT_EQ(crash.TriggerCrash(CrashReason::kTripleFault, 0).action,
            CrashOutcome::Action::kParkVcpu);
}

TEST_F(CrashKexecTest, NoCrashImageEntersCrashedState) {
  const auto outside = Outside();
  FakeVcpus vcpus(2);
  CrashKexec crash(loader_.get(), &vcpus, &vcpus);
  CrashOutcome out = crash.TriggerCrash(CrashReason::kTripleFault, 1);
  EXPECT_EQ(out.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(out.why.code(), absl::StatusCode::kNotFound) << out.why;
  EXPECT_EQ(crash.state(), CrashState::kCrashed);
  EXPECT_EQ(vcpus.stop_calls(), std::vector<size_t>{1});
  EXPECT_EQ(Outside(), outside);
  const auto a = Pattern(16, 1);
  EXPECT_EQ(loader_
                ->Load(Slot::kNormal,
                       {0x1000, {{a.data(), a.size(), 0x1000, 0x1000}}})
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CrashKexecTest, TamperedCrashImageIsNotEntered) {
  LoadCrashImage();
  ASSERT_TRUE(memory_->WriteObj<uint8_t>(0x201000, 0).ok());
  FakeVcpus vcpus(1);
  CrashKexec crash(loader_.get(), &vcpus, &vcpus);
  CrashOutcome out = crash.TriggerCrash(CrashReason::kApiRequest, 0);
  EXPECT_EQ(out.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(out.why.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(out.why.message().find("segment 0"), absl::string_view::npos);
}

TEST_F(CrashKexecTest, StopFailureAndBadVcpu) {
  LoadCrashImage();
  FakeVcpus vcpus(2);
  vcpus.set_stop_status(absl::InternalError("vcpu 1 stuck"));
  CrashKexec crash(loader_.get(), &vcpus, &vcpus);
  CrashOutcome out = crash.TriggerCrash(CrashReason::kApiRequest, 0);
  EXPECT_EQ(out.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(out.why.code(), absl::StatusCode::kInternal);

  auto loader2 = std::move(*KexecLoader::Create(memory_.get(), kCrash));
  FakeVcpus two(2);
  CrashKexec crash2(loader2.get(), &two, &two);
  out = crash2.TriggerCrash(CrashReason::kApiRequest, 7);
  EXPECT_EQ(out.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(out.why.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(two.stop_calls().empty());
}

// Many vCPUs panic at once: exactly one wins, the others park; the stop-all
// happens once.
TEST_F(CrashKexecTest, ExactlyOneWinnerAmongManyThreads) {
  LoadCrashImage();
  constexpr int kThreads = 8;
  FakeVcpus vcpus(kThreads);
  CrashKexec crash(loader_.get(), &vcpus, &vcpus);
  std::atomic<bool> go{false};
  std::vector<CrashOutcome> outcomes(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      outcomes[t] = crash.TriggerCrash(
          t % 2 ? CrashReason::kTripleFault : CrashReason::kPanicHypercall, t);
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  int started = 0, parked = 0, crashed = 0;
  for (const auto& o : outcomes) {
    started += o.action == CrashOutcome::Action::kStartCrashImage;
    parked += o.action == CrashOutcome::Action::kParkVcpu;
    crashed += o.action == CrashOutcome::Action::kEnterCrashedState;
  }
  // A late loser may see kCrashImageRunning and count as "the crash image
  // crashed" only if it calls after the switch completed; by construction
  // here every thread is a first-kernel panic, so allow at most one such.
  EXPECT_EQ(started, 1);
  EXPECT_LE(crashed, 1);
  EXPECT_EQ(started + parked + crashed, kThreads);
  EXPECT_EQ(vcpus.stop_calls().size(), 1u);
}

// A crash racing a load: the crash either switches (load finished or not yet
// started) or, if the load holds the kexec lock, goes to the crashed state
// with "busy" — and the load never sees a half-switched VM.
TEST_F(CrashKexecTest, CrashRacingALoadIsBusyNotBlocked) {
  LoadCrashImage();
  FakeVcpus vcpus(1);
  CrashKexec crash(loader_.get(), &vcpus, &vcpus);
  std::atomic<bool> in_load{false}, release{false};
  loader_->SetLoadHookForTesting([&] {
    in_load = true;
    while (!release.load()) std::this_thread::yield();
  });
  std::thread loader_thread([&] {
    EXPECT_TRUE(
        loader_
            ->Load(Slot::kCrash, {0x200040,
                                  {{image_bytes_.data(), image_bytes_.size(),
                                    0x200000, 0x2000}}})
            .ok());
  });
  while (!in_load.load()) std::this_thread::yield();
  // While the load holds the lock: the crash does not wait for it.
  CrashOutcome out = crash.TriggerCrash(CrashReason::kPanicHypercall, 0);
  EXPECT_EQ(out.action, CrashOutcome::Action::kEnterCrashedState);
  EXPECT_EQ(out.why.code(), absl::StatusCode::kUnavailable) << out.why;
  // Other operations are busy too.
  EXPECT_EQ(loader_->Unload(Slot::kNormal).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(loader_->VerifyBeforeJump(Slot::kCrash).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(loader_->GuestKexec(kIndDone, 0x1000).status().code(),
            absl::StatusCode::kUnavailable);
  release = true;
  loader_thread.join();
  // After the crash, further loads are refused.
  EXPECT_EQ(loader_->Unload(Slot::kCrash).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hv::loader
