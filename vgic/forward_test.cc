// Forwarded (HW) interrupts and resampling of level-triggered lines: the
// guest's deactivation reaches the host exactly once per host injection.
#include <vector>

#include "gtest/gtest.h"
#include "vgic/vgic_test_util.h"

namespace vgic {
namespace {

class ForwardTest : public VgicTest {
 protected:
  void SetUp() override {
    VgicTest::SetUp();
    EnableAll();
  }
  HostDeactivateCallback Recorder() {
    return [this](uint32_t host_irq) { deactivated_.push_back(host_irq); };
  }
  std::vector<uint32_t> deactivated_;
};

TEST_F(ForwardTest, EdgeSpiDeactivatesHostOnEoiModeZero) {
  SetupSpi(40, 0x80, 1, /*edge=*/true);
  ASSERT_TRUE(gic_->ForwardSpi(40, 77, Recorder()).ok());
  EXPECT_TRUE(gic_->IsForwarded(0, 40));
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_TRUE(deactivated_.empty());
  EXPECT_EQ(Ack(1), 40u);
  EXPECT_TRUE(deactivated_.empty());  // acknowledge is not deactivation
  Eoi(1, 40);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{77});
  Eoi(1, 40);  // nothing active: no second callback
  EXPECT_EQ(deactivated_.size(), 1u);
}

TEST_F(ForwardTest, EoiModeOneDeactivatesOnDir) {
  SetupSpi(40, 0x80, 0, true);
  SetIcc(0, IccReg::kCtlr, kIccCtlrEoimode);
  ASSERT_TRUE(gic_->ForwardSpi(40, 5, Recorder()).ok());
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  Eoi(0, 40);
  EXPECT_TRUE(deactivated_.empty());
  SetIcc(0, IccReg::kDir, 40);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{5});
}

TEST_F(ForwardTest, LevelForwardedLineIsResampledAtDeactivation) {
  SetupSpi(41, 0x80, 0, /*edge=*/false);
  ASSERT_TRUE(gic_->ForwardSpi(41, 9, Recorder()).ok());
  ASSERT_TRUE(gic_->SetSpiLevel(41, true).ok());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{9});
  // The virtual line was lowered: no spurious re-delivery until the host
  // re-asserts it (the physical line fires again after deactivation).
  EXPECT_EQ(Ack(0), kSpuriousIntid);
  EXPECT_FALSE(lines_[0].load());
  ASSERT_TRUE(gic_->SetSpiLevel(41, true).ok());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(deactivated_.size(), 2u);
}

TEST_F(ForwardTest, HostReassertFromCallbackIsDelivered) {
  // The host deactivates the physical IRQ, sees the device still asserting
  // and re-injects from inside the callback (no vGIC lock is held).
  SetupSpi(41, 0x80, 0, false);
  int calls = 0;
  ASSERT_TRUE(gic_->ForwardSpi(41, 3,
                               [&](uint32_t) {
                                 if (++calls == 1) {
                                   EXPECT_TRUE(
                                       gic_->SetSpiLevel(41, true).ok());
                                 }
                               })
                  .ok());
  ASSERT_TRUE(gic_->SetSpiLevel(41, true).ok());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(lines_[0].load());
  EXPECT_EQ(Ack(0), 41u);
  Eoi(0, 41);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(Ack(0), kSpuriousIntid);
}

TEST_F(ForwardTest, GuestClearingPendingOrActiveReleasesHost) {
  SetupSpi(40, 0x80, 0, true);
  ASSERT_TRUE(gic_->ForwardSpi(40, 1, Recorder()).ok());
  ASSERT_TRUE(Pulse(40).ok());
  SetGicd(static_cast<uint64_t>(GicdReg::kIcpendr) + 4, 1u << 8);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{1});
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  SetGicd(static_cast<uint64_t>(GicdReg::kIcactiver) + 4, 1u << 8);
  EXPECT_EQ(deactivated_.size(), 2u);
  // The running priority is still there until the EOI.
  EXPECT_EQ(Icc(0, IccReg::kRpr), 0x80u);
  Eoi(0, 40);
  EXPECT_EQ(deactivated_.size(), 2u);
}

