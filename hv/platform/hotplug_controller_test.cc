#include "hv/platform/hotplug_controller.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace hv {
namespace {

class HotplugTest : public ::testing::Test {
 protected:
  uint64_t R(uint64_t off, uint8_t size = 4) {
    uint64_t v = ~0ull;
    EXPECT_TRUE(hp_.Read({}, off, size, &v).ok()) << off;
    return v;
  }
  void W(uint64_t off, uint32_t v) {
    ASSERT_TRUE(hp_.Write({}, off, 4, v).ok());
  }

  std::atomic<int> level_{0};
  std::atomic<int> edges_{0};
  HotplugController hp_{4, [this](bool l) {
                          if (l && !level_.exchange(1)) ++edges_;
                          if (!l) level_ = 0;
                        }};
  HotplugDevice dev_{"0000:01:00.0", 1, 0x100, 8, 0, 0xD1000000, 0x1000};
};

TEST_F(HotplugTest, AttachShowsIdentityAndRaisesSpi) {
  EXPECT_EQ(R(HV_HOTPLUG_REG_MAGIC), HV_HOTPLUG_MAGIC);
  EXPECT_EQ(R(HV_HOTPLUG_REG_NUM_SLOTS), 4u);
  EXPECT_EQ(level_, 0);
  ASSERT_TRUE(hp_.Attach(2, dev_).ok());
  EXPECT_EQ(level_, 1);
  EXPECT_EQ(R(HV_HOTPLUG_REG_EVENTS), 4u);
  W(HV_HOTPLUG_REG_SEL, 2);
  EXPECT_EQ(R(HV_HOTPLUG_REG_STATUS), HV_HOTPLUG_STATUS_PRESENT);
  EXPECT_EQ(R(HV_HOTPLUG_REG_KIND), 1u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_REQUESTER_ID), 0x100u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_NUM_VECTORS), 8u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_WINDOW_GPA, 8), 0xD1000000u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_WINDOW_SIZE, 8), 0x1000u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_NAME), 0x30303030u);  // "0000"
  W(HV_HOTPLUG_REG_EVENTS, 4);                     // W1C
  EXPECT_EQ(R(HV_HOTPLUG_REG_EVENTS), 0u);
  EXPECT_EQ(level_, 0);
  // Errors.
  EXPECT_EQ(hp_.Attach(2, dev_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(hp_.Attach(4, dev_).code(), absl::StatusCode::kInvalidArgument);
  HotplugDevice long_name = dev_;
  long_name.name = std::string(40, 'x');
  EXPECT_EQ(hp_.Attach(0, long_name).code(),
            absl::StatusCode::kInvalidArgument);
  uint64_t v;
  EXPECT_FALSE(hp_.Read({}, 2, 4, &v).ok());
  EXPECT_FALSE(hp_.Read({}, HV_HOTPLUG_REG_STATUS, 8, &v).ok());
  EXPECT_FALSE(hp_.Write({}, HV_HOTPLUG_REG_SEL, 8, 0).ok());
  // An empty slot reads as absent.
  W(HV_HOTPLUG_REG_SEL, 1);
  EXPECT_EQ(R(HV_HOTPLUG_REG_STATUS), 0u);
  EXPECT_EQ(R(HV_HOTPLUG_REG_NUM_VECTORS), 0u);
}

TEST_F(HotplugTest, TwoPhaseEjectCompletesOnGuestAck) {
  ASSERT_TRUE(hp_.Attach(0, dev_).ok());
  W(HV_HOTPLUG_REG_EVENTS, 1);
  int calls = 0;
  bool forced = true;
  EXPECT_EQ(hp_.RequestEject(1, nullptr).code(),
            absl::StatusCode::kFailedPrecondition);  // empty
  ASSERT_TRUE(hp_.RequestEject(0,
                               [&](bool f) {
                                 ++calls;
                                 forced = f;
                               })
                  .ok());
  EXPECT_EQ(hp_.RequestEject(0, nullptr).code(),
            absl::StatusCode::kFailedPrecondition);  // already ejecting
  EXPECT_EQ(hp_.state(0), SlotState::kEjectPending);
  EXPECT_EQ(level_, 1);
  W(HV_HOTPLUG_REG_SEL, 0);
  EXPECT_EQ(R(HV_HOTPLUG_REG_STATUS),
            HV_HOTPLUG_STATUS_PRESENT | HV_HOTPLUG_STATUS_EJECT_REQ);
  W(HV_HOTPLUG_REG_EVENTS, 1);  // does not clear a pending eject
  EXPECT_EQ(R(HV_HOTPLUG_REG_EVENTS), 1u);
  EXPECT_EQ(calls, 0);
  W(HV_HOTPLUG_REG_CMD, HV_HOTPLUG_CMD_EJECT_ACK);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(forced);
  EXPECT_EQ(hp_.state(0), SlotState::kEmpty);
  EXPECT_EQ(level_, 0);
  W(HV_HOTPLUG_REG_CMD, HV_HOTPLUG_CMD_EJECT_ACK);  // late ack: ignored
  hp_.ExpireEjects(HotplugController::Clock::now() + std::chrono::hours(1),
                   std::chrono::milliseconds(0));
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(hp_.Attach(0, dev_).ok());  // slot reusable
}

TEST_F(HotplugTest, ForcedEjectAfterTimeout) {
  ASSERT_TRUE(hp_.Attach(3, dev_).ok());
  int calls = 0;
  bool forced = false;
  ASSERT_TRUE(hp_.RequestEject(3,
                               [&](bool f) {
                                 ++calls;
                                 forced = f;
                               })
                  .ok());
  const auto now = HotplugController::Clock::now();
  hp_.ExpireEjects(now, std::chrono::seconds(10));  // not yet
  EXPECT_EQ(calls, 0);
  hp_.ExpireEjects(now + std::chrono::seconds(11), std::chrono::seconds(10));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(forced);
  EXPECT_EQ(hp_.state(3), SlotState::kEmpty);
  EXPECT_EQ(level_, 0);
  W(HV_HOTPLUG_REG_SEL, 3);
  W(HV_HOTPLUG_REG_CMD, HV_HOTPLUG_CMD_EJECT_ACK);  // too late: ignored
  EXPECT_EQ(calls, 1);
}

TEST(HotplugTimerTest, TimerThreadForcesEject) {
  HotplugController hp(2, nullptr, std::chrono::milliseconds(20));
  ASSERT_TRUE(
      hp.Attach(1, {"plat0", 2, 0xff00, 1, 40, 0xD1001000, 0x1000}).ok());
  std::atomic<int> forced{0};
  ASSERT_TRUE(hp.RequestEject(1, [&](bool f) { forced = f ? 1 : 2; }).ok());
  for (int i = 0; i < 500 && forced == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(forced, 1);
  EXPECT_EQ(hp.state(1), SlotState::kEmpty);
}

}  // namespace
}  // namespace hv
