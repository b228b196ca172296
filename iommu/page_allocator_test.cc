#include "iommu/page_allocator.h"

#include <set>

#include "gtest/gtest.h"
#include "iommu/formats.h"

namespace iommu {
namespace {

TEST(PageAllocatorTest, AllocatesZeroedPagesInsideItsWindowOnly) {
  auto mem = PhysMemory::Create(64 * kPageSize);
  ASSERT_TRUE(mem.ok());
  ASSERT_TRUE((*mem)->Store64(40 * kPageSize + 8, 0xdead).ok());
  auto pool = PageAllocator::Create(mem->get(), 40 * kPageSize, 10 * kPageSize);
  ASSERT_TRUE(pool.ok());
  std::set<uint64_t> pages;
  for (int i = 0; i < 10; ++i) {
    auto p = (*pool)->Allocate();
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE((*pool)->Owns(*p));
    EXPECT_EQ(*(*mem)->Load64(*p + 8), 0u);
    pages.insert(*p);
  }
  EXPECT_EQ(pages.size(), 10u);
  EXPECT_EQ((*pool)->Allocate().status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE((*pool)->Free(*pages.begin()).ok());
  EXPECT_FALSE((*pool)->Free(*pages.begin()).ok());
  EXPECT_FALSE((*pool)->Free(0).ok());
  EXPECT_EQ((*pool)->allocated_pages(), 9u);
  EXPECT_FALSE(
      PageAllocator::Create(mem->get(), 60 * kPageSize, 8 * kPageSize).ok());
  // Physical memory bounds.
  EXPECT_FALSE((*mem)->Load64(64 * kPageSize).ok());
  EXPECT_FALSE((*mem)->Load64(4).ok());
  EXPECT_EQ((*mem)->PageWords(64 * kPageSize), nullptr);
}

}  // namespace
}  // namespace iommu
