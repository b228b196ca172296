#include "hv/loader/crash_region.h"

#include "gtest/gtest.h"

namespace hv::loader {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

TEST(CrashKernelSpecTest, Parses) {
  auto s = ParseCrashKernelSpec("64M");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->size, 64 * kMiB);
  EXPECT_FALSE(s->offset.has_value());
  s = ParseCrashKernelSpec("128m@0x1000000");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->size, 128 * kMiB);
  EXPECT_EQ(s->offset, 16 * kMiB);
  s = ParseCrashKernelSpec("0x2000@1G");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size, 0x2000u);
  EXPECT_EQ(s->offset, 1ull << 30);
  EXPECT_EQ(ParseCrashKernelSpec("4096")->size, 4096u);
  EXPECT_EQ(ParseCrashKernelSpec("2k")->size, 2048u);
  EXPECT_EQ(ParseCrashKernelSpec("1T")->size, 1ull << 40);
}

TEST(CrashKernelSpecTest, Rejects) {
  for (const char* bad :
       {"", "M", "0", "0M", "64X", "64M@", "@64M", "64MM", "0x", "12a",
        "99999999999999999999", "17179869184G", "64M@1Z", "-1M"}) {
    auto s = ParseCrashKernelSpec(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PlaceCrashRegionTest, AutomaticPlacementAtTheTop) {
  auto mem = GuestMemory::Create({{0, 64 * kMiB}, {128 * kMiB, 32 * kMiB}});
  ASSERT_TRUE(mem.ok());
  // Fits in the highest region: its top, 2 MiB aligned.
  auto r = PlaceCrashRegion(**mem, {.size = 5 * kMiB});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base, 128 * kMiB + 26 * kMiB);  // 160-5 = 155 → 154 MiB
  EXPECT_EQ(r->size, 5 * kMiB);
  EXPECT_TRUE((*mem)->Contains(r->base, r->size));
  // Too big for the high region: goes to the low one.
  r = PlaceCrashRegion(**mem, {.size = 40 * kMiB});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base, 24 * kMiB);
  // Sizes round up to the page.
  r = PlaceCrashRegion(**mem, {.size = 1});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size, kPageSize);
  // More than half of RAM (96 MiB total).
  EXPECT_EQ(PlaceCrashRegion(**mem, {.size = 49 * kMiB}).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(PlaceCrashRegionTest, ExplicitOffset) {
  auto mem = GuestMemory::Create({{0, 64 * kMiB}, {128 * kMiB, 32 * kMiB}});
  ASSERT_TRUE(mem.ok());
  auto r = PlaceCrashRegion(**mem, {.size = 8 * kMiB, .offset = 130 * kMiB});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->base, 130 * kMiB);
  EXPECT_EQ(
      PlaceCrashRegion(**mem, {.size = 8 * kMiB, .offset = 130 * kMiB + 1})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  // Straddles the hole.
  EXPECT_EQ(PlaceCrashRegion(**mem, {.size = 8 * kMiB, .offset = 60 * kMiB})
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(PlaceCrashRegion(**mem, {.size = 8 * kMiB, .offset = ~0ull - 4095})
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace hv::loader