TEST_F(ForwardTest, UnforwardReleasesOutstandingPhysicalInterrupt) {
  SetupSpi(40, 0x80, 0, true);
  ASSERT_TRUE(gic_->ForwardSpi(40, 12, Recorder()).ok());
  ASSERT_TRUE(Pulse(40).ok());
  EXPECT_EQ(Ack(0), 40u);
  gic_->UnforwardSpi(40);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{12});
  EXPECT_FALSE(gic_->IsForwarded(0, 40));
  Eoi(0, 40);  // the guest's late EOI does not reach the host again
  EXPECT_EQ(deactivated_.size(), 1u);
  gic_->UnforwardSpi(40);  // idempotent, cannot fail
  gic_->UnforwardSpi(5000);
  // Unforward with nothing outstanding: no callback.
  ASSERT_TRUE(gic_->ForwardSpi(40, 13, Recorder()).ok());
  gic_->UnforwardSpi(40);
  EXPECT_EQ(deactivated_.size(), 1u);
}

TEST_F(ForwardTest, ForwardedPpi) {
  SetupPrivate(2, 27, 0x40);
  ASSERT_TRUE(gic_->ForwardPpi(2, 27, 30, Recorder()).ok());
  EXPECT_TRUE(gic_->IsForwarded(2, 27));
  EXPECT_FALSE(gic_->IsForwarded(1, 27));
  ASSERT_TRUE(gic_->SetPpiLevel(2, 27, true).ok());
  EXPECT_EQ(Ack(2), 27u);
  Eoi(2, 27);
  EXPECT_EQ(deactivated_, std::vector<uint32_t>{30});
  EXPECT_EQ(Ack(2), kSpuriousIntid);
  ASSERT_TRUE(gic_->SetPpiLevel(2, 27, true).ok());
  gic_->UnforwardPpi(2, 27);
  EXPECT_EQ(deactivated_.size(), 2u);
  EXPECT_FALSE(gic_->ForwardPpi(2, 3, 1, Recorder()).ok());  // an SGI
}

TEST_F(ForwardTest, BindingErrors) {
  ASSERT_TRUE(gic_->ForwardSpi(40, 1, Recorder()).ok());
  EXPECT_EQ(gic_->ForwardSpi(40, 2, Recorder()).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(gic_->ForwardSpi(41, 2, nullptr).ok());
  EXPECT_EQ(gic_->SetSpiResampler(40, [](uint32_t) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ForwardTest, ResamplerForHostOwnedLevelLine) {
  SetupSpi(42, 0x80, 0, /*edge=*/false);
  std::vector<uint32_t> resampled;
  ASSERT_TRUE(gic_->SetSpiResampler(
                      42, [&](uint32_t intid) { resampled.push_back(intid); })
                  .ok());
  ASSERT_TRUE(gic_->SetSpiLevel(42, true).ok());
  EXPECT_EQ(Ack(0), 42u);
  EXPECT_TRUE(resampled.empty());
  Eoi(0, 42);
  EXPECT_EQ(resampled, std::vector<uint32_t>{42});
  EXPECT_EQ(Ack(0), kSpuriousIntid);  // lowered until the host re-asserts
  ASSERT_TRUE(gic_->SetSpiLevel(42, true).ok());
  EXPECT_EQ(Ack(0), 42u);
  Eoi(0, 42);
  EXPECT_EQ(resampled.size(), 2u);
  // Removing the resampler restores plain level semantics.
  ASSERT_TRUE(gic_->SetSpiResampler(42, nullptr).ok());
  ASSERT_TRUE(gic_->SetSpiLevel(42, true).ok());
  EXPECT_EQ(Ack(0), 42u);
  Eoi(0, 42);
  EXPECT_EQ(Ack(0), 42u);  // still asserted
  ASSERT_TRUE(gic_->SetSpiLevel(42, false).ok());
  Eoi(0, 42);
  EXPECT_EQ(resampled.size(), 2u);
}

}  // namespace
}  // namespace vgic
