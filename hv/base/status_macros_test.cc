#include "hv/base/status_macros.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace hv {
namespace {

absl::StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return absl::InvalidArgumentError("v must be positive");
  return v;
}

absl::StatusOr<int> Doubled(int v) {
  HV_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  return 2 * x;
}

absl::Status CheckBoth(int a, int b) {
  HV_RETURN_IF_ERROR(ParsePositive(a).status());
  HV_RETURN_IF_ERROR(ParsePositive(b).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesValue) {
  auto r = Doubled(21);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesError) {
  auto r = Doubled(-1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "v must be positive");
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtFirstError) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(1, 0).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hv
