#include "iommu/iova_allocator.h"

#include "gtest/gtest.h"

namespace iommu {
namespace {

TEST(IovaAllocatorTest, TopDownAlignedAndReservationsRespected) {
  IovaAllocator a(0x1000, 0x100000);
  auto x = a.Allocate(0x2000, 0x1000);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, 0xfe000u);
  ASSERT_TRUE(a.Reserve(0x80000, 0x7e000).ok());  // [0x80000, 0xfe000)
  auto y = a.Allocate(0x10000, 0x10000);
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(*y, 0x70000u);
  EXPECT_EQ(a.Reserve(0x7f000, 0x2000).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(a.Free(0x80000, 0x7e000).ok());  // reservations are not freed
  ASSERT_TRUE(a.Free(*y, 0x10000).ok());
  EXPECT_FALSE(a.Free(*y, 0x10000).ok());
  EXPECT_FALSE(a.Allocate(0x1000, 0x1800).ok());  // bad alignment
  EXPECT_EQ(a.Allocate(0x100000, 0x1000).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(IovaAllocatorTest, AdjacentReservationsMerge) {
  IovaAllocator a(0x1000, uint64_t{1} << 39);
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(a.Reserve(0x100000 + i * 0x1000, 0x1000).ok());
  }
  EXPECT_EQ(a.reserved_count(), 1u);
  EXPECT_TRUE(a.Overlaps(0x100000 + 999 * 0x1000, 0x1000));
  EXPECT_FALSE(a.Overlaps(0x100000 + 1000 * 0x1000, 0x1000));
}

}  // namespace
}  // namespace iommu
