#include "hv/control/failpoint.h"

#include <chrono>

#include "gtest/gtest.h"

namespace hv::control {
namespace {

TEST(Failpoint, UnsetIsOk) {
  ASSERT_TRUE(SetFailpoints("").ok());
  EXPECT_TRUE(Failpoint("nothing.here").ok());
}

TEST(Failpoint, ErrorWithCount) {
  ASSERT_TRUE(SetFailpoints("a.b=error*2, c=sleep:20").ok());
  absl::Status s = Failpoint("a.b");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("a.b"), std::string::npos);
  EXPECT_FALSE(Failpoint("a.b").ok());
  EXPECT_TRUE(Failpoint("a.b").ok());  // count exhausted
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(Failpoint("c").ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0,
            std::chrono::milliseconds(20));
  ASSERT_TRUE(SetFailpoints("").ok());
}

TEST(Failpoint, BadSpecsNameTheEntry) {
  for (const char* bad :
       {"x", "=error", "x=explode", "x=sleep:abc", "x=error*q"}) {
    absl::Status s = SetFailpoints(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(FailpointDeathTest, AbortKillsTheProcess) {
  EXPECT_EXIT(
      {
        (void)SetFailpoints("boom=abort");
        (void)Failpoint("boom");
      },
      ::testing::KilledBySignal(SIGKILL), "");
}

}  // namespace
}  // namespace hv::control
